"""Output the agent still owes a remote Output store: attempts whose streams are in this
node's scratch folder and not yet published whole.

Why: with Blob output an attempt's end is reported once its final publish is done, or once
that publish gave up (Blob not answering: the agent's retries after the SDK's own). Its
files then stayed in the node's scratch folder and nothing published them again: on a VM
that output was out of users' reach for good (a fault probe on one machine missed it: the
reader falls back to the local file there). So the agent keeps a mark ``owed/<key>`` in its
state folder from the attempt's start until a final publish of it succeeds; a mark left (a
publish given up, an agent killed before publishing) is published again every
:data:`RETRY_S`, off the loop, by this agent or the next one of the node, until the store
takes it. The scratch folder may be shared by the machine's agents (``hpc up``): each
publishes only the attempts it marked.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Collection
from pathlib import Path

from agent.publisher import Publisher
from shared.domain.messages import parse_attempt_key
from shared.ports.output import OutputStore

log = logging.getLogger("agent.agent")

RETRY_S = 30.0
"""How often owed output is published again (the first time at the agent's start)."""
FOLDER = "owed"


class OwedOutput:
    def __init__(self, state_dir: Path | None, output: OutputStore, publisher: Publisher) -> None:
        self.folder = state_dir / FOLDER if state_dir is not None and output.remote else None
        """None: nothing is owed (a local store's publish cannot fail so; no state folder)."""
        self._output = output
        self._publisher = publisher
        self._next = 0.0
        self._made = False

    def started(self, key: str) -> None:
        """An attempt started writing its streams here."""
        if self.folder is None:
            return
        try:
            if not self._made:  # once, not at every start
                self.folder.mkdir(parents=True, exist_ok=True)
                self._made = True
            (self.folder / key).touch()
        except OSError as exc:  # its output is still published at its end, as before
            log.warning("could not mark the output of task %s as owed: %s", key, exc)

    def paid(self, key: str) -> None:
        """A final publish of the attempt succeeded."""
        if self.folder is not None:
            with contextlib.suppress(OSError):
                (self.folder / key).unlink()

    def paying(self, key: str, publish: Callable[[], bool]) -> Callable[[], None]:
        """``publish`` (the attempt's final publish: False if it gave up), marking the
        attempt paid when it succeeds."""

        def upload() -> None:
            if publish():
                self.paid(key)

        return upload

    def owed(self) -> list[str]:
        if self.folder is None:
            return []
        with contextlib.suppress(OSError):
            return sorted(p.name for p in self.folder.iterdir())
        return []

    def retry(self, busy: Callable[[], Collection[str]]) -> None:
        """At most every :data:`RETRY_S`, unless the last round still runs: a round, off the
        loop on a worker of its own (agent/publisher.py ``behind``), that publishes again
        each owed attempt not ``busy()`` (running, in its grace, or in its first publish:
        asked only when a round is due, not at every turn of the agent's loop), and
        stops at the first that fails: the store is still not answering, and one try a round
        is enough to find out (a probe's 36 owed attempts, each tried every round for 20 s,
        held every new end's first publish back)."""
        now = time.monotonic()
        if self.folder is None or now < self._next:
            return
        self._next = now + RETRY_S
        skip = busy()
        keys = [k for k in self.owed() if k not in skip]
        if keys and not self._publisher.behind(functools.partial(self._round, keys)):
            self._next = now + 1.0  # the last round still runs: look again soon

    def _round(self, keys: list[str]) -> None:
        for n, key in enumerate(keys):
            ids = parse_attempt_key(key)
            if ids is None:
                self.paid(key)  # not an attempt's mark
                continue
            job_id, task_id, attempt = ids
            try:
                self._output.publish(job_id, task_id, attempt=attempt, final=True)
            except Exception as exc:
                log.warning(
                    "the output of %d ended task(s) is still owed: the Output store did not "
                    "take %s (%s); trying again in %g s",
                    len(keys) - n,
                    key,
                    first_line(exc),
                    RETRY_S,
                )
                return
            self.paid(key)
            log.info("the output of task %s, owed since its end, is published", key)


def first_line(exc: BaseException) -> str:
    """An exception's first line (the Azure SDK's run to many): enough for a log line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
