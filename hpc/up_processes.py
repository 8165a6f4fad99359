"""The child processes of ``hpc up``: start, watch and stop them, and their logs.

The guarantees (ordered stop, own process group, PR_SET_PDEATHSIG, logs per
child) are stated in :mod:`hpc.up`, which drives this and prints the console output.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any

import httpx
from rich.console import Console

from hpc.client import ApiClient, ApiError
from hpc.errors import CliError
from hpc.render import parse_time
from hpc.text import safe, strip_controls
from hpc.up_restarts import RESTART_AFTER_S, Restarts, exit_text, restart_refusal

HOST_NAME = "devhost"
AGENT_GROUP = "OnPremNodes"
START_TIMEOUT_S = 30.0
"""How long the control plane may take to answer health, and the agents to come Online."""
STOP_TIMEOUT_S = 10.0
"""How long each stage of the shutdown waits for SIGTERM to work before SIGKILL."""
POLL_S = 0.2
LOG_TAIL_LINES = 20
LOG_ROTATE_BYTES = 64 * 1024 * 1024
"""A log past this at a start is moved to ``NAME.log.1`` (one older file kept)."""


def agent_name(index: int) -> str:
    """Name of the index-th local agent (1-based)."""
    return f"onprem-{index}"


HELD_STATES = ("Draining", "Offline")
"""The states an admin's hold keeps a node in (its JSON's ``held``: ``drain`` or ``offline``)."""


def heard_since(node: dict[str, Any], since: datetime) -> bool:
    """Its agent was heard from ``since`` on: a heartbeat older than that is an earlier run's
    agent, not this one."""
    heard = parse_time(node.get("lastHeartbeat"))
    return heard is not None and heard >= since


def held_and_heard(node: dict[str, Any], since: datetime) -> bool:
    """Whether ``node`` is held by an admin (``hpc node drain | offline``) and its agent was
    heard from ``since`` on: the agent started and registered, and the hold keeps the node
    Draining or Offline (README: "holds until an admin starts the node again")."""
    if not node.get("held") or node.get("state") not in HELD_STATES:
        return False
    return heard_since(node, since)


def node_started(node: dict[str, Any], since: datetime) -> bool:
    """Whether ``hpc up`` may count the node as started: Online or held by an admin, with its
    agent heard from ``since`` on. Online alone is not enough: after a crash the store still
    says Online of the last run's node (a probe: `hpc up` printed the old table, "2s ago")."""
    return (node.get("state") == "Online" and heard_since(node, since)) or held_and_heard(
        node, since
    )


def held_line(node: dict[str, Any]) -> str:
    """What ``hpc up`` says of a node an admin holds: it stays so until brought online."""
    name = node.get("name")
    return f"{name} stays {node.get('state')} (held by an admin: hpc node online {name})"


@dataclass
class Child:
    """One child process and the log file its output goes to."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]
    start: int = 0
    """Where this run's output begins in the (appended) log file."""
    reported: bool = False
    """Its unexpected exit has been reported already."""
    args: list[str] = field(default_factory=list)
    """What it was started with (an agent is started again with them)."""
    restarts: Restarts = field(default_factory=Restarts)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines this run wrote (not an earlier run's, above it in the file)."""
        self.log_file.flush()
        try:
            with self.log_path.open("rb") as f:
                f.seek(self.start)
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])


@dataclass
class Stopper:
    """Signal state: ``stop`` is set by the first SIGINT/SIGTERM, ``force`` by the second."""

    stop: threading.Event = field(default_factory=threading.Event)
    force: threading.Event = field(default_factory=threading.Event)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stop.is_set():
            self.force.set()
        self.stop.set()


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that asks Linux to SIGTERM the child when ``hpc up`` dies (else None)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)

    return preexec


