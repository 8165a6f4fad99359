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
        remote = state_dir is not None and output.remote
        self.folder = state_dir / FOLDER if remote and state_dir is not None else None
        """None: nothing is owed (a local store's publish cannot fail so; no state folder)."""
        self._output = output
        self._publisher = publisher
        self._next = 0.0

    def started(self, key: str) -> None:
        """An attempt started writing its streams here."""
        if self.folder is None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
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

    def retry(self, busy: Collection[str]) -> None:
        """At most every :data:`RETRY_S`: publish again, off the loop, each owed attempt
        that is not ``busy`` (running, in its grace, or in its first publish)."""
        if self.folder is None or time.monotonic() < self._next:
            return
        self._next = time.monotonic() + RETRY_S
        for key in self.owed():
            ids = parse_attempt_key(key)
            if ids is None:
                self.paid(key)  # not an attempt's mark
            elif key not in busy and not self._publisher.retrying(key):
                self._publisher.background(key, functools.partial(self._publish, key, ids))

    def _publish(self, key: str, ids: tuple[int, int, int]) -> None:
        job_id, task_id, attempt = ids
        try:
            self._output.publish(job_id, task_id, attempt=attempt, final=True)
        except Exception as exc:
            log.warning("the output of task %s is still not published (%s)", key, exc)
            return
        self.paid(key)
        log.info("the output of task %s, owed since its end, is published", key)
