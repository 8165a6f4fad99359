"""The words of the autoscaler's grow notes (:mod:`shared.domain.autoscaler`): why a group
that wants nodes starts fewer, and what an admin can do about it; and the warning an
admin's stop gets when the autoscaler would undo it (:func:`restart_warning`).

Pure. Apart from the policy so that its rules stay readable (and its module short); a
note is what ``hpc autoscale log`` and a waiting task's pending reason show, so it says
what to do, not only what happened (a probe found "wants 1 nodes, starts 0" logged every
run for a group with no nodes, and no hint that nodes had to be added).
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.domain.cluster import Node, NodeGroup
from shared.domain.growshrink import GroupPolicy
from shared.domain.memory import shown
from shared.domain.models import Task
from shared.domain.states import NodeState
from shared.domain.unreachable import UNREACHABLE_FOR


def nodes(count: int) -> str:
    """``1 node``, ``2 nodes``."""
    return f"{count} node" if count == 1 else f"{count} nodes"


def listed_jobs(tasks: Sequence[Task]) -> str:
    """The jobs of ``tasks`` as a note names them: ``job 7``, ``jobs 7, 9`` (the first five
    by id, then how many more)."""
    return _jobs(t.job_id for t in tasks)


def _jobs(jobs: Iterable[Hashable]) -> str:
    ids = sorted(set(jobs), key=lambda j: (len(str(j)), str(j)))  # job ids: 9 before 10
    shown_ids = ", ".join(str(j) for j in ids[:5])
    more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
    return f"job {shown_ids}" if len(ids) == 1 else f"jobs {shown_ids}{more}"


def queued(tasks: Sequence[Task]) -> str:
    """``1 queued task``, ``3 queued tasks``."""
    return "1 queued task" if len(tasks) == 1 else f"{len(tasks)} queued tasks"


def bigger_vms(group: str) -> str:
    """How to give ``group`` nodes with more memory."""
    return (
        f"bigger VMs, an admin's: hpc nodegroup set {group} --size VM --node-memory SIZE, "
        f"then hpc node add --group {group}"
    )


def grown(
    group: str,
    tasks: Sequence[Task],
    need: int,
    gp: GroupPolicy,
    extra: int,
    kept_off: Mapping[tuple[int, int], Collection[Hashable]] | None = None,
) -> str:
    """Why a group starts ``need`` nodes for overflowing ``tasks``: the cores they lack or,
    asking for memory, the memory (a group of unknown node memory starts one to learn it);
    ``extra`` of them ExtraNodesGrowRatio's share, said so (an admin saw more nodes start
    than the note explained). ``kept_off``: the tasks job-level exclusive kept off running
    nodes with room, and the jobs that did (:data:`shared.domain.firstfit.KeptOff`): said
    as the cause (a note read "overflow the free cores" of nodes with cores to spare)."""
    jobs = listed_jobs(tasks)
    s = "s" if len(tasks) == 1 else ""  # the verb's ending: 1 task fits, 2 tasks fit
    asked = [t.min_memory_mb for t in tasks if t.min_memory_mb is not None]
    share = (
        f" ({extra} of them ExtraNodesGrowRatio's {gp.extra_nodes_grow_ratio}%)" if extra else ""
    )
    share += _packing(gp)
    kept = [t for t in tasks if (t.job_id, t.id) in (kept_off or {})]
    why = f"job-level exclusive: {exclusivity(kept, kept_off or {})}" if kept else ""
    if kept and len(kept) < len(tasks):
        why = f"{len(kept)} of them by {why}"
    if not asked:
        verb = "may not use" if kept and len(kept) == len(tasks) else f"overflow{s}"
        return (
            f"{queued(tasks)} of {jobs} {verb} the free cores of running nodes"
            + (f" ({why})" if why else "")
            + f"; {group} needs {nodes(need)} of {gp.node_cores} cores{share}"
        )
    what = f"{queued(tasks)} of {jobs} (up to {shown(max(asked), up=True)} memory)"
    what += f" ({why})" if why else ""
    if gp.node_memory_mb is None:
        return f"{what} fit{s} no running node; {group}'s node memory is unknown: one started tells"
    return (
        f"{what} fit{s} no running node's free cores and memory; {group} needs {nodes(need)} "
        f"of {gp.node_cores} cores and {shown(gp.node_memory_mb)}{share}"
    )


def _packing(gp: GroupPolicy) -> str:
    """The settings that counted the tasks as fewer nodes than their cores, said (an admin
    probe read "2 queued tasks ... needs 1 node of 2 cores" of two 2-core tasks)."""
    said = ["GrowByMin: one task per job"] if gp.grow_by_min else []
    if gp.tasks_per_resource_unit > 1:
        said.append(f"TasksPerResourceUnit {gp.tasks_per_resource_unit}: a node per that many")
    return f" ({'; '.join(said)})" if said else ""


def exclusivity(
    kept: Sequence[Task], kept_off: Mapping[tuple[int, int], Collection[Hashable]]
) -> str:
    """How job-level exclusive kept the ``kept`` tasks off running nodes: their own job is
    exclusive (other jobs run there), or other jobs' exclusive tasks hold those nodes."""
    mine = [t for t in kept if t.job_exclusive]
    parts = []
    if mine:
        verb = "is" if len({t.job_id for t in mine}) == 1 else "are"
        parts.append(f"{listed_jobs(mine)} {verb} exclusive and those nodes run other jobs' tasks")
    if holders := {j for t in kept if not t.job_exclusive for j in kept_off[(t.job_id, t.id)]}:
        parts.append(f"those nodes are held by exclusive {_jobs(holders)}")
    return "; ".join(parts)


