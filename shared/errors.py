"""Errors that cross module boundaries; the HTTP layer maps each to a status code."""

from __future__ import annotations

from typing import Any


class HpcError(Exception):
    """Base class: ``str(error)`` is a message that says what to fix. ``fields`` go into the
    HTTP error body beside ``error``, for clients that decide on them (never on the words)."""

    status = 400

    def __init__(self, *args: object, **fields: Any) -> None:
        super().__init__(*args)
        self.fields: dict[str, Any] = fields


class NotFound(HpcError):
    status = 404


class Conflict(HpcError):
    """The record changed since it was read (stale etag) or already exists."""

    status = 409


class Refused(Conflict):
    """A 409 that is the answer, not a lost write race (the task already ended, the job is
    being canceled...): ``Deps.retry`` raises it at once instead of trying again."""


class InvalidRequest(HpcError):
    """Well-formed but semantically invalid input."""

    status = 422


class TooLarge(HpcError):
    status = 413


class Unauthorized(HpcError):
    status = 401


class Forbidden(HpcError):
    """Authenticated, but the principal's role may not do this (say which role may)."""

    status = 403


class Misconfigured(HpcError):
    """The control plane cannot run with its settings (a probe's HPC_COMPUTE=azure without
    its Azure settings answered every request "internal error"): 503, saying what to set."""

    status = 503
