"""The values of a job spec's fields, each checked alone: priority, sweep ranges, times,
environment names, job ids; and the JSON a spec (or any request) arrives as, and how an error
shows what was sent. Kept apart from :mod:`shared.domain.jobspec`, which re-exports them, so
that the spec's models stay readable."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    model_validator,
)

from shared.domain.messages import MAX_ID
from shared.domain.models import PRIORITY_NAMES

_SWEEP = re.compile(r"^\s*(-?[0-9]+)\s*-\s*(-?[0-9]+)\s*(?::\s*([0-9]+))?\s*$")
_INT = re.compile(r"-?[0-9]{1,18}")
"""An integer as text: ASCII digits only (``int()`` also takes "²"-like and full-width ones)."""
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)")
"""Text pydantic reads as a Unix time (seconds, or milliseconds past 2e10) rather than ISO 8601."""
TIME_EXAMPLE = "2026-12-01T14:00:00Z"

StrictInt = Annotated[int, Strict()]
"""A count in a spec or template: a JSON integer only. pydantic's lax mode would take true as 1,
"3" as 3 and 8.0 as 8 (a job with ``"validExitCodes": [true]`` then failed on exit 0)."""
StrictBool = Annotated[bool, Strict()]
"""A flag: true or false only (lax mode takes "yes", "off", 0 and 1)."""

MAX_GROUP_NAME = 128
"""No node group's name is longer: one an agent's node holds (messages.py) is at most this, one
created is at most 64; a longer name in a spec is refused before its error could echo it."""
GroupName = Annotated[str, Field(max_length=MAX_GROUP_NAME)]

SHOWN_CHARS = 80
"""The most of a caller's own text an error message repeats back."""
MAX_JSON_DEPTH = 64
"""Arrays and objects nested deeper than this are refused: no request nests more than a few
levels, and some 1000 make ``json.loads`` raise RecursionError (a 500, not a 400)."""


MAX_NUMBER_DIGITS = 4300
"""A JSON integer longer than this is refused, naming where it stands: Python's ``int()`` of
text stops there (``sys.get_int_max_str_digits``), and its error's advice (raise that limit)
is no use to a client. No field takes a number of more than 19 digits."""


class JsonRefused(ValueError):
    """JSON that :func:`load_json` refuses although ``json.loads`` would read it; the message
    reads after "the request body" or a file's name."""


class JsonTooDeep(JsonRefused):
    """JSON nested past :data:`MAX_JSON_DEPTH`."""


class DuplicateKey(JsonRefused):
    """An object that gives one key twice: ``json.loads`` keeps the last silently, so
    ``{"command": "a", "command": "b"}`` would run b with nobody told that a was dropped."""


class NumberTooLong(JsonRefused):
    """An integer of more than :data:`MAX_NUMBER_DIGITS` digits."""


class _LongNumber:
    """What :func:`load_json` reads an integer too long for ``int()`` as, until it has found
    where in the document it stands."""

    def __init__(self, digits: str) -> None:
        self.digits = digits


def cut(text: str) -> str:
    """``text`` as an error shows it: at most SHOWN_CHARS characters and how long it was, so a
    refused megabyte does not come back as a megabyte of error."""
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS]}... ({len(text)} characters)"


def quoted(text: str) -> str:
    """``repr(text)``, cut as :func:`cut` cuts it."""
    if len(text) <= SHOWN_CHARS:
        return repr(text)
    return f"{text[:SHOWN_CHARS]!r}... ({len(text)} characters)"


def shown_json(value: object) -> str:
    """A JSON value as the caller wrote it (true, 8.0, "3"), cut."""
    return cut(json.dumps(value, default=str))


def load_json(text: str | bytes) -> Any:
    """``json.loads``, refusing (:class:`JsonRefused`) arrays and objects nested past
    MAX_JSON_DEPTH (:class:`JsonTooDeep`) and an object, at any depth, that gives a key more
    than once (:class:`DuplicateKey`), and an integer of more than MAX_NUMBER_DIGITS digits
    (:class:`NumberTooLong`, naming its field); its other errors (ValueError) pass through."""
    longs: list[_LongNumber] = []

    def integer(digits: str) -> int | _LongNumber:
        if len(digits.lstrip("-")) <= MAX_NUMBER_DIGITS:
            return int(digits)
        longs.append(_LongNumber(digits))
        return longs[-1]

    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_int=integer)
    except RecursionError:
        raise JsonTooDeep(_too_deep()) from None
    if longs:
        raise NumberTooLong(_too_long(longs[0], _path_to(value, longs[0])))
    if isinstance(text, bytes):
        opens = text.count(b"[") + text.count(b"{")
    else:
        opens = text.count("[") + text.count("{")
    if opens > MAX_JSON_DEPTH and _depth(value) > MAX_JSON_DEPTH:
        raise JsonTooDeep(_too_deep())
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's pairs as a dict, refusing a key given twice (DuplicateKey)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(
                    f"gives the key {quoted(key)} more than once in one object; give each key once"
                )
            seen.add(key)
    return obj


