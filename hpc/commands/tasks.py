"""``hpc task``: list a job's tasks and read their output.

``hpc task output`` writes a task's output to stdout page by page as it
arrives: unchanged when piped or redirected, cleaned of escape sequences and
control characters on a terminal (:class:`_OutputWriter`).
"""

from __future__ import annotations

import codecs
import sys
from typing import Annotated, Any, cast

import typer

from hpc import render, render_tasks
from hpc.client import ApiClient, ApiError
from hpc.client_output import Stream
from hpc.common import (
    JobArg,
    JsonOption,
    NoHeader,
    OptionalTaskId,
    TaskRef,
    TaskRefs,
    api_client,
    counted,
    print_json,
    stderr_console,
    stdout_console,
    task_ref,
    task_refs,
)
from hpc.plaintable import print_table
from hpc.statefilter import TASK_STATES, normalise_states
from hpc.task_batches import REQUEUE, Said, act_each, cancel_each
from hpc.text import for_terminal, one_line, safe
from shared.domain.specvalues import quoted

TASK_PAGE = 1000
"""Tasks fetched per request by ``hpc task list``."""

app = typer.Typer(help="List a job's tasks and read their output.", no_args_is_help=True)


STREAMS: tuple[Stream, ...] = ("stdout", "stderr")


def parse_stream(value: str) -> Stream:
    """``--stream``: stdout or stderr, in any case. A parser rather than an Enum option, whose
    refusal Typer words through pydantic ("Value error, 'x' is not one of ...")."""
    for stream in STREAMS:
        if str(value).strip().lower() == stream:
            return stream
    raise typer.BadParameter(f"give stdout or stderr, got {quoted(str(value))}")


@app.command("list")
def task_list(
    job_id: JobArg,
    state: Annotated[
        str | None, typer.Option(help="Only tasks in this state (comma-separated for several).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many tasks.")] = 100,
    show_all: Annotated[
        bool, typer.Option("--all", help="Show every task, page by page as they arrive.")
    ] = False,
    as_json: JsonOption = False,
    noheader: NoHeader = False,
) -> None:
    """List a job's tasks (the first 100 unless --limit or --all)."""
    states = normalise_states(state, TASK_STATES)
    shown = 0
    after: int | None = 0  # the API's next: where the next page starts (None: no more)
    collected: list[dict[str, Any]] = []
    widths: list[int] = []  # the first page's: later pages print as its rows, no header
    with api_client() as client:
        while after is not None and (show_all or shown < limit):
            size = TASK_PAGE if show_all else min(TASK_PAGE, limit - shown)
            answer = client.list_tasks(job_id, state=states, after=after, limit=size)
            page = answer.get("tasks", [])
            after = answer.get("next")
            shown += len(page)
            if as_json:
                collected += page
            elif page:  # each page as it arrives, one header (a probe's pipes counted three)
                table = render_tasks.tasks_table(
                    page, header=not (widths or noheader), widths=widths
                )
                print_table(table)  # (piped: without Rich, 10x faster on 30,000 tasks)
                widths = widths or render.widths_of(table)
        more = after is not None
    if as_json:
        print_json({"tasks": collected})
        return
    if not shown:
        stderr_console().print(
            f"job {job_id} has no tasks" + (f" in state {safe(state)}" if state else "")
        )
    elif more:
        stderr_console().print(f"first {counted(shown, 'task')} shown; --limit N or --all for more")


@app.command("view")
def task_view(
    job_id: TaskRef,
    task_id: OptionalTaskId = None,
    as_json: JsonOption = False,
) -> None:
    """Show one task (JOB TASK or JOB.TASK): its state, where it ran, and why it waits if it
    is queued."""
    job, task = task_ref(job_id, task_id)
    with api_client() as client:
        found = client.get_task(job, task)
    if as_json:
        print_json(found)
        return
    stdout_console().print(render_tasks.task_detail(found))