def backoff(wanted: int, until: datetime, failure: str | None) -> str:
    """A group that wants nodes but backs off after failed starts."""
    return f"wants {nodes(wanted)} but backs off until {until:%H:%M:%S} after: {failure}"


FAILED = "failed: "
"""How a node's reason starts while its last start is a failure (kept until it starts)."""


def below_threshold(group: str, able: int, threshold: int) -> str:
    """Why a group grows for none of its queued work: too few tasks for HPC Pack's GrowThreshold."""
    return (
        f"{able} queued task(s) it could run, below GrowThreshold {threshold} "
        f"(hpc nodegroup set {group} --grow-threshold N)"
    )


def not_joined(timeout: timedelta) -> str:
    """The stop of a node whose agent never joined (a failed start)."""
    return (
        f"{FAILED}its agent did not join within the deployment timeout "
        f"({timeout.total_seconds():g} s)"
    )


GONE = "its VM is gone (the provider lists no VM of its name): Offline; a start creates it again"
"""Why an Unreachable or Stopping node whose VM the provider does not list is Offline."""


def stopped(node: Node, power: str) -> str:
    """A Stopping node's reason once its VM is off. A failed start's stays failed (a probe saw
    "the stop is done" 5 s after "did not join", and no trace of the failure), and an
    unheard VM's deallocation keeps why (:mod:`shared.domain.unreachable`)."""
    if node.state_reason and node.state_reason.startswith(FAILED):
        return f"{node.state_reason}; {power}"
    if node.state_reason and node.state_reason.startswith(ADMIN_STOP):  # who and why kept
        return f"{node.state_reason}; its VM is {power}"  # (a probe's stuck boot, INC-9: lost)
    if node.state_reason and node.state_reason.startswith(UNREACHABLE_FOR):
        # why, and the VM's power as found: "deallocating" until known done (a probe read
        # "deallocated" 5 s before its hung process was killed)
        return f"{node.state_reason}; its VM is {power}"
    return f"its VM is {power}: the stop is done"


def deallocation_done(reason: str | None) -> str | None:
    """An Offline node's reason once its VM's deallocation is known done: the power
    :func:`stopped` wrote while it was ``deallocating`` now ``deallocated`` (a probe read
    "its VM is deallocating" of a VM gone long before); None: nothing to change."""
    for before, after in _DONE:
        if reason and reason.endswith(before):
            return reason.removesuffix(before) + after
    return None


_DONE = (
    ("its VM is deallocating: the stop is done", "its VM is deallocated: the stop is done"),
    ("; its VM is deallocating", "; its VM is deallocated"),
    ("; deallocating", "; deallocated"),
)


ADMIN_STOP = "stopped by "
"""How an admin's stop's reason begins (``stopped by alice: stuck boot``, functions/nodes_api)."""


@dataclass(frozen=True)
class Shortfall:
    """A group that wants more nodes than it starts this run, and what limited it."""

    group: str
    wanted: int
    starts: int
    max_nodes: int
    members: int
    """Every node of the group (up, Offline, held)."""
    offline: int
    """Offline nodes it may start (not held by an admin)."""
    held: int
    starts_left: int

    def text(self) -> str:
        if not self.members:  # nothing to start, whatever the bounds say
            raise_max = (
                f"raise its maxNodes (hpc nodegroup set {self.group} --max N) and "
                if self.max_nodes < 1
                else ""
            )
            return (
                f"wants {nodes(self.wanted)}, starts 0: the group has no nodes to start; "
                f"{raise_max}add them with hpc node add --group {self.group} --count N"
            )
        text = (
            f"wants {nodes(self.wanted)}, starts {self.starts} (maxNodes {self.max_nodes}, "
            f"{self.offline} Offline"
            + (f" and {self.held} held by an admin" if self.held else "")
            + f", {self.starts_left} starts left this run)"
        )
        room = self.max_nodes - self.members  # what hpc node add may still add
        short = self.wanted - self.offline
        if self.starts == self.offline and short > 0 and room > 0:
            text += (
                f": it has no more Offline nodes to start; add some with hpc node add "
                f"--group {self.group} --count {min(short, room)}"
            )
        return text


