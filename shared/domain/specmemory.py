"""A job spec's ``minMemoryMb``: the memory a task holds on each of its nodes while it runs
(consumable: :mod:`shared.domain.memoryfit`), given as a whole number of MB or a size such
as ``"4G"``. Pure."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator

from shared.domain.memory import parse_mb
from shared.domain.specvalues import shown_json

ACCEPTED = "a whole number of MB (4096) or a size (512M, 4G, 1.5T), 1 MB to 64 TB"


def memory_value(value: Any, name: str = "minMemoryMb") -> int | None:
    """``minMemoryMb`` (or a group's ``nodeMemoryMb``: ``name``) as MB (None: not asked);
    ValueError saying what is accepted (a float, a bool, a list: refused, as 4096.0 is not a
    number of MB the way 4096 is)."""
    if value is None:
        return None
    refused = ValueError(f"{name} is {ACCEPTED}, got {shown_json(value)}")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise refused
    try:
        return parse_mb(value)
    except ValueError:
        raise refused from None


MemoryMb = Annotated[int | None, BeforeValidator(memory_value)]
"""A memory request in MB, read from either form; None: any node."""
