"""Helpers shared by the command groups in :mod:`hpc.commands`.

Consoles for stdout and stderr, the API client, ``--json`` printing, option
checking and the option types several groups use. Kept apart from
:mod:`hpc.cli` so the command modules can import them without importing the
entry point that registers them.
"""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TextIO, TypeVar, cast

import typer
from rich.console import Console
from rich.text import Text

from hpc.client import ApiClient, ApiError
from hpc.errors import CliError
from hpc.spec import dependency_ids
from hpc.text import one_line
from shared.domain.idempotency import HEADER, key_problem
from shared.domain.messages import MAX_ID
from shared.domain.specvalues import cut, quoted

ID_RULE = "ids are whole numbers from 1"
"""What a job or task id is, in the error for one that is not (0, -1, abc)."""
_INTEGER = re.compile(r"[+-]?[0-9]+")


_ARRAY_TASK = re.compile(r"[0-9]+_[0-9]+")


def parse_id(value: str | int) -> int:
    """A job or task id given on the command line: ASCII digits, 1 to MAX_ID (what the
    server's ids are). A negative one never gets here: Click reads ``-1`` as an option, and
    :class:`hpc.cli.HpcGroup` says this rule instead of "No such option"."""
    text = str(value).strip()
    if _ARRAY_TASK.fullmatch(text):  # Slurm's JOB_INDEX (scancel 39_90): say what we take
        job, index = text.split("_")
        raise typer.BadParameter(
            f"{ID_RULE}, got {text}: a task is named JOB.TASK by its id, not by Slurm's "
            f"JOB_INDEX; `hpc task list {job}` shows each task's id beside its sweep index "
            f"(that of index {index}, if the sweep has one)"
        )
    if not _INTEGER.fullmatch(text):
        raise typer.BadParameter(f"{ID_RULE}, got {quoted(text)}")
    if text.startswith("-") or not text.strip("+0"):
        raise typer.BadParameter(f"{ID_RULE}, got {text}")
    digits = text.lstrip("+0")
    if len(digits) > len(str(MAX_ID)) or int(digits) > MAX_ID:
        raise typer.BadParameter(f"{ID_RULE} to {MAX_ID}, got {cut(text)}")
    return int(digits)


JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON unchanged.")]


def _key(value: str | None) -> str | None:
    """The server's own rule (1-255 printable ASCII), checked before anything is sent."""
    problem = None if value is None else key_problem(value)
    if problem is not None:
        raise typer.BadParameter(problem.replace(f"the {HEADER} header", "the key"))
    return value


IdempotencyKeyOption = Annotated[
    str | None,
    typer.Option(
        "--idempotency-key",
        metavar="KEY",
        help="Send this Idempotency-Key (1-255 printable ASCII characters, e.g. a UUID): the "
        "same command run again with it within 24 h answers what the first one made instead "
        "of doing it twice, so a script may retry it safely.  [default: a new one each time]",
        show_default=False,
        callback=_key,
    ),
]
NoHeader = Annotated[
    bool, typer.Option("--noheader", help="No header line, for scripts (squeue -h).")
]
JobId = Annotated[
    int, typer.Argument(metavar="ID", help="The job id.", show_default=False, parser=parse_id)
]
JobArg = Annotated[
    int, typer.Argument(metavar="JOB", help="The job id.", show_default=False, parser=parse_id)
]
"""A job id beside a task id (``hpc task view JOB TASK``)."""
TaskId = Annotated[
    int, typer.Argument(metavar="TASK", help="The task id.", show_default=False, parser=parse_id)
]
JobIds = Annotated[
    list[int],
    typer.Argument(metavar="ID", help="Job ids (several: each in turn).", parser=parse_id),
]
"""Job ids for an action that takes a list, as Slurm's scancel does."""
TaskRef = Annotated[
    str,
    typer.Argument(
        metavar="JOB[.TASK]",
        help="The job id, or the task as the CLI prints it: JOB.TASK (e.g. 16.2).",
        show_default=False,
    ),
]
OptionalTaskId = Annotated[
    str | None,
    typer.Argument(
        metavar="TASK",
        help="The task id, unless given as JOB.TASK.",
        show_default=False,
    ),
]


def task_ref(job: str, task: str | None) -> tuple[int, int]:
    """A task named by ``JOB TASK`` or by ``JOB.TASK`` (how the CLI prints it: ``task 16.2:
    Queued``), as (job id, task id); BadParameter naming both forms for anything else."""
    if "." in job:
        if task is not None:
            raise typer.BadParameter(
                f"{quoted(job)} names the task already: give JOB.TASK or JOB TASK, not both",
                param_hint="'JOB[.TASK]'",
            )
        head, _, tail = job.partition(".")
        try:
            return parse_id(head), parse_id(tail)
        except typer.BadParameter as e:
            raise typer.BadParameter(
                f"{quoted(job)} is not JOB.TASK (e.g. 16.2): {e.message}",
                param_hint="'JOB[.TASK]'",
            ) from None
    job_id = _id_of(job, "'JOB[.TASK]'")
    if task is None:
        raise typer.BadParameter(
            f"name the task: JOB TASK or JOB.TASK (e.g. {job_id}.1)", param_hint="'TASK'"
        )
    return job_id, _id_of(task, "'TASK'")


