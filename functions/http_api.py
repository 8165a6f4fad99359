"""HTTP triggers: the control-plane API (submit and monitor jobs, list nodes).

Every route but ``health`` needs ``Authorization: Bearer <token>``. Errors are JSON
``{"error": "..."}`` with a status that says whose fault it is: 400 the request cannot be
read (bad JSON, a body where none is taken, a bad query parameter or header), 401 no/bad
token, 404 unknown id or group, 409 wrong state, 413 too large, 422 it reads but says
something invalid (an unknown, missing or bad field, a PATCH of ``{}``: README's rule).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import azure.functions as func

from functions.bodies import BadRequest, no_body, only_params, read_json
from functions.context import control
from functions.keys import answered, idempotency_key, json_text
from functions.routing import created, route
from functions.unavailable import HEALTH_PROBE, UNREACHABLE, unavailable
from shared.auth import authenticate
from shared.domain.access import ADMIN, check_may_change, may_change
from shared.domain.cluster import Principal
from shared.domain.messages import MAX_ID
from shared.domain.models import Job, Task
from shared.domain.records import Record
from shared.domain.specvalues import cut, iso_time, quoted, sweep_command
from shared.domain.states import JobState, TaskState
from shared.errors import HpcError, InvalidRequest, Misconfigured, NotFound
from shared.ports.output import DEFAULT_READ_BYTES, MAX_READ_BYTES
from shared.usecases import modify

bp = func.Blueprint()
log = logging.getLogger(__name__)

Handler = Callable[[func.HttpRequest, Principal], Any]


def _json(data: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json_text(data), status_code=status, mimetype="application/json")


def _doc(record: Record) -> dict[str, Any]:
    doc = record.to_dict()
    doc.pop("etag", None)
    return doc


def _job_docs(jobs: list[Job]) -> list[dict[str, Any]]:
    """Jobs as the API shows them: with ``pendingReason`` while tasks of theirs wait."""
    reasons = control().job_pending_reasons(jobs)
    return [{**_doc(j), "pendingReason": reasons.get(j.id)} for j in jobs]


def _task_docs(tasks: list[Task]) -> list[dict[str, Any]]:
    """Tasks as the API shows them: a queued one with ``pendingReason``, a sweep step with
    ``commandAsRun`` (its ``*`` replaced by its index: a probe's scripts had to redo it)."""
    reasons = control().pending_reasons(tasks)
    docs = [{**_doc(t), "pendingReason": reasons.get((t.job_id, t.id))} for t in tasks]
    for doc, t in zip(docs, tasks, strict=True):
        if t.sweep_index is not None:
            doc["commandAsRun"] = sweep_command(t.command, t.sweep_index)
    return docs


def api(handler: Handler) -> Callable[[func.HttpRequest], func.HttpResponse]:
    """Authenticate, call, and turn the result or error into a response.

    The wrapper's signature is exactly ``(req)``: the Functions indexer binds
    parameters by name, so it must not see the handler's ``principal``.
    """

    def endpoint(req: func.HttpRequest) -> func.HttpResponse:
        try:
            principal = authenticate(control().store, req.headers.get("Authorization"))
            result = handler(req, principal)
        except HpcError as e:
            response = _json({**e.fields, "error": str(e)}, e.status)
            if "retryAfterS" in e.fields:  # a key's request in progress: when to retry
                response.headers["Retry-After"] = str(e.fields["retryAfterS"])
            if e.status == 401:  # the scheme a client should answer with (RFC 6750 §3)
                response.headers["WWW-Authenticate"] = 'Bearer realm="hybridhpc"'
            return response
        except UNREACHABLE as e:
            log.warning("%s %s: a backing service does not answer: %s", req.method, req.url, e)
            return unavailable()
        except Exception:
            log.exception("%s %s failed", req.method, req.url)
            return _json({"error": "internal error; see the control plane log"}, 500)
        if isinstance(result, func.HttpResponse):
            return result
        return _json(result)

    endpoint.__name__ = handler.__name__
    endpoint.__qualname__ = handler.__qualname__
    endpoint.__doc__ = handler.__doc__
    return endpoint


_DIGITS = re.compile(r"-?[0-9]+")
MAX_JOB_PAGE = 1000
"""Most jobs one GET /api/jobs returns: one request never holds the control plane for long
(heartbeats are answered by the same workers); more come in pages."""
MAX_TASK_PAGE = 10_000
"""Most tasks one GET /api/jobs/{id}/tasks returns (a sweep may have millions)."""


def _int(
    value: str | None,
    what: str,
    default: int | None = None,
    minimum: int = 0,
    maximum: int = MAX_ID,
    unit: str = "",
    hint: str = "",
) -> int:
    """A whole number in ASCII digits (``int()`` takes full-width and other scripts' digits
    too), ``minimum`` to ``maximum``: by default no more than an id can be (MAX_ID), which
    keeps every number the stores compute with (``limit + 1``, ``offset + limit``) in 64 bits.
    ``unit`` and ``hint`` say more in the error for a number above the maximum."""
    if value is None or value == "":
        if default is None:
            raise BadRequest(f"{what} is required")
        return default
    if not _DIGITS.fullmatch(value):
        raise BadRequest(f"{what} must be a whole number in digits 0-9, got {quoted(value)}")
    if _beyond(value, maximum):
        raise BadRequest(f"{what} must be at most {maximum}{unit}, got {cut(value)}{hint}")
    number = int(value)
    if number < minimum:
        raise BadRequest(f"{what} must be at least {minimum}, got {number}")
    return number


def _beyond(digits: str, maximum: int) -> bool:
    """``digits`` (``_DIGITS``) is above ``maximum``, told without ``int()`` of a long text."""
    if digits.startswith("-"):
        return False
    digits = digits.lstrip("0")
    return len(digits) > len(str(maximum)) or int(digits or "0") > maximum


def _route_id(req: func.HttpRequest, key: str, what: str) -> int | None:
    """A route's id; None for one beyond MAX_ID: well-formed, but nothing has it (a 404 the
    caller words), and the stores' 64-bit integers could not even look it up."""
    text = req.route_params.get(key)
    if text and _DIGITS.fullmatch(text) and _beyond(text, MAX_ID):
        return None
    return _int(text, what)


def _job_id(req: func.HttpRequest) -> int:
    job_id = _route_id(req, "id", "job id")
    if job_id is None:
        raise NotFound(f"job {cut(req.route_params.get('id') or '')} does not exist")
    return job_id


def _task_id(req: func.HttpRequest, job_id: int) -> int:
    task_id = _route_id(req, "taskId", "task id")
    if task_id is None:
        job = control().get_job(job_id)  # 404 for an unknown job first
        raise NotFound(
            f"task {job_id}.{cut(req.route_params.get('taskId') or '')} does not exist; "
            f"job {job_id} has tasks 1 to {job.task_count}"
        )
    return task_id


def _states(value: str | None, enum: type[JobState] | type[TaskState]) -> list[Any] | None:
    if not value:
        return None
    out = []
    by_name = {s.value.lower(): s for s in enum}  # any case, as node group names match
    for name in value.split(","):
        state = by_name.get(name.strip().lower())
        if state is None:
            allowed = ", ".join(s.value for s in enum)
            raise BadRequest(f"state {quoted(name)} is not one of {allowed}")
        out.append(state)
    return out


@route(bp, "health", ["GET"])
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Health, without a token: 503 saying what to set while the settings cannot make a
    control plane (``hpc up`` stops on it)."""
    try:
        control().store.get_meta(HEALTH_PROBE)  # one point read: the store answers
    except Misconfigured as exc:
        return _json({"status": "misconfigured", "error": str(exc)}, 503)
    except NotFound:
        pass  # it answered
    except UNREACHABLE as exc:
        body = {"status": "store unreachable", "error": f"the store does not answer: {exc}"}
        return _json(body, 503)
    return _json({"status": "ok"})


@route(bp, "jobs", ["POST"])
@api
def submit_job(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """With an ``Idempotency-Key``, a retried submit gets the first one's answer (keys.py)."""
    key, data = idempotency_key(req), read_json(req)
    if key is None:
        job = control().submit(data, principal)
        return created(json_text(_doc(job)), "jobs", job.id)
    answer = control().submit_once(data, principal, key, lambda j: json_text(_doc(j)))
    return answered(answer, lambda doc: ("jobs", doc["id"]))


@route(bp, "jobs", ["GET"])
@api
def list_jobs(req: func.HttpRequest, principal: Principal) -> Any:
    """Newest first, ``limit`` (100) a page; ``next`` is the ``before`` of the next page
    (null on the last one); ``owner``: one user's jobs."""
    only_params(req, "GET /api/jobs", "state", "owner", "limit", "before")
    states = _states(req.params.get("state"), JobState)
    owner = req.params.get("owner")
    limit = _int(
        req.params.get("limit"), "limit", 100, 1, MAX_JOB_PAGE,
        hint=": read more in pages (pass next as before)",
    )  # fmt: skip
    before = req.params.get("before")
    first = None if before in (None, "") else _int(before, "before", minimum=1)
    jobs = control().list_jobs(states=states, limit=limit + 1, before=first, owner=owner)
    more = len(jobs) > limit
    jobs = jobs[:limit]
    return {"jobs": _job_docs(jobs), "next": jobs[-1].id if more else None}


@route(bp, "jobs/{id}", ["GET"])
@api
def get_job(req: func.HttpRequest, principal: Principal) -> Any:
    only_params(req, "GET /api/jobs/{id}")
    return _job_docs([control().get_job(_job_id(req))])[0]


def _mine(req: func.HttpRequest, principal: Principal, what: str) -> int:
    """The route's job id, once ``principal`` may change that job (its owner or an admin)."""
    job_id = _job_id(req)
    if principal.role != ADMIN:  # an admin's needs no read
        check_may_change(control().get_job(job_id), principal, what)
    return job_id


@route(bp, "jobs/{id}/cancel", ["POST"])
@api
def cancel_job(req: func.HttpRequest, principal: Principal) -> Any:
    no_body(req)
    return _doc(control().cancel_job(_mine(req, principal, "cancel"), by=principal.name))


@route(bp, "jobs/{id}/requeue", ["POST"])
@api
def requeue_job(req: func.HttpRequest, principal: Principal) -> Any:
    """200 with the job Queued again; ``dependentJobsCanceled``: the jobs canceled because
    it did not finish, which stay Canceled (requeue them in that order)."""
    no_body(req)
    job_id = _mine(req, principal, "requeue")
    # with pendingReason: a job held before its cancel is still held (HPC Pack keeps it)
    doc = _job_docs([control().requeue_job(job_id)])[0]
    return {**doc, "dependentJobsCanceled": control().left_canceled(job_id)}


@route(bp, "jobs/{id}/hold", ["POST"])
@api
def hold_job(req: func.HttpRequest, principal: Principal) -> Any:
    """Hold a job: ``{"until": ISO 8601}`` to hold it until then, no body to hold it until
    released."""
    body = read_json(req) if req.get_body().strip() else {}
    if not isinstance(body, dict) or set(body) - {"until"}:
        raise InvalidRequest('the body is {"until": "2026-12-01T14:00:00Z"} or empty')
    until = None
    if body.get("until") is not None:  # read as a spec's holdUntil is (specvalues.iso_time)
        try:
            until = iso_time(body["until"])
        except ValueError as e:  # no time, or one outside 1970 to 9999: 422, as holdUntil's
            raise InvalidRequest(f"until: {e}") from None
    job_id = _mine(req, principal, "hold")
    return _job_docs([control().hold_job(job_id, until=until)])[0]


@route(bp, "jobs/{id}/release", ["POST"])
@api
def release_job(req: func.HttpRequest, principal: Principal) -> Any:
    no_body(req)
    return _job_docs([control().release_job(_mine(req, principal, "release"))])[0]


@route(bp, "jobs/{id}", ["PATCH"])
@api
def modify_job(req: func.HttpRequest, principal: Principal) -> Any:
    """Change a job that has not ended: ``{"priority": "Highest", "maxConcurrent": 10}``."""
    shape = (
        '{"priority": <name or 0-4000>, "name": <text>, "maxConcurrent": <N or null>, '
        '"jobRuntimeLimit": <seconds or null>}'
    )
    body = read_json(req, f"{shape} as JSON")
    if isinstance(body, dict) and "exclusive" in body:  # fixed: what runs was placed by it
        raise InvalidRequest("exclusive cannot change after submit: submit the job again")
    if not isinstance(body, dict) or not body or not set(body) <= set(modify.CHANGES):
        raise InvalidRequest(f"the body is {shape}, one or more of them; nothing else can change")
    job_id = _mine(
        req, principal, "change the priority of" if set(body) == {"priority"} else "modify"
    )
    return _job_docs([control().modify_job(job_id, body, admin=principal.role == ADMIN)])[0]


@route(bp, "jobs/{id}/tasks", ["GET"])
@api
def list_tasks(req: func.HttpRequest, principal: Principal) -> Any:
    """In id order, ``limit`` (1,000) a page; ``next`` is the ``after`` of the next page
    (null on the last one), as the jobs list's ``next`` is its ``before``."""
    only_params(req, "GET /api/jobs/{id}/tasks", "state", "offset", "limit", "after")
    job_id = _job_id(req)
    limit = _int(
        req.params.get("limit"), "limit", 1000, 1, MAX_TASK_PAGE,
        hint=": read more in pages (pass next as after)",
    )  # fmt: skip
    tasks = control().list_tasks(
        job_id,
        states=_states(req.params.get("state"), TaskState),
        offset=_int(req.params.get("offset"), "offset", 0),
        limit=limit + 1,  # one more: whether there is a next page
        after=_int(req.params.get("after"), "after", 0),
    )
    more = len(tasks) > limit
    tasks = tasks[:limit]
    docs = _private(_task_docs(tasks), job_id, principal)
    return {"tasks": docs, "next": tasks[-1].id if more else None}


@route(bp, "jobs/{id}/tasks/{taskId}", ["GET"])
@api
def get_task(req: func.HttpRequest, principal: Principal) -> Any:
    only_params(req, "GET /api/jobs/{id}/tasks/{taskId}")
    job_id = _job_id(req)
    task = control().get_task(job_id, _task_id(req, job_id))
    return _private(_task_docs([task]), job_id, principal)[0]


def _private(docs: list[dict[str, Any]], job_id: int, principal: Principal) -> list[dict[str, Any]]:
    """Task docs without their output's tail and environment unless ``principal`` owns the
    job or is an admin: every user sees every job's state (as Slurm and HPC Pack show the
    queue), but only its owner and admins read what its tasks wrote (a task may run as its
    owner's account) and the variables it was given (often a credential)."""
    if principal.role == ADMIN or all(d.get("output") is None and not d.get("env") for d in docs):
        return docs  # (nothing to hide: no read of the job)
    if may_change(control().get_job(job_id), principal):
        return docs
    return [{**d, "output": None, "env": None} for d in docs]


@route(bp, "jobs/{id}/tasks/{taskId}/output", ["GET"])
@api
def task_output(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """Bytes ``offset`` .. ``offset+limit`` of one attempt's stdout or stderr, as text.

    Query: ``stream`` (stdout), ``attempt`` (the task's result attempt, else its latest),
    ``offset`` (0), ``limit`` (1 MiB, at most 16 MiB). Headers: ``X-Output-Size`` (the
    stream's whole size), ``X-Attempt`` (the attempt served), ``X-Output-Truncated``
    (``true`` when the agent cut the stream at HPC_MAX_OUTPUT_BYTES), ``X-Output-Stored``
    (``false`` when nothing of it is stored yet: a running task's output on another host,
    or an ended task's that its agent could not publish yet; not "it printed nothing").
    """
    only_params(
        req, "GET /api/jobs/{id}/tasks/{taskId}/output", "stream", "attempt", "offset", "limit"
    )
    stream = req.params.get("stream", "stdout")
    if stream not in ("stdout", "stderr"):
        raise BadRequest(f"stream must be stdout or stderr, got {quoted(stream)}")
    attempt = req.params.get("attempt")
    limit = _int(
        req.params.get("limit"), "limit", DEFAULT_READ_BYTES, 0, MAX_READ_BYTES,
        unit=f" ({MAX_READ_BYTES >> 20} MiB)", hint=": read larger outputs in pages with offset",
    )  # fmt: skip
    job_id = _mine(req, principal, "read the output of")
    page = control().read_output(
        job_id,
        _task_id(req, job_id),
        stream,  # type: ignore[arg-type]
        attempt=None if attempt in (None, "") else _int(attempt, "attempt"),
        offset=_int(req.params.get("offset"), "offset", 0),
        limit=limit,
    )
    headers = {
        "X-Output-Size": str(page.size),
        "X-Attempt": str(page.attempt),
        "X-Output-Truncated": "true" if page.truncated else "false",
        "X-Output-Stored": "true" if page.stored else "false",
    }
    return func.HttpResponse(
        page.data, status_code=200, headers=headers, mimetype="text/plain", charset="utf-8"
    )