# `hpc task show`: the same command (Slurm says show, HPC Pack view: either works)
app.command("show", hidden=True)(task_view)


def _stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


@app.command("cancel")
def task_cancel(refs: TaskRefs) -> None:
    """Cancel tasks (JOB TASK..., ranges FIRST-LAST, or JOB.TASK...): a queued one now, a
    running one is killed; the job goes on. Said a line per run of tasks alike (a task
    alone its own); exit 1 if any was refused. One request per job up to 10,000 tasks
    (hpc/task_batches.py)."""
    cancel_each(task_refs(refs), _state_said)


@app.command("requeue")
def task_requeue(refs: TaskRefs) -> None:
    """Run failed or canceled tasks again (JOB TASK..., ranges FIRST-LAST, or JOB.TASK...;
    a job is reopened if it had ended), with the tasks canceled only because they did not
    finish. Said a line per run of tasks alike (a task alone its own); exit 1 if any was
    refused. One request per job up to 10,000 tasks (hpc/task_batches.py)."""
    act_each(task_refs(refs), REQUEUE, _requeued_said, after=_requeued_with)


def _requeued_said(task: dict[str, Any], count: int) -> str:
    """Requeued tasks' state, and how many of each one's dependents came back with it when
    its answer says so (one task's)."""
    back = task.get("requeuedDependents")
    note = None
    if isinstance(back, int) and back > 0:
        note = f"{counted(back, 'dependent task')} requeued with it"
        note = note if count == 1 else f"each with {note}"
    return _state_said(task, count, note=note)


def _requeued_with(job_id: int, said: Said) -> list[str]:
    """After a job's tasks: the dependents that came back with several of them, and which
    dependent jobs stay Canceled (and how to requeue them)."""
    lines = []
    if said.dependents:
        back = counted(said.dependents, "dependent task")
        lines.append(f"job {job_id}: {back} requeued with them")
    left = render.left_canceled({"dependentJobsCanceled": said.jobs_left}, job_id)
    return [*lines, left] if left else lines


def _state_said(task: dict[str, Any], count: int, *, note: str | None = None) -> str:
    """``Canceled``, or ``Canceled (1,000)`` of a run of them: the state, then ``note``
    and how many in parentheses."""
    state = safe(str(task.get("state", "?")))
    if state == "Running":
        note = "until its agent has killed it"
        note = note if count == 1 else "until their agents have killed them"
    notes = [f"{count:,}"] if count > 1 else []
    notes += [note] if note else []
    return f"{state} ({', '.join(notes)})" if notes else state


@app.command("output")
def task_output(
    job_id: TaskRef,
    task_id: OptionalTaskId = None,
    stream: Annotated[
        str,
        typer.Option(metavar="stdout|stderr", help="Which output.", parser=parse_stream),
    ] = "stdout",
    attempt: Annotated[
        int | None,
        typer.Option(
            min=0,
            metavar="N",
            help="Which attempt (0 is the first run); default: the one the task's state "
            "comes from, which is its last.",
            show_default=False,
        ),
    ] = None,
    tail: Annotated[
        int | None,
        typer.Option(min=0, metavar="N", help="Print only the last N lines.", show_default=False),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Go on printing what the task writes until it ends (into its next attempt "
            "if it is retried, unless --attempt); exit code 0 only if it Finished.",
        ),
    ] = False,
) -> None:
    """Print a task's whole stdout (or stderr), of its last attempt unless --attempt.

    Piped or redirected, the output is written unchanged (`> file` is faithful);
    on a terminal, escape sequences and control characters other than newline
    and tab are removed so the output cannot restyle or rewrite the terminal.
    An output cut at HPC_MAX_OUTPUT_BYTES ends with a line saying so. The task is
    JOB TASK or JOB.TASK. With --follow, what the task writes is printed as it is
    stored (on the embedded default as the task writes it; with Blob output when the
    task ends) until the task ends.
    """
    job, task = task_ref(job_id, task_id)
    out = _OutputWriter(terminal=_stdout_is_terminal())
    which = cast(Stream, stream)  # (parse_stream ran as the option's parser)
    stored = True
    with api_client() as client:
        try:
            stored, printed, served = _print_stored(client, job, task, which, attempt, tail, out)
        except ApiError as e:  # a task not run yet has no output: --follow waits for it
            if not (follow and attempt is None and e.status == 404):
                raise
            stored, printed, served = True, 0, None
        if follow:
            _follow(client, job, task, which, served, printed, attempt is not None, out)
    out.close()
    if not stored and not follow:  # not "it printed nothing" (a probe could not tell the two apart)
        of = f" of attempt {served}" if served is not None else ""
        why = (  # an earlier attempt named: it may never have run (a probe read "keeps trying")
            "that attempt may never have reached a node (canceled or requeued while queued), "
            "or its node has yet to reach the Output store"
            if attempt is not None
            else "a running task's output is stored once it ends (its own node shows it as it "
            "runs), an ended task's once its node reaches the Output store (its agent keeps "
            "trying)"
        )
        stderr_console().print(
            f"nothing of task {job}.{task}'s {which}{of} is stored yet: {why}",
            markup=False,
            highlight=False,
        )


