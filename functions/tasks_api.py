"""HTTP triggers for tasks of a job: ``POST /api/jobs/{id}/tasks/{taskId}/cancel`` and
``.../requeue`` (the job's owner or an admin; :mod:`shared.usecases.task_actions`), and
``POST /api/jobs/{id}/tasks/cancel`` and ``.../requeue`` for many at once
(:mod:`shared.usecases.task_cancels`, :mod:`shared.usecases.task_requeues`).
Reading tasks is in :mod:`functions.http_api`."""

from __future__ import annotations

from typing import Any

import azure.functions as func

from functions.bodies import no_body, read_json
from functions.context import control
from functions.http_api import _mine, _task_docs, _task_id, api
from functions.routing import route
from shared.domain import taskspans
from shared.domain.cluster import Principal
from shared.usecases.task_cancels import Outcome

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


@route(bp, "jobs/{id}/tasks/cancel", ["POST"])
@api
def cancel_tasks(req: func.HttpRequest, principal: Principal) -> Any:
    """``{"tasks": [12, "20-30"]}``: cancel those tasks of the job, each as its own route
    would. 200 with ``tasks``: each one canceled (``id``, ``state``: Canceled, or Running
    until its agent killed it, ``sweepIndex``), and ``refused``: each one not canceled
    (``id``, ``status`` and ``error`` as its own route would answer), both in id order.
    404 if some ids are not the job's (``taskCount`` says how many it has), 409 if the job
    is being canceled: nothing is canceled then."""
    spans = taskspans.spans(read_json(req, f"{taskspans.SHAPE} as JSON"))
    job_id = _mine(req, principal, "cancel tasks of")
    outcomes = control().cancel_tasks(job_id, spans, by=principal.name)
    return {
        "jobId": job_id,
        "tasks": [_done(o) for o in outcomes if o.state is not None],
        "refused": [_refused(o) for o in outcomes if o.state is None],
    }


@route(bp, "jobs/{id}/tasks/requeue", ["POST"])
@api
def requeue_tasks(req: func.HttpRequest, principal: Principal) -> Any:
    """``{"tasks": [12, "20-30"]}``: requeue those tasks of the job, each as its own route
    would. 200 with ``tasks``: each one requeued (``id``, ``state``: Queued, ``sweepIndex``),
    ``refused``: each one not requeued (``id``, ``status`` and ``error`` as its own route
    would answer), both in id order; ``requeuedDependents``: how many tasks canceled only
    because they did not finish came back with them (together); ``dependentJobsCanceled``:
    the jobs canceled because this one did not finish, which stay Canceled. 404 if some ids
    are not the job's (``taskCount``), 409 if the job is being canceled: nothing is requeued
    then."""
    spans = taskspans.spans(read_json(req, f"{taskspans.SHAPE} as JSON"))
    job_id = _mine(req, principal, "requeue tasks of")
    done = control().requeue_tasks(job_id, spans)
    return {
        "jobId": job_id,
        "tasks": [_done(o) for o in done.outcomes if o.state is not None],
        "refused": [_refused(o) for o in done.outcomes if o.state is None],
        "requeuedDependents": done.dependents,
        "dependentJobsCanceled": control().left_canceled(job_id),
    }


def _done(o: Outcome) -> dict[str, Any]:
    return {"id": o.id, "state": str(o.state), "sweepIndex": o.sweep_index}


def _refused(o: Outcome) -> dict[str, Any]:
    return {"id": o.id, "status": o.status, "error": o.error}