_DOWN = frozenset({NodeState.OFFLINE, NodeState.STOPPING})


def _going_down(node: Node) -> bool:
    """Off, stopping, or Draining to stop (a busy VM's stop, the autoscaler's shrink): not
    held, so nothing keeps it up once empty (an admin's drain holds it up, Drained). A probe
    stopped two busy VMs and was not warned that the floor would start another."""
    return node.state in _DOWN or (node.state is NodeState.DRAINING and node.held is None)


def restart_warning(
    node: Node, groups: Sequence[NodeGroup], nodes: Sequence[Node], provider: str | None
) -> str | None:
    """Why the autoscaler will start ``node`` again after an admin's stop, or None: its
    managed group (the first of its groups the autoscaler runs for, as the policy counts
    it) keeps ``minNodes`` nodes up, and without this one (and any other node stopped) it
    has fewer. A probe's ``hpc node stop burst-1`` was undone within seconds ("start
    burst-1 ... below its minNodes 1"); a held node is never started, so the warning
    says to hold it (``hpc node offline``) or lower the floor. ``nodes``: as stored after
    the stop; ``provider``: the cluster's compute provider."""
    managed = autoscaled(groups, provider)
    name = first_managed(node, managed)
    if name is None or node.held is not None:
        return None
    group = managed[name]
    members = [n for n in nodes if n.name != node.name and first_managed(n, managed) == name]
    up = sum(1 for n in members if not _going_down(n))
    if up >= group.min_nodes:
        return None
    # any Offline node of the group may be the one started: the advice holds them all (a
    # probe held the node named, and the autoscaler started the other it had stopped)
    offline = [n.name for n in members if n.state is NodeState.OFFLINE and n.held is None]
    if offline:  # as many as the floor lacks (a third probe read "one of" where two start)
        need = min(group.min_nodes - up, 1 + len(offline))
        which, them = f"{'one' if need == 1 else need} of {node.name}, {', '.join(offline)}", "them"
        hold = " ".join([node.name, *offline])
    else:
        which, them, hold = "it", "it", node.name
    return (
        f"{node.name}: the autoscaler will start {which} again to keep {name}'s minNodes "
        f"{group.min_nodes} ({nodes_up(up)} without it); to keep {them} stopped, hold {them} "
        f"with hpc node offline {hold} (the autoscaler never starts a held node), or lower "
        f"the floor: hpc nodegroup set {name} --min {up}"
    )


def over_max(
    starting: Sequence[Node], groups: Sequence[NodeGroup], nodes: Sequence[Node], provider: str
) -> str | None:
    """Why an admin's start of ``starting`` (Offline VMs) would be undone at the autoscaler's
    next run, or None: a managed group it runs for (the first of each node's groups, as
    :func:`restart_warning`) would have more nodes up than its ``maxNodes`` (a probe started
    a node of a group at maxNodes 0: it was stopped again within a minute, with no word)."""
    managed = autoscaled(groups, provider)
    names = {n.name for n in starting}
    for name, group in sorted(managed.items()):
        mine = [n.name for n in starting if first_managed(n, managed) == name]
        others = [n for n in nodes if n.name not in names and first_managed(n, managed) == name]
        up = sum(1 for n in others if n.state not in _DOWN)
        if mine and up + len(mine) > group.max_nodes:
            return (
                f"{name} has maxNodes {group.max_nodes} and {nodes_up(up)}: the autoscaler "
                f"would stop {', '.join(mine)} again at its next run; raise it first, by one "
                f"for each node to start (hpc node start --group asks node by node): "
                f"hpc nodegroup set {name} --max {up + len(mine)}"
            )
    return None


def autoscaled(groups: Sequence[NodeGroup], provider: str | None) -> dict[str, NodeGroup]:
    """The groups the autoscaler runs for: this cluster's provider's, autoscale on."""
    return {g.name: g for g in groups if provider and g.provider == provider and g.autoscale}


def first_managed(node: Node, managed: Mapping[str, NodeGroup]) -> str | None:
    """The group whose bounds count ``node``: its first the autoscaler runs for."""
    return next((g for g in node.groups if g in managed), None)


def nodes_up(count: int) -> str:
    return f"{nodes(count)} up"


def drained(reason: str | None) -> str:
    """Why a drained VM is stopped: its drain's own reason kept (an admin's stop and its
    ``--reason``, or the autoscaler's), which the node and the log would otherwise lose (a
    probe: "stopped by admin: maint" became "drained: its last task ended")."""
    return f"drained ({reason}): its last task ended" if reason else "drained: its last task ended"