def _too_deep() -> str:
    return (
        f"nests arrays and objects more than {MAX_JSON_DEPTH} levels deep; "
        "a job spec or any other request nests a few"
    )


def _too_long(number: _LongNumber, path: str | None) -> str:
    digits = number.digits.lstrip("-")
    shown = f"{number.digits[:20]}... ({len(digits)} digits)"
    if not path:
        return f"is not valid JSON for the API: it is the number {shown}; send a JSON object"
    return (
        f"is not valid JSON for the API: {cut(path)} is the number {shown}, far beyond what "
        f"any field takes; give {cut(path)} a number in its range"
    )


def _path_to(value: Any, target: object) -> str | None:
    """Where ``target`` stands in ``value``: keys and list indices joined by dots, as a spec's
    errors name fields (``tasks.0.cores``); "" for ``value`` itself, None if it is not there.
    Told without recursion (the document may nest deeply)."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if item is target:
            return path
        if isinstance(item, dict | list):
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in pairs)
    return None


def _depth(value: Any) -> int:
    """How deep arrays and objects nest in ``value``, told without recursion; counting stops
    past MAX_JSON_DEPTH."""
    if not isinstance(value, dict | list):
        return 0
    deepest, stack = 0, [(value, 1)]
    while stack and deepest <= MAX_JSON_DEPTH:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return deepest


class NotATime(ValueError):
    """Text that is no ISO 8601 time (the hold route's 400: a malformed request)."""


def time_text(value: object) -> object:
    """An ISO 8601 time must come as text: pydantic reads a number, or text that is one, as a
    Unix time (253402300800 became 1978-01-11, taken as milliseconds). Text of digits is read
    as ISO 8601's basic form (20261201) or refused; anything else is left to the caller."""
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, str):
        if not _NUMBER.fullmatch(value):
            return value
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise NotATime(
                f"{quoted(value)} is a number, not an ISO 8601 time: give one such as "
                f"{TIME_EXAMPLE}"
            ) from None
    raise ValueError(f"give an ISO 8601 time as text, e.g. {TIME_EXAMPLE}, not {shown_json(value)}")


_YEAR = re.compile(r"\s*[+-]?([0-9]+)-")
"""The year of an extended-form date; one of five digits or more (10000-01-01) is read as a
time out of range, not as text that is no time."""


def iso_time(value: object) -> datetime:
    """An ISO 8601 time as every part of the cluster reads one (a spec's ``holdUntil``, hold's
    ``until``, ``hpc job hold --until``): text ``datetime.fromisoformat`` takes (2026-12-01,
    2026-12-01T14:00:00Z, the basic form 20261201T140000Z, the week form 2026-W49), in UTC
    (naive: UTC already), from 1970 to 9999. ValueError otherwise: :class:`NotATime` for
    text that is no time; a plain one for a value that is not text, or a time out of range."""
    checked = time_text(value)  # a number, or text that is one, is no time (a datetime passes)
    if isinstance(checked, datetime):
        return utc_time(checked)
    if not isinstance(checked, str):
        raise ValueError(f"give an ISO 8601 time as text, e.g. {TIME_EXAMPLE}, not null")
    text = checked.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        year = _YEAR.match(text)
        if year and (len(year[1]) > 4 or not year[1].strip("0")):
            raise ValueError(f"{quoted(text)} is out of range: {_TIME_RANGE}") from None
        raise NotATime(
            f"{quoted(text)} is not an ISO 8601 time: give one such as {TIME_EXAMPLE}"
        ) from None
    return utc_time(moment)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_env_name(key: str) -> None:
    """A task environment variable name: a shell name, and not one of the cluster's HPC_*."""
    if "\0" in key:
        raise ValueError(f"environment variable name {quoted(key)} holds a NUL character")
    if not _ENV_NAME.fullmatch(key):
        raise ValueError(
            f"environment variable name {quoted(key)} is not a valid variable name "
            "(letters, digits, _; not starting with a digit)"
        )
    if key.startswith("HPC_"):
        raise ValueError(f"{cut(key)}: HPC_* variables are set by the cluster")


_PRIORITY_BY_NAME = {name.lower(): number for name, number in PRIORITY_NAMES.items()}


