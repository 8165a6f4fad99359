"""Submit a job: validate its spec against the cluster, store it with its tasks, kick the scheduler."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.domain import jobbuild
from shared.domain.access import check_may_use_template
from shared.domain.autoscaler_notes import autoscaled, first_managed
from shared.domain.cluster import Node, NodeGroup, Principal
from shared.domain.groupnames import canonical_groups
from shared.domain.growshrink import group_memory_mb, memory_believed, sizes_seen
from shared.domain.jobspec import JobSpec, task_memory
from shared.domain.memory import shown
from shared.domain.models import Job
from shared.domain.pending_scaling import capped as capped_groups
from shared.domain.pending_scaling import capped_only, max_zero
from shared.domain.states import JOB_TERMINAL, NODE_COMING, JobState
from shared.domain.templates import JobTemplate, apply_template
from shared.errors import InvalidRequest, NotFound, Refused
from shared.usecases import templates
from shared.usecases.cancel import requeue_first
from shared.usecases.deps import Deps


def submit(deps: Deps, data: Any, principal: Principal | None = None) -> Job:
    """Every check that can refuse the job runs before its id is taken (ids are a counter:
    a refusal after it would leave a gap in the ids users see)."""
    accepted = accept(deps, data, principal)
    return store_job(deps, accepted, deps.store.next_job_id(), principal)


@dataclass(frozen=True)
class Accepted:
    """A job spec every check passed, with the template it was submitted under."""

    spec: JobSpec
    template: JobTemplate | None


def accept(deps: Deps, data: Any, principal: Principal | None = None) -> Accepted:
    """Parse and check a job spec against the cluster; raises what refuses it (4xx).
    ``principal``: who submits, held to the template's ``allowedUsers`` (None: the control
    plane itself, as an admin)."""
    given = JobSpec.parse(data, now=deps.clock())  # a holdUntil past is refused
    template = templates.template_of(deps, given)
    if template is not None and principal is not None:  # before its limits: a 403, not a 422
        check_may_use_template(template, principal, named=bool(given.template))
    spec = apply_template(given, template)  # defaults filled, limits checked
    groups = deps.store.list_groups()
    spec.node_groups = canonical_groups(
        spec.node_groups, [g.name for g in groups]
    )  # stored spelling, any case
    count = spec.task_count()
    limit = deps.settings.max_tasks_per_job
    if count > limit:
        raise InvalidRequest(
            f"the job has {count} tasks; at most {limit} are accepted in one job "
            "(HPC_MAX_TASKS_PER_JOB)"
        )
    check_fits(deps, spec, None if given.node_groups else template, groups)
    check_prerequisites(deps, spec, principal.name if principal else "admin")
    return Accepted(spec, template)


def store_job(deps: Deps, accepted: Accepted, job_id: int, principal: Principal | None) -> Job:
    """Store an accepted job under ``job_id`` and kick the scheduler. Conflict if the id is
    taken (a job of this id exists, visible or half-written): nothing is stored then."""
    spec, template = accepted.spec, accepted.template
    now = deps.clock()
    job, tasks, ranges = jobbuild.build(
        spec, job_id, now=now, owner=principal.name if principal else "admin"
    )
    job.template = spec.template
    job.max_priority = template.max_priority if template is not None else None
    job.move_to(JobState.SUBMITTED, now=now)
    job.move_to(JobState.QUEUED, now=now)
    deps.store.add_job(job, tasks, ranges)
    deps.kick()
    return job


def check_prerequisites(deps: Deps, spec: JobSpec, owner: str | None = None) -> None:
    """Refuse prerequisite jobs that do not exist (422), or that ended other than Finished
    (409, as a requeue is refused): the job would be canceled at its first pass (a probe saw
    one accepted, then canceled 4 s later), unless it runs dependents anyway."""
    states: dict[int, JobState] = {}
    for dep in spec.depends_on:
        try:
            states[dep] = deps.store.get_job(dep).state
        except NotFound:
            raise InvalidRequest(
                f"dependsOn: job {dep} does not exist; give the ids of submitted jobs"
            ) from None
    if spec.run_dependents_on_failure:
        return
    for dep, state in states.items():
        if state in JOB_TERMINAL and state is not JobState.FINISHED:
            raise Refused(
                f"dependsOn: dependency job {dep} ended {state.value}, so this job would be "
                f"canceled at once: {requeue_first(deps, dep, owner)}, then "
                "submit this one (or, to run it anyway, hpc job submit "
                '--run-dependents-on-failure: "runDependentsOnFailure": true)'
            )


def check_fits(
    deps: Deps,
    spec: JobSpec,
    template: JobTemplate | None = None,
    groups: Sequence[NodeGroup] | None = None,
) -> None:
    """Refuse a job no node of its groups could ever run (unknown group, too many cores,
    more nodes than the groups have or than their maxNodes let be up at once, as Slurm's
    EnforcePartLimits: :func:`_within_max`, only managed groups of maxNodes 0 with no node up: the
    autoscaler would start none; more memory than any node has or may have:
    :func:`check_memory`). A core range is checked on its min. ``template``: the one
    the job's groups came from (it named none), named if one of them does not exist.
    ``groups``: the node groups, if the caller read them already."""
    nodes = deps.store.list_nodes()
    groups = deps.store.list_groups() if groups is None else groups
    known = {g.name for g in groups} | {g for n in nodes for g in n.groups}
    missing = [g for g in spec.node_groups if g not in known]
    if missing and template is not None:
        raise templates.gone_default_groups(template, missing, sorted(known, key=str.lower))
    if missing:
        raise NotFound(
            f"node group {missing[0]!r} does not exist; known groups: {', '.join(sorted(known))}"
        )
    wanted = set(spec.node_groups)
    eligible = [n for n in nodes if not wanted or wanted & set(n.groups)]
    where = f"node group(s) {', '.join(spec.node_groups)}" if wanted else "the cluster"
    if not eligible:
        raise InvalidRequest(f"{where} has no nodes yet: {_how_to_add(spec.node_groups, groups)}")
    capped = capped_groups(groups)
    if capped_only(spec.node_groups, capped) and not any(n.state in NODE_COMING for n in eligible):
        raise InvalidRequest(f"{where} has no Online node, and " + max_zero(spec.node_groups))
    largest = max(n.cores for n in eligible)
    bound = autoscaled(groups, deps.compute.name if deps.compute is not None else None)
    for task in spec.tasks:
        cores = task.min_cores
        if cores > largest:
            raise InvalidRequest(
                f"a task asks for {cores} cores but the largest node in {where} "
                f"has {largest}; ask for at most {largest}"
            )
        able = [n for n in eligible if n.cores >= cores]
        big = len(able)
        if task.nodes > big:
            raise InvalidRequest(
                f"a task asks for {task.nodes} nodes with {_counted(cores, 'core')} each but "
                f"{where} has {_counted(big, 'such node')}; ask for at most {_counted(big, 'node')}"
            )
        most, capping = _within_max(able, bound)
        if task.nodes > most:  # maxNodes caps the autoscaler's starts and an admin's
            caps = ", ".join(f"{g.name}'s is {g.max_nodes}" for g in capping)
            raise InvalidRequest(
                f"a task asks for {task.nodes} nodes with {_counted(cores, 'core')} each but "
                f"{where} may run at most {_counted(most, 'such node')} at once (maxNodes: "
                f"{caps}); ask for at most {_counted(most, 'node')}, or raise maxNodes "
                f"(hpc nodegroup set {capping[0].name} --max N)"
            )
    usable = [g for g in groups if not wanted or g.name in wanted]
    check_memory(spec, eligible, usable, where, nodes)


def _within_max(
    nodes: Sequence[Node], bound: Mapping[str, NodeGroup]
) -> tuple[int, list[NodeGroup]]:
    """How many of ``nodes`` may be up at once, and the groups whose maxNodes cut that: a node
    of a group the autoscaler runs for (``bound``: its first such group) counts within its
    group's maxNodes, since the autoscaler starts no more and stops an admin's start beyond it
    (nodes.over_max refuses that start); others (on-prem, autoscale off) all count."""
    free, per = 0, Counter[str]()
    for n in nodes:
        group = first_managed(n, bound)
        if group is None:
            free += 1
        else:
            per[group] += 1
    capping = [bound[g] for g in sorted(per) if per[g] > bound[g].max_nodes]
    return free + sum(min(c, bound[g].max_nodes) for g, c in per.items()), capping


def check_memory(
    spec: JobSpec,
    eligible: Sequence[Node],
    groups: Sequence[NodeGroup],
    where: str,
    nodes: Sequence[Node],
) -> None:
    """Refuse a task asking for memory (held on its nodes: shared.domain.memoryfit) whose
    nodes the job's groups do not have and could not start: fewer of its ``eligible`` nodes than the
    task asks for have both its cores (a range's min) and its memory as the autoscaler
    believes it (a VM never registered has what one of its size reported; unknown may have
    it, also a node whose agent said none: a later agent may), and none of its managed ``groups`` (provider set, maxNodes above 0)
    may start nodes with both (node_cores enough, and node memory unknown or enough as the
    autoscaler takes it: :func:`group_memory_mb` of ``nodes``, the cluster's)."""
    managed = [g for g in groups if g.provider and g.max_nodes]
    sizes = {g.name: group_memory_mb(g.node_memory_mb, g.name, nodes) for g in managed}
    seen = sizes_seen(nodes)  # a VM never registered has what others of its size reported
    believed = [(n, _as_autoscaler_believes(n, seen, sizes)) for n in eligible]
    for task in spec.tasks:
        need = task_memory(task, spec)
        if need is None:
            continue
        try:
            _check_task_memory(task.nodes, task.min_cores, need, believed, managed, sizes, where)
        except InvalidRequest as refused:
            per_core = spec.memory_per_core_mb
            if per_core is None or "min_memory_mb" in task.model_fields_set:
                raise
            raise InvalidRequest(  # its cores times the memory per core: the user gave no total
                f"{refused} (its {task.min_cores} core(s) x memoryPerCoreMb {shown(per_core)}; "
                "ask for less memory per core or fewer cores)"
            ) from None


def _as_autoscaler_believes(
    node: Node, seen: dict[str, int], sizes: dict[str, int | None]
) -> int | None:
    """The memory a node is taken to have at submit: :func:`memory_believed`, and for a VM
    never registered, of no VM size (the local provider's) and no memory of its own, that
    of its managed groups' nodes (``sizes``), which the autoscaler grows with. A probe:
    ``--min-memory 100G`` was accepted beside such Offline VMs and waited forever, as the
    group's VMs that registered had 23.5 GB and the autoscaler started none for it. A VM of
    a size is left to :func:`memory_believed`: another size may have more."""
    memory = memory_believed(node, seen)
    if memory is not None or node.incarnation > 0 or node.size:
        return memory
    known = [sizes.get(g) for g in node.groups if g in sizes]
    if not known or any(m is None for m in known):
        return None
    return max(m for m in known if m is not None)


def _check_task_memory(
    count: int,
    cores: int,
    need: int,
    eligible: Sequence[tuple[Node, int | None]],
    managed: Sequence[NodeGroup],
    sizes: dict[str, int | None],
    where: str,
) -> None:
    """:func:`check_memory` of one task asking for ``count`` nodes of ``cores`` cores and
    ``need`` MB each (``sizes``: each managed group's node memory). The refusal says what
    would be accepted: the most memory ``count`` nodes of these cores have, the most cores
    ``count`` nodes of this memory have, fewer nodes, or bigger VMs."""
    has = [n for n, memory in eligible if _may_have(need, memory)]
    able = [n for n in has if n.cores >= cores]
    grows = [g for g in managed if g.node_cores >= cores]
    if len(able) >= count or any(_may_have(need, sizes[g.name]) for g in grows):
        return
    wide = [memory for n, memory in eligible if n.cores >= cores]  # >= count: check_fits
    known = sorted((m for m in wide if m is not None), reverse=True)
    unknown = len(wide) - len(known)  # fewer than count (they are in ``able``)
    most_mb = known[count - 1 - unknown : count - unknown]
    most_mb += [sizes[g.name] or 0 for g in grows]  # known: unknown would have been enough
    most_cores = sorted((n.cores for n in has), reverse=True)[count - 1 : count]
    most_cores += [g.node_cores for g in managed if _may_have(need, sizes[g.name])]
    hint = f" ({_bigger_vms(grows[0], need)})" if grows else ""
    largest = max(
        [memory for _, memory in eligible if memory is not None]
        + [s for s in sizes.values() if s is not None],
        default=0,
    )
    best = max(most_mb, default=0)
    if count == 1 and best and best == largest:  # memory is all it lacks
        raise InvalidRequest(
            f"a task asks for {shown(need, up=True)} memory per node but the largest node in "
            f"{where} has {shown(largest)}; ask for at most {shown(largest)}{hint}"
        )
    fixes = [f"{shown(best)} memory"] if best else []
    fixes += [_counted(max(most_cores), "core")] if most_cores else []
    fixes += [_counted(len(able), "node")] if able else []
    advice = f"; ask for at most {' or '.join(fixes)}" if fixes else ""
    raise InvalidRequest(
        f"a task asks for {_counted(count, 'node')} with {_counted(cores, 'core')} and "
        f"{shown(need, up=True)} each but {where} has {_counted(len(able), 'such node')}"
        f"{advice}{hint}"
    )


def _may_have(need: int, have: int | None) -> bool:
    """A node (or a managed group's) of ``have`` MB may have ``need`` MB: unknown may."""
    return have is None or have >= need


def _bigger_vms(group: NodeGroup, need: int) -> str:
    """How a managed group gets nodes of ``need`` MB: VMs of a bigger size added with that
    memory (the setting is the memory of the nodes added after it, not of those it has:
    :func:`group_memory_mb`), the same advice as the waiting task's reason."""
    arg = f"{need // 1024}G" if need % 1024 == 0 else f"{need}M"
    return (
        f"or bigger VMs, an admin's: hpc nodegroup set {group.name} --size SIZE "
        f"--node-memory {arg}, then hpc node add --group {group.name}"
    )


def _counted(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _how_to_add(names: Sequence[str], groups: Sequence[NodeGroup]) -> str:
    """How the groups a job names get nodes: a managed group's are VMs ``hpc node add``
    creates (an agent naming it is refused), an on-prem group's join by their agents."""
    managed = {g.name for g in groups if g.provider}
    vms = [n for n in names if n in managed]
    agents = [n for n in names if n not in managed]
    ways = [f"hpc node add --group {n} --count N" for n in vms[:3]]
    if agents or not names:
        group = f" --group {agents[0]}" if agents else ""
        ways.append(f"start agents (hpc up / hpc agent run{group})")
    return "add them first: " + "; or ".join(ways)
