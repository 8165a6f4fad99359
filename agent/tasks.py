"""The attempts this agent runs: start, cancel, reap, kill, and report each one's events.

Guarantees:

- An assignment delivered twice (a lost lock, a redelivery) runs once: the attempts
  running and recently ended are remembered.
- A newer attempt of a task kills an older one still running here (the control plane
  gave up on it, so it must not hold cores).
- Every end is reported once, with its exit code. A task the agent's kill signal reached
  while it still ran (cancel, runtime limit) ends canceled or with the runtime-limit error,
  whatever exit code it ends with (a command that traps SIGTERM and exits 0 too), as Slurm
  says CANCELLED or TIMEOUT; one that had ended before the agent signaled it keeps its own
  result. The agent decides from its process, never from the end record (which a trap writes
  after the signal too): :attr:`Runner.kill_reached`.
- The lifeline watchdog learns of every process group, so the tasks die with the agent.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Sequence

from agent import memorylimit
from agent.config import AgentConfig
from agent.fencing import Fencing
from agent.owedoutput import OwedOutput
from agent.owners import RunAsOwner
from agent.publisher import Publisher
from agent.reporter import Reporter
from agent.runner import Runner, kill_trees, task_key
from agent.stopping import Stopping, Why
from agent.taskenv import task_env
from shared.domain.durations import format_duration
from shared.domain.messages import (
    AssignmentRefused,
    CancelTask,
    EndedAttempt,
    RunTask,
    TaskStarted,
)
from shared.ports.output import OutputStore

log = logging.getLogger("agent.agent")

PUBLISH_WAIT_S = 60.0
"""How long an agent that stops, or whose incarnation is over, waits for ended tasks' output
to be published so that their ends go out with it (an end not sent stays on disk for the
next registration)."""
_REMEMBERED = 10_000
"""How many ended attempts are remembered to ignore their redelivered assignments."""
STOP_GRACE_S = 1.0
"""The grace of tasks killed at once, waited for in place: an agent that stops or whose
incarnation is over (their attempts run again elsewhere), an older attempt a newer one
supersedes (it must be gone before the newer one starts)."""


class Tasks(Fencing):
    def __init__(self, config: AgentConfig, *, output: OutputStore, reporter: Reporter) -> None:
        super().__init__(config)
        self.output, self.reporter = output, reporter
        self.running: dict[str, Runner] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._reported: list[str] = []
        """Attempts whose end was queued for sending: their end records go once it is sent."""
        self._run_as = RunAsOwner(config.name) if config.run_as_owner else None
        """--run-as-owner: each task runs as its job's owner (agent/owners.py)."""
        self.publisher = Publisher(inline=not output.remote)
        """Publishes ended tasks' output, off the loop for a remote Output store; each end is
        reported once its output is published (agent/publisher.py)."""
        self.owed = OwedOutput(config.state_dir, output, self.publisher)
        """Output whose publish gave up, published again until it is in (agent/owedoutput.py)."""
        self.stopping = Stopping()
        """Canceled tasks and tasks past their runtime limit, in their grace (agent/stopping.py)."""
        self._memory_look = 0.0
        """When the running tasks' memory is measured next (--enforce-memory)."""
        self._used_mb: dict[str, tuple[int, int]] = {}
        """Tasks killed for their memory: key -> (MB used, MB asked), for their end's error."""

    @property
    def listed(self) -> list[str]:
        """What heartbeats say runs here: the running attempts, those in their grace after a
        cancel or their runtime limit, and those that ended but whose end is not reported yet
        (their output is being published)."""
        return sorted([*self.running, *self.stopping.kills, *self.publisher.in_flight()])

    @property
    def busy(self) -> bool:
        """Something may end soon: the loop polls often, so an end is reported within ms."""
        return bool(self.running or self.stopping.kills or self.publisher.in_flight())

    @property
    def free_cores(self) -> int:
        held = [*self.running.values(), *(k.runner for k in self.stopping.kills.values())]
        return max(0, self.config.cores - sum(r.task.cores for r in held))

    # ----------------------------------------------------------------- assignments

    def run(self, task: RunTask, *, incarnation: int | None) -> None:
        key = task_key(task.job_id, task.task_id, task.attempt)
        if task.incarnation != incarnation:
            log.info(
                "dropping task %s: it was meant for incarnation %d of this node, not %s",
                key,
                task.incarnation,
                incarnation,
            )
            self.reporter.emit(
                AssignmentRefused(
                    **self.reporter.stamp(),
                    job_id=task.job_id,
                    task_id=task.task_id,
                    attempt=task.attempt,
                    meant_for=task.incarnation,
                    reason=f"meant for incarnation {task.incarnation}, this is {incarnation}",
                )
            )
            return
        if key in self.running or key in self._ended:
            log.info("task %s was assigned again; it runs or ran already", key)
            return
        older = [
            r
            for r in self.running.values()
            if (r.task.job_id, r.task.task_id) == (task.job_id, task.task_id)
        ]
        if older:
            log.info("task %s supersedes %s here; killing them", key, [r.key for r in older])
            for runner in older:
                del self.running[runner.key]
                self._remember(runner.key)
            self.end_killed(older)
        in_grace = self.stopping.of_task(task.job_id, task.task_id)
        if in_grace:  # an older attempt being canceled: gone before this one starts
            log.info("task %s supersedes %s here; their grace is cut short", key, in_grace)
            for kill, code in self.stopping.ended(keys=in_grace):
                self._end_kill(kill.runner, kill.why, code)
        env = task_env(task, node=self.config.name, group=self.config.groups[0])
        records = self._records
        record = None if records is None else (records, records.path(*_ids(task)))
        runner = Runner(task, output=self.output, env=env, end_record=record, run_as=self._run_as)
        error = runner.start()
        if error is not None:
            self._remember(key)
            log.warning("task %s could not start: %s", key, error)
            self.reporter.ended(task, exit_code=None, error=error)
            return
        self.running[key] = runner
        self.owed.started(key)
        if runner.pid is not None:
            self.track(runner.pid, key, runner.stdout_file)  # its process group id
        log.info(
            "task %s started (pid %s, %d cores): %s",
            key,
            runner.pid,
            task.cores,
            short(task.command, 200),
        )
        self.reporter.emit(
            TaskStarted(
                **self.reporter.stamp(),
                job_id=task.job_id,
                task_id=task.task_id,
                attempt=task.attempt,
                pid=runner.pid,
            )
        )

    def cancel(self, cancel: CancelTask, *, incarnation: int | None) -> Runner | None:
        """The runner to kill, or None when this attempt does not run here. An attempt
        this agent never saw is reported canceled so the control plane is not left waiting;
        one that ended already was reported, and its later TaskEnded would be stale anyway."""
        key = task_key(cancel.job_id, cancel.task_id, cancel.attempt)
        if cancel.incarnation != incarnation:
            return None  # meant for an earlier agent of this node: nothing of ours
        runner = self.running.pop(key, None)
        if runner is not None:
            self._remember(key)
            return runner
        if key not in self._ended:
            self._remember(key)
            log.info("task %s canceled before it ran here", key)
            self.reporter.ended(cancel, exit_code=None, canceled=True)
        return None

    def begin_cancel(self, runners: Sequence[Runner]) -> None:
        """Canceled: SIGTERM now, SIGKILL after the grace; each ends in :meth:`reap`."""
        self.stopping.begin(list(runners), "cancel", self.config.kill_grace_s)

    def end_killed(self, runners: Sequence[Runner]) -> None:
        """Killed in place (an older attempt a newer one supersedes): canceled, or its own end
        if it had ended first."""
        codes = kill_trees(runners, grace_s=min(self.config.kill_grace_s, STOP_GRACE_S))
        for runner, code in zip(runners, codes, strict=True):
            self._end_kill(runner, "cancel", code)

    def _end_kill(self, runner: Runner, why: Why, code: int | None) -> None:
        """A kill is over: the end is the kill's if it reached the task running (canceled,
        or failed past its runtime limit), else the task's own (it had ended first). A
        task past its limit that the fence killed first is requeued: its node registers
        again."""
        fence = self._fence_killed(runner, code)
        if why in ("limit", "memory") and fence:
            self.fenced = True
            self._used_mb.pop(runner.key, None)
            self._end(runner, report=False)
        elif not runner.kill_reached and not fence:  # it had ended before the kill: say how
            log.info("task %s ended (exit code %s) before it was killed", runner.key, code)
            self._end(runner, exit_code=code)
        elif why == "cancel":
            log.info("task %s canceled (exit code %s)", runner.key, code)
            self._end(runner, exit_code=code, canceled=True)
        elif why == "memory":
            error = memorylimit.exceeded(*self._used_mb.pop(runner.key, (0, 0)))
            log.warning("task %s killed: %s", runner.key, error)
            self._end(runner, exit_code=code, error=error, over_limit=True)
        else:
            limit = format_duration(runner.task.runtime_limit_s or 0)
            log.warning("task %s killed: runtime limit %s exceeded", runner.key, limit)
            self._end(
                runner, exit_code=code, error=f"runtime limit {limit} exceeded", over_limit=True
            )

    def reap(self) -> None:
        """Report the tasks that ended, and end those past their runtime limit."""
        self.publisher.settle()  # the ends whose output is published by now
        self.owed.retry(lambda: set(self.listed))
        for kill, code in self.stopping.ended():
            self._end_kill(kill.runner, kill.why, code)
        overrun: list[Runner] = []
        now = time.monotonic()
        for key, runner in list(self.running.items()):
            code = runner.poll()
            if code is None:
                limit = runner.task.runtime_limit_s
                if limit is not None and now - runner.started_at > limit:
                    del self.running[key]
                    self._remember(key)
                    overrun.append(runner)
                continue
            del self.running[key]
            self._remember(key)
            if self._fence_killed(runner, code):  # (no shell exits so by itself)
                log.warning(
                    "task %s was killed by the lifeline's fence (no heartbeat went out for "
                    "%g s): not an end of its own; this node registers again",
                    key,
                    self.fence_s,
                )
                self.fenced = True
                self._end(runner, report=False)
                continue
            if self._records is not None and self._records.killed(key):
                # Its shell had exited by itself (the agent, paused or cut off, had not yet
                # seen it) when the fence marked it: an end of its own, reported as such.
                self._records.unmark(key)
                log.warning(
                    "task %s had ended by itself (exit code %d) before the lifeline's fence; "
                    "its end is reported",
                    key,
                    code,
                )
            log.info(
                "task %s ended: exit code %d after %.2f s",
                key,
                code,
                time.monotonic() - runner.started_at,
            )
            self._end(runner, exit_code=code)
        if overrun:  # they fail with that reason (unless they had ended just before)
            self.stopping.begin(overrun, "limit", self.config.kill_grace_s)
        if self.config.enforce_memory and now >= self._memory_look:
            self._memory_look = now + memorylimit.LOOK_S
            self._kill_over_memory()

    def _kill_over_memory(self) -> None:
        """Kill the running tasks that use more memory than they asked for, at once (no grace:
        their use grows meanwhile); each fails saying so (agent/memorylimit.py)."""
        groups = {k: (r.pid, r.task.env) for k, r in self.running.items() if r.pid is not None}
        hogs = []
        for key, used, limit in memorylimit.over_their_asks(groups):
            hogs.append(self.running.pop(key))
            self._remember(key)
            self._used_mb[key] = (used, limit)
        if hogs:
            self.stopping.begin(hogs, "memory", 0.0)

    def kill_all(self, *, report: bool) -> list[str]:
        """Kill every task (the agent stops, or its incarnation is over). Those that had ended
        before the kill reached them are reported ended if ``report`` (else their end records
        stay for the next registration); returns the others' keys."""
        for kill, code in self.stopping.ended(force=True):  # their grace is cut short
            if report:
                self._end_kill(kill.runner, kill.why, code)
            else:
                self._end(kill.runner, report=False)
        runners = list(self.running.values())
        self.running.clear()
        killed = []
        codes: list[int | None] = [None] * len(runners)
        if runners:
            log.info("killing %d running task(s)", len(runners))
            codes = kill_trees(runners, grace_s=min(self.config.kill_grace_s, STOP_GRACE_S))
        for runner, code in zip(runners, codes, strict=True):
            self._remember(runner.key)
            fenced = self._fence_killed(runner, code)  # dead already, by the fence: no end
            if not runner.kill_reached and code is not None and report and not fenced:
                self._end(runner, exit_code=code)
            else:
                self._end(runner, report=False)  # publishes what they wrote
                killed.append(runner.key)
        # before this incarnation ends: every end whose output is out goes with it
        self.publisher.settle(wait_s=PUBLISH_WAIT_S, anyway=True)
        return sorted(killed)

    # ------------------------------------------------------------------ end records

    def recorded_leftovers(self) -> list[EndedAttempt]:
        """The ends on disk that an earlier agent of this node may not have reported, for the
        registration to carry (the control plane applies them before it requeues anything)."""
        if self._records is None:
            return []
        return [
            EndedAttempt(
                key=task_key(left.job_id, left.task_id, left.attempt), exit_code=left.exit_code
            )
            for left in self._records.leftovers(running=set(self.running))
        ][:2000]

    def report_leftovers(self) -> None:
        """Ends recorded on disk that an earlier agent of this node died before reporting."""
        if self._records is None:
            return
        for left in self._records.leftovers(running=set(self.running)):
            key = task_key(left.job_id, left.task_id, left.attempt)
            log.warning(
                "task %s ended (exit code %d) and an earlier agent or incarnation of this node "
                "had not said so; reporting it",
                key,
                left.exit_code,
            )
            self.reporter.ended(left, exit_code=left.exit_code)
            self._reported.append(key)

    def forget_reported(self) -> None:
        """Once every queued event is sent, the end records behind them are not needed."""
        if self._records is None or self.reporter.pending or not self._reported:
            return
        for key in self._reported:
            self._records.forget(key)
        self._reported.clear()

    def _remember(self, key: str) -> None:
        self._ended[key] = None
        self._ended.move_to_end(key)
        while len(self._ended) > _REMEMBERED:
            self._ended.popitem(last=False)

    def _end(
        self,
        runner: Runner,
        *,
        report: bool = True,
        exit_code: int | None = None,
        canceled: bool = False,
        error: str | None = None,
        over_limit: bool = False,
    ) -> None:
        """An attempt ended (its process group is gone, so the lifeline forgets it): publish
        its output, then (``report``) report its end, with its stdout's tail, once published
        (agent/publisher.py: off the loop for a remote Output store)."""
        tail = runner.finish(publish=False)
        if runner.pid is not None:
            self.untrack(runner.pid)

        def then() -> None:
            if report:
                self.reporter.ended(
                    runner.task,
                    exit_code=exit_code,
                    canceled=canceled,
                    error=error,
                    output=tail,
                    over_limit=over_limit,
                )
                self._reported.append(runner.key)

        self.publisher.publish(runner.key, self.owed.paying(runner.key, runner.publish), then)


def _ids(task: RunTask) -> tuple[int, int, int]:
    return task.job_id, task.task_id, task.attempt


def short(text: str, limit: int = 1000) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