def priority_value(value: object) -> int:
    """An HPC Pack priority name or an integer 0-4000 (also as ASCII digits in text), as the
    integer. Nothing else: a float, boolean or null stored as a job's priority would break
    every read of the job and the scheduler's ordering."""
    forms = f"one of {', '.join(PRIORITY_NAMES)} or an integer 0-4000"
    if isinstance(value, str):
        named = _PRIORITY_BY_NAME.get(value.strip().lower())
        if named is not None:  # any case, as node group and template names match
            return named
        if not _INT.fullmatch(value.strip()):
            raise ValueError(f"priority {quoted(value)} is not {forms}")
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        json_like = value is None or isinstance(value, bool | float | list | dict)
        shown = shown_json(value) if json_like else value  # null, not Python's None
        raise ValueError(f"priority {shown} is not {forms} (a whole number, not a {_kind(value)})")
    if not 0 <= number <= 4000:
        raise ValueError(f"priority {number} is outside 0-4000; give {forms}")
    return number


def _kind(value: object) -> str:
    names = {bool: "boolean", float: "decimal", list: "list", dict: "JSON object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def utc_time(moment: datetime) -> datetime:
    """``moment`` in UTC, refused (ValueError) outside 1970 to 9999: a zone can carry a time
    past the year 9999 or before the year 1, and the store writes four-digit years only."""
    utc: datetime | None
    try:
        utc = _utc(moment)
    except OverflowError:
        utc = None
    if utc is None or utc < EARLIEST:
        raise ValueError(f"{moment.isoformat()} is out of range: {_TIME_RANGE}")
    return utc


_TIME_RANGE = "give a time from 1970-01-01 to 9999-12-31 (UTC)"


def sweep_command(command: str, index: int | None) -> str:
    """HPC Pack's sweep placeholder: each ``*`` becomes the sweep index, ``**`` a literal ``*``
    (so ``ls **.txt`` stays a glob). Commands of tasks that are not sweep steps are unchanged."""
    if index is None:
        return command
    return "*".join(part.replace("*", str(index)) for part in command.split("**"))


def sweep_path(path: str | None, index: int | None) -> str | None:
    """A sweep step's working directory, stdout or stderr path: each ``*`` the index, as in
    its command (HPC Pack replaces ``*`` in a parametric task's file paths and working
    directory too: a probe's ``--stdout 'out*.txt'`` had every step write one file)."""
    return None if path is None else sweep_command(path, index)


class Sweep(BaseModel):
    """A parametric sweep: one task per index START, START+STEP, ..., END (inclusive)."""

    model_config = ConfigDict(extra="forbid")

    start: StrictInt
    end: StrictInt
    step: StrictInt = 1

    @model_validator(mode="after")
    def _check(self) -> Sweep:
        """Indices stay within what JSON and the stores hold exactly (MAX_ID)."""
        start, end, step = (cut(str(n)) for n in (self.start, self.end, self.step))
        if self.step < 1:
            raise ValueError(f"sweep step must be at least 1, got {step}")
        if self.end < self.start:
            raise ValueError(f"sweep end {end} is below its start {start}")
        if abs(self.start) > MAX_ID or self.step > MAX_ID:
            raise ValueError(
                f"sweep start {start} or step {step} is out of range: sweep indices "
                f"and steps are within -{MAX_ID} to {MAX_ID}"
            )
        if self.last > MAX_ID:
            raise ValueError(
                f"sweep {start}-{end} would have {cut(str(self.count))} tasks: a job has at "
                f"most HPC_MAX_TASKS_PER_JOB tasks, and sweep indices end at {MAX_ID}"
            )
        return self

    @classmethod
    def parse(cls, text: str) -> Sweep:
        """``"1-20"`` or ``"0-100:5"``."""
        m = _SWEEP.match(text)
        if not m:
            raise ValueError(f"sweep {quoted(text)} is not START-END[:STEP], e.g. 1-20 or 0-100:5")
        start, end, step = int(m[1]), int(m[2]), int(m[3] or 1)
        return cls(start=start, end=end, step=step)

    @property
    def count(self) -> int:
        return (self.end - self.start) // self.step + 1

    @property
    def last(self) -> int:
        """The last index (``end`` rounded down to a step)."""
        return self.start + (self.count - 1) * self.step

    def __len__(self) -> int:
        return self.count

    def indices(self) -> range:
        return range(self.start, self.end + 1, self.step)


def _utc(moment: datetime) -> datetime:
    """Naive means UTC; any other zone is converted (OverflowError past the year 1 or 9999)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"{json.dumps(value)} is not a job id: give the id of a submitted job")
    return value


def _existing_id(job_id: int) -> int:
    if job_id > MAX_ID:
        raise ValueError(f"job {cut(str(job_id))} does not exist (job ids end at {MAX_ID})")
    return job_id


JobRef = Annotated[
    int, BeforeValidator(_not_bool), Strict(), Field(ge=1), AfterValidator(_existing_id)
]
"""A job id in a spec (``dependsOn``): beyond :data:`MAX_ID` no job can have it, and the
stores' 64-bit integers could not even look it up."""
