"""What the local provider remembers of its "VMs" on disk (``$HPC_HOME/vms/<name>.json``).

An Azure VM outlives the control plane that started it: a restarted control plane lists it,
still running, and its agent reports what ended meanwhile. The local provider's VMs are
processes of the control plane, so they die with it; kept only in memory, a restarted
provider knew none of them. A fault probe (kill -9 of every process of ``hpc up``
mid-sweep) then saw a task that outlived its VM's agent end, its end recorded only in the
VM's folder, while the restarted control plane gave the task a new attempt: it ran to its
end twice. So each VM's spec and whether it is powered on are kept here, and a provider
that starts finds the VMs that were on and boots them again at once (the VM "kept
running"): their agents reap what outlived them and report the ends on disk before the
task runs anywhere else, as an Azure VM's agent does.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from shared.ports.compute import VmSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VmRecord:
    spec: VmSpec
    on: bool
    """Powered on when last written: started and not deallocated, deleted or seen exited."""


class VmRegistry:
    """One JSON file per VM, each written whole (write, then rename) so a kill leaves the
    old record or the new one, never half of one."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def save(self, spec: VmSpec, *, on: bool) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(spec.name)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"spec": asdict(spec), "on": on}))
        os.replace(tmp, path)

    def forget(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def load(self) -> list[VmRecord]:
        """Every VM on record; a file that is not one is logged and skipped (it names no VM
        this provider could boot)."""
        if not self.folder.is_dir():
            return []
        records = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                data = json.loads(path.read_text())
                spec = VmSpec(**data["spec"])
                records.append(VmRecord(spec, bool(data["on"])))
            except (OSError, ValueError, TypeError, KeyError) as exc:
                log.warning("local provider: %s is not a VM record (%s): skipped", path, exc)
        return records

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}.json"
