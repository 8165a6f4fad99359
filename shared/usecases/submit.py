"""Submit a job: validate its spec against the cluster, store it with its tasks, kick the scheduler."""

from __future__ import annotations

from typing import Any

from shared.domain.cluster import Principal
from shared.domain.groupnames import canonical_groups
from shared.domain.jobspec import JobSpec
from shared.domain.models import Job
from shared.domain.states import JobState
from shared.domain.templates import JobTemplate, apply_template
from shared.errors import InvalidRequest, NotFound
from shared.usecases import templates
from shared.usecases.deps import Deps


def submit(deps: Deps, data: Any, principal: Principal | None = None) -> Job:
    """Every check that can refuse the job runs before its id is taken (ids are a counter:
    a refusal after it would leave a gap in the ids users see)."""
    given = JobSpec.parse(data)
    template = templates.template_of(deps, given)
    spec = apply_template(given, template)  # defaults filled, limits checked
    known = [g.name for g in deps.store.list_groups()]
    spec.node_groups = canonical_groups(spec.node_groups, known)  # stored spelling, any case
    count = spec.task_count()
    limit = deps.settings.max_tasks_per_job
    if count > limit:
        raise InvalidRequest(
            f"the job has {count} tasks; at most {limit} are accepted in one job "
            "(HPC_MAX_TASKS_PER_JOB)"
        )
    check_fits(deps, spec, None if given.node_groups else template)
    for dep in spec.depends_on:
        try:
            deps.store.get_job(dep)
        except NotFound:
            raise InvalidRequest(
                f"dependsOn: job {dep} does not exist; give the ids of submitted jobs"
            ) from None
    now = deps.clock()
    job, tasks, ranges = spec.build(
        deps.store.next_job_id(), now=now, owner=principal.name if principal else "admin"
    )
    job.template = spec.template
    job.move_to(JobState.SUBMITTED, now=now)
    job.move_to(JobState.QUEUED, now=now)
    deps.store.add_job(job, tasks, ranges)
    deps.kick()
    return job


def check_fits(deps: Deps, spec: JobSpec, template: JobTemplate | None = None) -> None:
    """Refuse a job no node of its groups could ever run (unknown group, too many cores,
    more nodes than the groups have). A core range is checked on its min. ``template``: the
    one the job's groups came from (it named none), named if one of them does not exist."""
    nodes = deps.store.list_nodes()
    known = {g.name for g in deps.store.list_groups()} | {g for n in nodes for g in n.groups}
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
        raise InvalidRequest(
            f"{where} has no nodes yet: start agents (hpc up / hpc agent run) or add nodes first"
        )
    largest = max(n.cores for n in eligible)
    for task in spec.tasks:
        cores = task.min_cores
        if cores > largest:
            raise InvalidRequest(
                f"a task asks for {cores} cores but the largest node in {where} "
                f"has {largest}; ask for at most {largest}"
            )
        big = sum(1 for n in eligible if n.cores >= cores)
        if task.nodes > big:
            raise InvalidRequest(
                f"a task asks for {task.nodes} nodes with {cores} cores each but {where} "
                f"has {big} such node(s); ask for at most {big} nodes"
            )