REFUSED = (403, 404, 409)
"""Statuses that refuse one job (not yours, no such job, not in a state for it): a list of
ids goes on past them. Any other error (no token, no connection) would be the same for
every job, so it stops the command at once."""

MAX_TASK_REFS = 100_000
"""Tasks one ``hpc task cancel | requeue`` names at most (sent as requests of at most 10,000
tasks, a long range cut between them, ``hpc/task_batches.py``; each held in memory with its
answer): more is a job's cancel or requeue, or several commands."""

TaskRefs = Annotated[
    list[str],
    typer.Argument(
        metavar="JOB[.TASK] [TASK|FIRST-LAST]...",
        help="The job id and its task ids or ranges (39 10 12 20-30), or tasks as the CLI "
        "prints them (39.10 39.12).",
        show_default=False,
    ),
]


def task_refs(words: list[str]) -> list[tuple[int, int]]:
    """Tasks named by ``JOB TASK...`` (each TASK an id or a range ``FIRST-LAST``, as
    scancel's ``39_[10-20]``) or by ``JOB.TASK...`` (each may end in a range: ``39.10-20``),
    in the order given, each once; BadParameter saying the forms for anything else."""
    hint = "'JOB[.TASK] [TASK]...'"
    if not words:
        raise typer.BadParameter("name the task: JOB TASK or JOB.TASK (e.g. 16.2)", param_hint=hint)
    if "." in words[0]:
        pairs = []
        first = words[0].partition(".")[0].strip() or "16"  # its examples name this job
        for word in words:
            head, dot, tail = word.partition(".")
            if not dot:
                raise typer.BadParameter(
                    f"{quoted(word)}: give every task as JOB.TASK once the first is "
                    f"({first}.2 {first}.3), or the job once and then its task ids ({first} 2 3)",
                    param_hint=hint,
                )
            job = _id_of(head, hint)
            pairs += [(job, task) for task in _task_ids(tail, hint)]
    else:
        if len(words) == 1:
            job_id = _id_of(words[0], hint)
            raise typer.BadParameter(
                f"name the task: JOB TASK or JOB.TASK (e.g. {job_id}.1)", param_hint="'TASK'"
            )
        job = _id_of(words[0], hint)
        mixed = next((word for word in words[1:] if "." in word), None)
        if mixed is not None:  # (a probe was told "ids are whole numbers" of 30.40)
            raise typer.BadParameter(
                f"{quoted(mixed)}: give the job once and then its task ids ({job} 2 3), or "
                f"every task as JOB.TASK ({job}.2 {job}.3), not both in one command",
                param_hint=hint,
            )
        pairs = [(job, task) for word in words[1:] for task in _task_ids(word, "'TASK'")]
    unique = list(dict.fromkeys(pairs))
    if len(unique) > MAX_TASK_REFS:
        raise typer.BadParameter(
            f"{len(unique):,} tasks: at most {MAX_TASK_REFS:,} at once; "
            "act on the whole job (hpc job cancel | requeue), or give fewer",
            param_hint=hint,
        )
    return unique


def _task_ids(word: str, hint: str) -> list[int]:
    """A task id, or a range ``FIRST-LAST`` of them."""
    if word.strip().startswith("-"):  # (a probe's -3 read "got ''": the range's empty first)
        raise typer.BadParameter(f"{ID_RULE}, got {quoted(word.strip())}", param_hint=hint)
    first, dash, last = word.partition("-")
    if not dash:
        return [_id_of(word, hint)]
    low, high = _id_of(first, hint), _id_of(last, hint)
    if high < low:
        raise typer.BadParameter(
            f"{quoted(word)}: a range goes from its first task to its last (e.g. 10-20)",
            param_hint=hint,
        )
    if high - low >= MAX_TASK_REFS:
        raise typer.BadParameter(
            f"{quoted(word)}: at most {MAX_TASK_REFS:,} tasks at once; "
            "act on the whole job (hpc job cancel | requeue), or give fewer",
            param_hint=hint,
        )
    return list(range(low, high + 1))


def _id_of(text: str, hint: str) -> int:
    try:
        return parse_id(text)
    except typer.BadParameter as e:
        raise typer.BadParameter(e.message, param_hint=hint) from None