class ClusterProcesses:
    """The children of one ``hpc up`` and the steps to start, watch and stop them."""

    def __init__(
        self,
        *,
        root: Path,
        home: Path,
        port: int,
        env: dict[str, str],
        console: Console,
        stopper: Stopper,
    ) -> None:
        self.root, self.home, self.port, self.env = root, home, port, env
        self.console, self.stopper = console, stopper
        self.url = f"http://127.0.0.1:{port}"
        self.logs = home / "logs"
        self.host: Child | None = None
        self.agents: list[Child] = []
        self.agents_since: datetime | None = None
        """When the agents were started: a node heard from before is an earlier run's."""
        self._preexec = _die_with_parent()

    def spawn(self, name: str, args: list[str]) -> Child:
        self.logs.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"{name}.log"
        # appended, not truncated: a restart after a crash must not wipe the log of the
        # minutes before it (a probe lost the killed control plane's); kept to two files
        with contextlib.suppress(OSError):
            if log_path.stat().st_size > LOG_ROTATE_BYTES:
                log_path.replace(log_path.with_name(f"{name}.log.1"))
        log_file = log_path.open("ab")
        log_file.write(
            f"--- {name} started by hpc up at {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC\n".encode()
        )
        log_file.flush()
        start = log_file.tell()
        try:
            proc = subprocess.Popen(
                [sys.executable, *args],
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # Safe: preexec_fn only calls prctl, and hpc up runs no other threads.
                preexec_fn=self._preexec,
            )
        except OSError as e:
            log_file.close()
            raise CliError(f"cannot start {name}: {e}") from None
        return Child(
            name=name, proc=proc, log_path=log_path, log_file=log_file, start=start, args=args
        )

    # --- starting ----------------------------------------------------------

    def start_host(self) -> None:
        self.host = self.spawn(HOST_NAME, ["-m", "devhost", "--port", str(self.port)])
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.stopper.stop.is_set():
            if not self.host.alive():
                raise self._died(self.host, "the control plane")
            try:
                response = httpx.get(f"{self.url}/api/health", timeout=1.0)
                if response.status_code == 200:
                    self._check_functions()
                    return
                if response.status_code == 503:  # its settings are wrong: say so, stop
                    error = response.json().get("error", response.text)
                    raise CliError(f"{error}; see {self.host.log_path}")
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise self._timeout(
                    f"the control plane did not answer {self.url}/api/health within "
                    f"{START_TIMEOUT_S:g} s",
                    [self.host],
                )
            self.stopper.stop.wait(POLL_S)

    def _check_functions(self) -> None:
        """A function the host could not load (a bad schedule setting: no reconciler, so a
        dead node's tasks are never requeued) fails ``hpc up`` rather than a cluster said
        to be up without it (a probe's ran so)."""
        status = httpx.get(f"{self.url}/admin/host/status", timeout=5.0).json()
        errors = status.get("errors") or []
        if errors:
            assert self.host is not None
            raise CliError(
                "the control plane could not load "
                + "; ".join(str(e) for e in errors)
                + f"; see {self.host.log_path}"
            )

    def start_agents(self, count: int, cores: int) -> None:
        self.agents_since = datetime.now(UTC)
        for i in range(1, count + 1):
            name = agent_name(i)
            args = ["-m", "agent", "--name", name, "--group", AGENT_GROUP, "--cores", str(cores)]
            self.agents.append(self.spawn(name, args))

    def wait_online(self, client: ApiClient) -> list[dict[str, Any]]:
        """The API's node list once the node of every running agent is started: Online, or
        held Draining or Offline by an admin (``hpc node drain | offline`` holds across agent
        restarts) with its agent heard since the agents started; each held one is said.

        An agent that exits meanwhile is reported, and started again as it is once the
        cluster is up (hpc/up_restarts.py), or, if not, no longer waited for (the cluster
        comes up without it); only if every agent is down at once does ``hpc up`` fail.
        """
        since = self.agents_since or datetime.now(UTC)
        deadline = time.monotonic() + START_TIMEOUT_S
        nodes: list[dict[str, Any]] = []
        while not self.stopper.stop.is_set():
            if self.host is not None and not self.host.alive():
                raise self._died(self.host, "the control plane")
            self.report_dead_agents(restart=True)
            running = [a for a in self.agents if a.alive()]
            if self.agents and not running:
                last = self.agents[-1]
                raise CliError(
                    f"every agent exited while starting; see {last.log_path} and the others "
                    f"in {self.logs}"
                )
            try:
                nodes = client.list_nodes().get("nodes", [])
            except ApiError as e:
                if e.status != 0:
                    raise
            wanted = {a.name for a in running}
            started = {n.get("name") for n in nodes if node_started(n, since)}
            if wanted <= started:
                mine = [n for n in nodes if n.get("name") in wanted]
                for node in mine:
                    if node.get("state") != "Online":
                        self.console.log(f"[yellow]{safe(held_line(node))}")
                return mine
            if time.monotonic() > deadline:
                missing = sorted(wanted - started)
                raise self._timeout(
                    f"node(s) {', '.join(missing)} not Online within {START_TIMEOUT_S:g} s",
                    [a for a in self.agents if a.name in missing],
                )
            self.stopper.stop.wait(POLL_S)
        return nodes

    def report_dead_agents(self, *, restart: bool = False) -> None:
        """Log each agent that exited since the last check, once, with the tail of its log;
        with ``restart``, start it again when due (hpc/up_restarts.py): while the cluster
        starts too (a test's kill -9 came while `hpc up` still waited for its nodes)."""
        now = time.monotonic()
        for i, agent in enumerate(self.agents):
            if agent.alive():
                continue
            code, plan = agent.proc.returncode, agent.restarts
            if not agent.reported:
                agent.reported = True
                refusal = restart_refusal(code, plan.made, now) if restart else "starting"
                if refusal is None:
                    plan.due = now + RESTART_AFTER_S
                    then = f"starting it again in {RESTART_AFTER_S:g} s"
                else:
                    then = "the cluster stays up without it" + (
                        f" (not started again: {refusal})" if restart else ""
                    )
                self.console.log(
                    f"[yellow]agent {agent.name} {exit_text(code)}; {then} "
                    f"(see {safe(agent.log_path)})"
                )
                self._print_tail(agent)
            if plan.due is not None and now >= plan.due:
                agent.log_file.close()
                again = self.spawn(agent.name, agent.args)
                again.restarts = Restarts(made=[*plan.made, now])
                self.agents[i] = again
                self.console.log(
                    f"agent {agent.name} started again: it reports the ends its predecessor "
                    "recorded, so no task runs to its end twice"
                )

    def _died(self, child: Child, what: str) -> CliError:
        child.reported = True
        self._print_tail(child)
        return CliError(
            f"{what} exited with code {child.proc.returncode} while starting; see {child.log_path}"
        )

    def _timeout(self, message: str, children: list[Child]) -> CliError:
        for child in children:
            self._print_tail(child)
        logs = ", ".join(str(c.log_path) for c in children)
        return CliError(f"{message}; see {logs}")

    def _print_tail(self, child: Child) -> None:
        tail = child.tail()
        if tail:
            self.console.rule(f"last lines of {safe(child.log_path)}", style="dim")
            self.console.print(strip_controls(tail), markup=False, highlight=False)
            self.console.rule(style="dim")

    def supervise(self) -> int:
        """Until a stop signal (0) or the control plane's death unless started again (1), as
        an agent (hpc/up_restarts.py; a probe's kill -9 of it stopped the cluster)."""
        while not self.stopper.stop.wait(0.5):
            host = self.host
            if host is not None and not host.alive():
                code, now = host.proc.returncode, time.monotonic()
                refusal = restart_refusal(code, host.restarts.made, now)
                then = "starting it again" if refusal is None else f"stopping ({refusal})"
                self.console.log(f"[red]the control plane {exit_text(code)}; {then}")
                self._print_tail(host)
                if refusal is not None or self.stopper.stop.wait(RESTART_AFTER_S):
                    return 0 if refusal is None else 1
                host.log_file.close()
                try:
                    self.start_host()
                except CliError as e:
                    self.console.log(f"[red]{e}")
                    return 1
                assert self.host is not None
                self.host.restarts = Restarts(made=[*host.restarts.made, now])
            self.report_dead_agents(restart=True)
        return 0

    # --- stopping -------------------------------------------------------------

    def stop(self) -> None:
        """The host first, then the agents; each stage SIGTERM, wait, SIGKILL. Idempotent.

        The host first: it stops scheduling (and its local VMs) before any agent stops, so
        the tasks a stopping agent gives back are not dispatched to a node that is about to
        stop too (a probe saw them started on a VM and killed 200 ms later, an attempt
        spent). The agents' last events (ends, NodeStopping) wait in the bus, which is
        durable, for the next start."""
        if self.host is not None:
            self._stop_group([self.host])
        self._stop_group(self.agents)
        for child in [*self.agents, *([self.host] if self.host else [])]:
            child.log_file.close()

    def _stop_group(self, children: list[Child]) -> None:
        live = [c for c in children if c.alive()]
        for child in live:
            child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while any(c.alive() for c in live):
            if time.monotonic() > deadline or self.stopper.force.is_set():
                break
            time.sleep(0.05)
        for child in live:
            if child.alive():
                self.console.log(f"[yellow]{child.name} did not stop in time; killing it")
                child.proc.kill()
            child.proc.wait()