def _print_stored(
    client: ApiClient,
    job: int,
    task: int,
    stream: Stream,
    attempt: int | None,
    tail: int | None,
    out: _OutputWriter,
) -> tuple[bool, int, int | None]:
    """Print what is stored of the stream (its last ``tail`` lines, or all of it): whether
    any of it is stored, the offset printed up to, and the attempt served."""
    if tail is not None:
        page = client.task_output_tail(job, task, tail, stream=stream, attempt=attempt)
        out.write(page.data)
        return page.stored, page.size or 0, page.attempt
    stored, printed, served = True, 0, attempt
    for page in client.iter_task_output(job, task, stream=stream, attempt=attempt):
        out.write(page.data)
        stored, printed, served = stored and page.stored, printed + len(page.data), page.attempt
    return stored, printed, served


def _follow(
    client: ApiClient,
    job: int,
    task: int,
    stream: Stream,
    attempt: int | None,
    offset: int,
    pinned: bool,
    out: _OutputWriter,
) -> None:
    """``--follow``: print the rest as it comes (:mod:`hpc.follow`); exit 1 unless the task
    Finished, saying how it ended on stderr."""
    from hpc.follow import follow_output

    def note(text: str) -> None:
        stderr_console().print(text, markup=False, highlight=False)

    ended = follow_output(
        client,
        job,
        task,
        stream=stream,
        attempt=attempt,
        offset=offset,
        pinned=pinned,
        write=out.write,
        note=note,
    )
    state = str(ended.get("state"))
    if state != "Finished":
        out.close()
        code = ended.get("exitCode")
        how = f" (exit code {code})" if code is not None else ""
        note(f"task {job}.{task} {one_line(state)}{how}")
        raise typer.Exit(1)


class _OutputWriter:
    """Task output to stdout as it arrives: bytes unchanged when piped; on a terminal,
    decoded and cleaned a whole line at a time (so an escape sequence split between
    two pages is still recognised)."""

    def __init__(self, *, terminal: bool) -> None:
        self.terminal = terminal
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        sys.stdout.flush()

    def write(self, data: bytes, *, final: bool = False) -> None:
        if not self.terminal:
            buffer = getattr(sys.stdout, "buffer", None)
            if buffer is not None:
                buffer.write(data)
                buffer.flush()  # a pipe reads what --follow prints as it comes
            else:
                sys.stdout.write(data.decode("utf-8", errors="replace"))
            return
        text = self._partial + self._decoder.decode(data, final=final)
        cut = len(text) if final else text.rfind("\n") + 1
        self._partial = text[cut:]
        sys.stdout.write(for_terminal(text[:cut]))

    def close(self) -> None:
        self.write(b"", final=True)
        sys.stdout.flush()
