"""HTTP triggers for one task of a job: ``POST /api/jobs/{id}/tasks/{taskId}/cancel`` and
``.../requeue`` (the job's owner or an admin; :mod:`shared.usecases.task_actions`).
Reading tasks is in :mod:`functions.http_api`."""

from __future__ import annotations

from typing import Any

import azure.functions as func

from functions.bodies import no_body
from functions.context import control
from functions.http_api import _mine, _task_docs, _task_id, api
from functions.routing import route
from shared.domain.cluster import Principal

bp = func.Blueprint()


@route(bp, "jobs/{id}/tasks/{taskId}/cancel", ["POST"])
@api
def cancel_task(req: func.HttpRequest, principal: Principal) -> Any:
    """200 with the task: Canceled if it was queued, still Running until its agent killed it."""
    no_body(req)
    job_id = _mine(req, principal, "cancel tasks of")
    task = control().cancel_task(job_id, _task_id(req, job_id), by=principal.name)
    return _task_docs([task])[0]


@route(bp, "jobs/{id}/tasks/{taskId}/requeue", ["POST"])
@api
def requeue_task(req: func.HttpRequest, principal: Principal) -> Any:
    """200 with the task Queued again (a new attempt); its job reopened if it had ended.
    ``requeuedDependents``: how many tasks canceled only because it did not finish came back
    with it; ``dependentJobsCanceled``: the jobs canceled because its job did not finish,
    which stay Canceled (requeue them in that order)."""
    no_body(req)
    job_id = _mine(req, principal, "requeue tasks of")
    requeued = control().requeue_task(job_id, _task_id(req, job_id))
    return {
        **_task_docs([requeued.task])[0],
        "requeuedDependents": requeued.dependents,
        "dependentJobsCanceled": control().left_canceled(job_id),
    }
