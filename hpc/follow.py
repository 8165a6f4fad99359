"""``hpc task output --follow``: print a task's output as it grows, until the task ends
(``tail -f`` on a Slurm job's file, without a shared file system).

Each poll reads the task's state first, then the bytes past what was printed: an ended
task's end is reported only once its output is stored (agent/publisher.py), so the read
after a terminal state is the last one needed. With Blob output a running task's output is
stored once it ends, so there the whole of it comes then; on the embedded default it comes
as the task writes it. A task requeued or retried meanwhile is followed into its next
attempt (said on stderr), unless ``--attempt`` named one. A control plane that stops
answering for a moment (a restart) does not end the follow; one silent for longer than
``patience_s`` does, as :mod:`hpc.watch` does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from hpc import watch
from hpc.client import ApiClient, ApiError
from hpc.client_output import Stream
from hpc.text import one_line
from shared.domain.states import TASK_TERMINAL, TaskState

TERMINAL = frozenset(s.value for s in TASK_TERMINAL)
WAITING = frozenset({TaskState.QUEUED.value})


def _waiting(job_id: int, task_id: int, task: dict[str, Any]) -> str:
    """Said once on stderr for a task not started yet, so a follow that prints nothing says
    why (a probe's follow of a held task sat silent)."""
    why = task.get("pendingReason")
    tail = f": {one_line(str(why))}" if why else ""
    return (
        f"task {job_id}.{task_id} is {task.get('state')}{tail}; its output follows once it starts"
    )


def follow_output(
    client: ApiClient,
    job_id: int,
    task_id: int,
    *,
    stream: Stream,
    attempt: int | None,
    offset: int,
    pinned: bool,
    write: Callable[[bytes], None],
    note: Callable[[str], None],
    interval_s: float | None = None,
    patience_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Print ``stream`` of ``attempt`` from ``offset`` on as it grows; return the task once it
    ended and all its output was printed. ``pinned``: the user named the attempt (it is
    not left for a later one)."""
    interval_s = watch.POLL_INTERVAL_S if interval_s is None else interval_s
    patience_s = watch.PATIENCE_S if patience_s is None else patience_s
    told = False
    while True:
        task = watch.poll_patiently(
            lambda: client.get_task(job_id, task_id),
            retry_s=interval_s,
            patience_s=patience_s,
            sleep=sleep,
        )
        if not told and task.get("state") in WAITING:
            note(_waiting(job_id, task_id, task))
            told = True
        latest = task.get("attempt")
        if attempt is None:
            attempt = latest
        offset = _print_new(client, job_id, task_id, stream, attempt, offset, write)
        if not pinned and isinstance(latest, int) and attempt is not None and latest > attempt:
            note(f"task {job_id}.{task_id}: attempt {attempt} ended; following attempt {latest}")
            attempt, offset = latest, 0
            continue
        if task.get("state") in TERMINAL:
            return task
        sleep(interval_s)


def _print_new(
    client: ApiClient,
    job_id: int,
    task_id: int,
    stream: Stream,
    attempt: int | None,
    offset: int,
    write: Callable[[bytes], None],
) -> int:
    """Print the bytes of ``attempt`` past ``offset``; the new offset. An attempt that has not
    reached a node has no output yet (404): nothing to print."""
    try:
        for page in client.iter_task_output(
            job_id, task_id, stream=stream, attempt=attempt, offset=offset
        ):
            if page.data:
                write(page.data)
                offset += len(page.data)
    except ApiError as e:
        if e.status != 404:
            raise
    return offset
