"""What every stored record is: a document with an etag, camelCase JSON, and UTC times
written in one fixed width (so stored times sort as text the way they do as times)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, PlainSerializer
from pydantic.alias_generators import to_camel


def utcnow() -> datetime:
    return datetime.now(UTC)


def _utc(moment: datetime) -> datetime:
    """Naive means UTC; any other zone is converted (records hold UTC only)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def fixed_width(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


UtcTime = Annotated[
    datetime,
    AfterValidator(_utc),
    PlainSerializer(fixed_width, return_type=str, when_used="json"),
]
"""A record's time: always UTC, written in one fixed width (``2026-01-01T12:00:00.500000Z``)
so that stored times compare and sort as text the way they do as times."""


class Record(BaseModel):
    """Base of stored documents: camelCase JSON, validated assignment off for speed."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    etag: str | None = None
    """Set by the store on every write; a write with a stale etag is refused."""

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)

    def to_dict(self) -> dict:
        return self.model_dump(mode="json", by_alias=True)
