"""LocalProvider: the embedded Compute adapter. Each "VM" is an agent process on this machine.

It lets the autoscaler and ``hpc node start/stop`` run end to end without a
cloud: a created VM is a name remembered here (deallocated); start spawns
``python -m agent --name N --group G --cores C [--memory-mb M]`` with this cluster's
``HPC_HOME`` after a boot delay; deallocate is SIGTERM (the agent stops
cleanly and says so), then SIGKILL if it still runs :data:`DEALLOCATE_GRACE_S` later, as
an Azure deallocation always ends; delete forgets it. Fault switches (:class:`LocalFaults`,
:meth:`LocalProvider.evict`) play what Azure does to us: refused creates,
quota, a VM whose agent never joins, an eviction.

Power states are derived from the process (alive, booting, gone), so they are
true even when an agent dies by itself. It serves one long-lived process (``hpc up``, the
local host); each VM's spec and power are also kept on disk (``local_vms.py``), so a
restarted control plane finds its VMs and boots again at once those that were on, as an
Azure VM outlives the control plane (a task that ended after a kill of the whole cluster
is reported by its VM's agent, not run again).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from shared.adapters.local_vms import VmRegistry
from shared.ports.compute import (
    Action,
    ComputeError,
    ComputeProvider,
    ErrorKind,
    Operation,
    OperationResult,
    PowerState,
    VmSpec,
)


@dataclass
class LocalFaults:
    """Switches a test flips to make the provider misbehave like a cloud."""

    fail_create: ErrorKind | None = None
    """Creates fail with this kind (AllocationFailed, SkuNotAvailable, ...)."""
    quota_exceeded: bool = False
    """Creates and starts are refused with QuotaExceeded."""
    never_joins: set[str] = field(default_factory=set)
    """VMs that boot (power running) but whose agent never starts."""


@dataclass
class _Vm:
    spec: VmSpec
    proc: subprocess.Popen[bytes] | None = None
    booted_at: float = 0.0
    """Monotonic time the boot delay ends."""
    stopping: bool = False
    exit_code: int | None = None
    """How the last process ended (None: still running or never started)."""
    deallocated: bool = False
    """Deallocated by request since its last start: that start was preempted, not failed."""
    kill_at: float | None = None
    """Monotonic time its deallocation's SIGKILL is due if it still runs (None: none due)."""


log = logging.getLogger(__name__)

_UNKNOWN = (
    "no such VM here: deleted (or its record in $HPC_HOME/vms was); a new start creates it again"
)
DEALLOCATE_GRACE_S = 5.0
"""How long a deallocated VM's process has after SIGTERM (its agent stops cleanly and says so)
before SIGKILL. Checked when the provider is next asked (a poll, the power states, a start),
so no call waits for it: a probe's agent, SIGSTOPped, never acted on SIGTERM, its VM stayed
deallocating and its start was refused ("being deallocated") until resumed by hand."""
NAME_WAIT_S = 30.0
"""How long a VM's agent waits for its last agent to finish stopping (``--wait-for-name``):
a VM booted again at a restart may find the agent the dying control plane SIGTERMed still
killing its tasks."""