def counted(count: int, noun: str) -> str:
    """``1 job``, ``3 jobs``: a count with its noun, singular for one."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


PIPED_WIDTH = 1_000_000
"""Columns of a Console on a pipe or file: no row of a table and no message is wrapped (tables
are as wide as their cells, not as the console)."""


class _Unpadded(io.TextIOBase):
    """A pipe's or file's lines without the spaces Rich pads a table's last cell with (a
    probe's piped ``hpc job view`` had every line 391 characters long); lines are passed on
    whole, the last at each flush."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.pending = out, ""

    def write(self, text: str) -> int:
        *whole, self.pending = (self.pending + text).split("\n")
        for line in whole:
            self.out.write(line.rstrip(" ") + "\n")
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.out.write(self.pending.rstrip(" "))
            self.pending = ""
        self.out.flush()


def _console(stderr: bool) -> Console:
    # Made per use: a Console decides on colour when created, and CliRunner swaps streams.
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console.width = PIPED_WIDTH
        console.file = cast(TextIO, _Unpadded(sys.stderr if stderr else sys.stdout))
    return console


def stdout_console() -> Console:
    """A Console on stdout; piped, a row is one line whatever its width, so ``awk`` and
    ``cut`` read tables as ``sinfo -h``'s (a probe's ``hpc node list --noheader | awk`` read
    a long reason's second line as a node), and no line ends in padding."""
    return _console(stderr=False)


def stderr_console() -> Console:
    """A Console on stderr (made per use, like :func:`stdout_console`); redirected, a message
    is one line (a probe's ``2>f`` had one cut in three)."""
    return _console(stderr=True)


def api_client() -> ApiClient:
    """A client for the control plane, configured from the environment."""
    return ApiClient()


_Item = TypeVar("_Item")


def act_on_each(
    items: Sequence[_Item],
    *,
    noun: str,
    done: str,
    name: Callable[[_Item], str],
    action: Callable[[ApiClient, _Item], dict[str, Any]],
    show: Callable[[dict[str, Any], _Item], None],
) -> None:
    """``action`` on each item in turn, one line each (``show``), as scancel takes a list: a
    refused one (:data:`REFUSED`) is a line on stderr and the rest go on; exit 1 if any was
    refused. One item alone fails as before, with the API's error as the one line; any other
    error (no token, no connection) would be the same for every item, so it stops at once."""
    refused = 0
    with api_client() as client:
        for item in items:
            try:
                result = action(client, item)
            except ApiError as exc:
                if len(items) == 1 or exc.status not in REFUSED:
                    raise
                line = Text(f"{noun} {name(item)}: not {done}: {one_line(exc.message)}")
                stderr_console().print(line, soft_wrap=True)
                refused += 1
                continue
            show(result, item)
    if refused:
        raise CliError(f"{refused} of {counted(len(items), noun)} not {done}")


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON (the ``--json`` output)."""
    typer.echo(json.dumps(data, indent=2))


def checked_by(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A Typer callback that checks a given value with ``parse`` and reports its ValueError.

    The value itself passes unchanged (Typer would coerce a parsed value back
    to the option's type); the command parses it again.
    """

    def callback(value: Any) -> Any:
        if value is not None and value != []:
            try:
                parse(value)
            except ValueError as e:
                raise typer.BadParameter(str(e)) from None
        return value

    return callback


def group_names(values: list[str] | None, flag: str) -> list[str] | None:
    """Node group names as given to a repeatable ``flag``, each value also split on commas
    (``--nodegroup A,B`` is ``--nodegroup A --nodegroup B``, as Slurm's ``--partition``
    takes a list): a group name cannot hold a comma (letters, digits, ``_ . -``), so the
    split is never ambiguous. An empty name (``A,,B``, a trailing comma) is refused rather
    than dropped, since dropping every name would silently mean "any group"."""
    if not values:
        return values
    names = [part.strip() for value in values for part in value.split(",")]
    if any(not name for name in names):
        shown = ", ".join(quoted(v) for v in values)
        raise typer.BadParameter(
            f"{shown} holds an empty node group name: give names, comma-separated or repeated",
            param_hint=f"'{flag}'",
        )
    return names


def depends_on_ids(values: list[str]) -> list[int]:
    """``--depends-on 12 --depends-on 15`` or ``--depends-on 12,15`` (as the group flags take
    A,B; a probe's 1,12 was told only "not a valid integer")."""
    try:
        items = [item for value in values for item in value.split(",") if item.strip()]
        return [parse_id(part) for item in items for part in dependency_ids(item)]
    except (ValueError, typer.BadParameter) as e:  # Slurm's afterany: and the like, bad ids
        said = e.message if isinstance(e, typer.BadParameter) else str(e)
        raise typer.BadParameter(said, param_hint="'--depends-on'") from None