class LocalProvider(ComputeProvider):
    name = "local"

    def __init__(
        self,
        home: Path,
        *,
        boot_delay_s: float = 0.0,
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        faults_file: Path | None = None,
    ) -> None:
        self.home = home
        self.boot_delay_s = boot_delay_s
        self.python = python
        self.env = {**(env if env is not None else os.environ), "HPC_HOME": str(home)}
        self.cwd = cwd
        self.faults = LocalFaults()
        self.faults_file = faults_file
        self._faults_seen: tuple[float, int] | None = None
        self._evict_named: set[str] = set()
        """The last good faults file's ``evict`` list: a name is evicted when it is new."""
        self._vms: dict[str, _Vm] = {}
        self._requests: dict[str, Operation] = {}
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="local-vms")
        """The one thread every VM process is forked from (see :func:`_die_with_parent`)."""
        self._registry = VmRegistry(home / "vms")
        self._parent = os.getppid()
        """The process that started this one (``hpc up``): see :meth:`close`."""
        self._boot_again()

    def _boot_again(self) -> None:
        """Know the VMs on record, and boot those that were on (no boot delay: the VM kept
        running, its agent restarts), so that what ran on them is reported by their agents."""
        self._read_faults()  # its evict list names VMs evicted before: not evicted again
        for record in self._registry.load():
            machine = self._vms.setdefault(record.spec.name, _Vm(record.spec))
            if record.on:
                log.info("local provider: %s was on; booting it again", record.spec.name)
                machine.booted_at = time.monotonic()
                machine.proc = self._spawn(record.spec, delay_s=0.0)

    # ----------------------------------------------------------------- calls

    def create(self, spec: VmSpec, *, request_id: str, now: datetime) -> Operation | ComputeError:
        self._read_faults()
        if request_id in self._requests:
            return self._requests[request_id]
        if self.faults.quota_exceeded:
            return _quota(spec.name)
        if self.faults.fail_create is not None:
            kind = self.faults.fail_create
            return ComputeError(kind, f"creating {spec.name} failed ({kind})", vm=spec.name)
        if spec.name in self._vms and self._vms[spec.name].spec != spec:
            return ComputeError(
                ErrorKind.CONFLICT, f"{spec.name} exists with another spec", spec.name
            )
        if spec.name not in self._vms:
            self._vms[spec.name] = _Vm(spec)
            self._registry.save(spec, on=False)
        return self._remember("create", spec.name, request_id, now)

    def start(self, vm: str, *, request_id: str, now: datetime) -> Operation | ComputeError:
        self._read_faults()
        if request_id in self._requests:
            return self._requests[request_id]
        machine = self._vms.get(vm)
        if machine is None:
            return ComputeError(ErrorKind.NOT_FOUND, f"no VM {vm}", vm)
        if self.faults.quota_exceeded:
            return _quota(vm)
        if self._power(machine) is not PowerState.DEALLOCATED:  # (a SIGKILL due is sent)
            if machine.stopping:
                return ComputeError(ErrorKind.CONFLICT, f"{vm} is being deallocated", vm)
            return self._remember("start", vm, request_id, now)  # already on: nothing to do
        machine.stopping, machine.exit_code, machine.deallocated = False, None, False
        machine.kill_at = None
        machine.booted_at = time.monotonic() + self.boot_delay_s
        machine.proc = self._spawn(machine.spec, delay_s=self.boot_delay_s)
        self._registry.save(machine.spec, on=True)
        return self._remember("start", vm, request_id, now)

    def deallocate(self, vm: str, *, request_id: str, now: datetime) -> Operation | ComputeError:
        if request_id in self._requests:
            return self._requests[request_id]
        machine = self._vms.get(vm)
        if machine is None:
            return ComputeError(ErrorKind.NOT_FOUND, f"no VM {vm}", vm)
        if machine.proc is not None and machine.proc.poll() is None:
            machine.stopping = True
            machine.proc.send_signal(signal.SIGTERM)
            if machine.kill_at is None:  # a second deallocation does not extend the grace
                machine.kill_at = time.monotonic() + DEALLOCATE_GRACE_S
        machine.deallocated = True
        self._registry.save(machine.spec, on=False)
        return self._remember("deallocate", vm, request_id, now)

    def delete(self, vm: str, *, request_id: str, now: datetime) -> Operation | ComputeError:
        if request_id in self._requests:
            return self._requests[request_id]
        machine = self._vms.pop(vm, None)
        if machine is not None and machine.proc is not None and machine.proc.poll() is None:
            machine.proc.kill()
            machine.proc.wait()
        self._registry.forget(vm)
        return self._remember("delete", vm, request_id, now)

    def poll(self, operation: Operation, *, now: datetime) -> OperationResult:
        machine = self._vms.get(operation.vm)
        if operation.action == "delete":
            return OperationResult("succeeded" if machine is None else "running")
        if machine is None:
            return OperationResult("failed", ComputeError(ErrorKind.NOT_FOUND, _UNKNOWN))
        power = self._power(machine)
        if operation.action == "create":
            return OperationResult("succeeded")
        if operation.action == "start":
            if power is PowerState.RUNNING:
                return OperationResult("succeeded")
            if power is PowerState.STARTING:
                return OperationResult("running")
            if machine.deallocated:  # as Azure's OperationPreempted: a later call ended it
                preempted = f"the start of {operation.vm} was preempted by its deallocation"
                return OperationResult(
                    "failed",
                    ComputeError(ErrorKind.CONFLICT, preempted, operation.vm, code="Preempted"),
                )
            error = ComputeError(
                ErrorKind.FAILED,
                f"{operation.vm} did not boot (exit code {machine.exit_code})",
                operation.vm,
            )
            return OperationResult("failed", error)
        # deallocate
        return OperationResult("succeeded" if power is PowerState.DEALLOCATED else "running")

    def power_states(self) -> dict[str, PowerState]:
        self._read_faults()  # once per autoscaler run: an eviction the file asks for happens
        return {name: self._power(machine) for name, machine in self._vms.items()}

    # ------------------------------------------------------------ faults, end

    def evict(self, vm: str) -> None:
        """What Azure does to a Spot VM: kill it at once (SIGKILL, no clean stop)."""
        machine = self._vms[vm]
        if machine.proc is not None and machine.proc.poll() is None:
            machine.proc.kill()
            machine.proc.wait()
        self._registry.save(machine.spec, on=False)

    def _read_faults(self) -> None:
        """The switches of ``faults_file`` (``HPC_LOCAL_FAULTS``), read again only when it
        changed (one stat a call), so they can be flipped in a live cluster: the fields of
        :class:`LocalFaults`, plus ``evict`` (a VM is evicted once, when its name newly
        appears in that list: rewriting the file for another switch evicts nothing again).
        A missing file is no faults; a bad one (not an object, a name list that is not a
        list) is logged and the last good one kept."""
        if self.faults_file is None:
            return
        seen: tuple[float, int] | None = None
        try:
            stat = self.faults_file.stat()
            seen = (stat.st_mtime, stat.st_size)
        except FileNotFoundError:
            pass
        if seen == self._faults_seen:
            return
        try:
            data = json.loads(self.faults_file.read_text()) if seen is not None else {}
            kind = data.get("fail_create")
            faults = LocalFaults(
                fail_create=None if kind is None else ErrorKind(kind),
                quota_exceeded=bool(data.get("quota_exceeded", False)),
                never_joins=_names(data, "never_joins"),
            )
            evict = _names(data, "evict")
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning(
                "local provider: %s is not a faults file (%s): ignored", self.faults_file, exc
            )
            self._faults_seen = seen
            return
        self.faults, self._faults_seen = faults, seen
        fresh, self._evict_named = evict - self._evict_named, evict
        for vm in sorted(fresh):
            if vm in self._vms:
                log.warning("local provider: evicting %s (%s)", vm, self.faults_file)
                self.evict(vm)

    def pid(self, vm: str) -> int | None:
        """The VM's process (its agent once booted), for tests and logs."""
        machine = self._vms.get(vm)
        return machine.proc.pid if machine and machine.proc else None

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop every VM (SIGTERM, then SIGKILL after ``timeout_s``): a cluster stopped cleanly
        powers its local VMs off, and the next one starts them when work needs them. A stop
        because ``hpc up`` died (kill -9: PR_SET_PDEATHSIG's SIGTERM, this process orphaned)
        is a crash, not a clean stop: the VMs that were on stay recorded on, so the next
        control plane boots them again, as an Azure VM outlives its control plane (a probe:
        kill -9 of ``hpc up`` recorded them off, and their work waited for an admin)."""
        running = [m for m in self._vms.values() if m.proc is not None and m.proc.poll() is None]
        orphaned = os.getppid() != self._parent
        for machine in running if not orphaned else ():
            self._registry.save(machine.spec, on=False)
        procs = [m.proc for m in running if m.proc is not None]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # ---------------------------------------------------------------- helpers

    def _power(self, machine: _Vm) -> PowerState:
        proc = machine.proc
        if proc is None:
            return PowerState.DEALLOCATED
        code = proc.poll()
        if code is None and machine.kill_at is not None and time.monotonic() >= machine.kill_at:
            log.warning(
                "local provider: %s did not stop %g s after SIGTERM: killed (SIGKILL)",
                machine.spec.name,
                DEALLOCATE_GRACE_S,
            )
            proc.kill()  # reaped by this call if it is gone already, else by the next
            machine.kill_at = None  # sent once: a probe read each kill logged twice
            code = proc.poll()
        if code is not None:
            machine.exit_code = code
            machine.proc, machine.stopping, machine.kill_at = None, False, None
            self._registry.save(machine.spec, on=False)  # it stopped by itself: off
            return PowerState.DEALLOCATED
        if machine.stopping:
            return PowerState.DEALLOCATING
        if time.monotonic() < machine.booted_at:
            return PowerState.STARTING
        return PowerState.RUNNING

    def _spawn(self, spec: VmSpec, *, delay_s: float) -> subprocess.Popen[bytes]:
        """Fork the VM from the provider's own thread, which lives as long as the provider: its
        death signal fires when the *thread* that forked it ends, and a caller's thread (a
        web server's worker, retired after 10 s idle) SIGTERMed the VMs it had started (a
        fault probe: VMs booted again at a restart stopped under their tasks)."""
        return self._spawner.submit(self._popen, spec, delay_s).result()

    def _popen(self, spec: VmSpec, delay_s: float) -> subprocess.Popen[bytes]:
        if spec.name in self.faults.never_joins:
            command = [self.python, "-c", "import time\nwhile True: time.sleep(3600)"]
        else:
            command = [self.python, "-m", "agent", "--name", spec.name, "--group", spec.group]
            command += ["--cores", str(spec.cores), "--wait-for-name", f"{NAME_WAIT_S:g}"]
            if spec.memory_mb is not None:  # its group's size, not this host's memory
                command += ["--memory-mb", str(spec.memory_mb)]
        if delay_s > 0:
            command = ["sh", "-c", 'sleep "$0" && exec "$@"', f"{delay_s:g}", *command]
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"vm-{spec.name}.log", "ab") as log:  # the child keeps its own copy
            return subprocess.Popen(
                command,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=_die_with_parent(),  # noqa: PLW1509 - prctl only, no locks taken
            )

    def _remember(self, action: Action, vm: str, request_id: str, now: datetime) -> Operation:
        operation = Operation(action=action, vm=vm, request_id=request_id, begun_at=now, token=vm)
        self._requests[request_id] = operation
        return operation


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the "VM" when the control plane that runs it dies,
    so no local VM outlives its cluster (real VMs do; these are this machine's processes).
    Linux sends it when the forking thread ends: :meth:`LocalProvider._spawn` forks from a
    thread that ends only with the process."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG

    return preexec


def _names(data: Mapping[str, object], field: str) -> set[str]:
    """A faults file's list of VM names (a bare string would be a set of its characters)."""
    names = data.get(field, [])
    if not isinstance(names, list):
        raise TypeError(f"{field} must be a list of VM names, got {type(names).__name__}")
    return {str(n) for n in names}


def _quota(vm: str) -> ComputeError:
    return ComputeError(
        ErrorKind.QUOTA_EXCEEDED, f"{vm}: the local core quota is used up", vm, code="QuotaExceeded"
    )
