"""A small synchronous client for the control-plane HTTP API: one method per route.

Every failure, whether the control plane answered with an error or could not
be reached at all, is raised as :class:`ApiError` with a message that says
what to fix, so callers never see httpx exceptions; input no route could carry
(see :func:`hpc.client_http.segment`) is refused before sending. Methods return the API's
JSON unchanged (camelCase dicts), which is what ``--json`` prints.

The plumbing (connection, token, errors) is in :mod:`hpc.client_http`, the output routes
(byte ranges, pages, tails) in :mod:`hpc.client_output`; this module holds the rest.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from hpc.client_http import JOB_ACTION_TIMEOUT_S, ApiError, segment
from hpc.client_output import OutputPage, OutputRoutes, Stream
from hpc.client_retry import with_retries
from hpc.errors import InvalidInput
from shared.domain.idempotency import REPLAYED_HEADER
from shared.domain.templates import check_template_name
from shared.errors import InvalidRequest

__all__ = ["ApiClient", "ApiError", "OutputPage", "Stream"]


def _template(name: str) -> str:
    """The template route for ``name``, checked by the server's own rule first: a name the
    server could never hold would otherwise reach another route (``a/b``) or none (``''``)."""
    try:
        check_template_name(name)
    except InvalidRequest as e:
        raise InvalidInput(str(e)) from None
    return f"templates/{segment(name, 'template name')}"


class ApiClient(OutputRoutes):
    """The HTTP API at ``base_url`` (default: HPC_API_URL, else ``Settings().api_url``).

    The token comes from ``token``, else HPC_TOKEN, else the file ``hpc up``
    writes (HPC_HOME/admin.token). A missing token is reported on the first
    call that needs one, so :meth:`health` works without it.
    """

    sleep: Callable[[float], None] = staticmethod(time.sleep)
    """How retries pause (tests replace it)."""
    rng = random.Random()

    replayed_earlier = False
    """The last keyed request's answer was a replay of a request made before this command (its
    first try was answered as a replay): the CLI says "already", not "submitted"."""

    def _keyed(self, method: str, path: str, body: Any, key: str | None) -> Any:
        """A request that creates something: sent with an Idempotency-Key, retried with it."""
        key = key or str(uuid.uuid4())
        tries = 0

        def send() -> Any:
            nonlocal tries
            tries += 1
            headers = {"Idempotency-Key": key}
            response = self._send(method, path, json=body, extra_headers=headers)
            replayed = response.headers.get(REPLAYED_HEADER, "").lower() == "true"
            self.replayed_earlier = replayed and tries == 1  # a later try's: our own first
            return self._decode(response)

        return with_retries(send, key, self.sleep, self.rng)

    # --- routes -----------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``{"status": "ok"}``; needs no token."""
        return self._json("GET", "health", auth=False)

    def submit_job(
        self, spec: dict[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Submit a job spec; returns the new job. Sent with an Idempotency-Key (a fresh
        one if None) and retried when no answer came (:mod:`hpc.client_retry`): a retry
        answers the same job, never a second one."""
        return self._keyed("POST", "jobs", spec, idempotency_key)

    def list_jobs(
        self,
        *,
        state: str | None = None,
        limit: int | None = None,
        before: int | None = None,
        owner: str | None = None,
    ) -> dict[str, Any]:
        """``{"jobs": [...], "next": id | None}``, newest first; ``state`` may list several,
        comma-separated; pass ``next`` as ``before`` for the following page; ``owner``: one
        user's jobs."""
        params = {"state": state, "limit": limit, "before": before, "owner": owner}
        return self._json("GET", "jobs", params=params)

    def get_job(self, job_id: int) -> dict[str, Any]:
        return self._json("GET", f"jobs/{job_id}")

    def cancel_job(self, job_id: int) -> dict[str, Any]:
        return self._job_action(job_id, "cancel")

    def requeue_job(self, job_id: int) -> dict[str, Any]:
        return self._job_action(job_id, "requeue")

    def _job_action(self, job_id: int, action: str) -> dict[str, Any]:
        """Cancel or requeue: each writes every task of the job, so it waits longer
        (JOB_ACTION_TIMEOUT_S), and a timeout says how to see whether it was done."""
        return self._json(
            "POST",
            f"jobs/{job_id}/{action}",
            timeout_s=JOB_ACTION_TIMEOUT_S,
            check=f"hpc job view {job_id}",
        )

    def hold_job(self, job_id: int, *, until: str | None = None) -> dict[str, Any]:
        body = {"until": until} if until else None
        return self._json("POST", f"jobs/{job_id}/hold", json=body)

    def release_job(self, job_id: int) -> dict[str, Any]:
        return self._json("POST", f"jobs/{job_id}/release")

    def modify_job(self, job_id: int, **changes: Any) -> dict[str, Any]:
        """``changes``: ``priority``, ``name``, ``maxConcurrent`` (None: no cap),
        ``jobRuntimeLimit`` (seconds; None: none), as the API spells them."""
        return self._json("PATCH", f"jobs/{job_id}", json=changes)

    def list_tasks(
        self,
        job_id: int,
        *,
        state: str | None = None,
        offset: int | None = None,
        limit: int | None = None,
        after: int | None = None,
    ) -> dict[str, Any]:
        """One page ``{"tasks": [...], "next": ID or None}`` of a job's tasks, in task id
        order (ids above ``after``: pass ``next`` as ``after`` for the next page)."""
        params = {"state": state, "offset": offset, "limit": limit, "after": after}
        return self._json("GET", f"jobs/{job_id}/tasks", params=params)

    def get_task(self, job_id: int, task_id: int) -> dict[str, Any]:
        return self._json("GET", f"jobs/{job_id}/tasks/{task_id}")

    def cancel_task(self, job_id: int, task_id: int) -> dict[str, Any]:
        return self._task_action(job_id, task_id, "cancel")

    def cancel_tasks(self, job_id: int, tasks: list[int | str]) -> dict[str, Any]:
        """Cancel many tasks of one job (ids and ``"FIRST-LAST"`` ranges): ``{"tasks": [...],
        "refused": [...]}``, each one's ``id`` with its ``state`` or its ``status`` and
        ``error``."""
        return self._many(job_id, tasks, "cancel")

    def _many(self, job_id: int, tasks: list[int | str], action: str) -> dict[str, Any]:
        one = len(tasks) == 1 and isinstance(tasks[0], int)
        return self._json(
            "POST",
            f"jobs/{job_id}/tasks/{action}",
            json={"tasks": tasks},
            timeout_s=JOB_ACTION_TIMEOUT_S,
            check=f"hpc task view {job_id} {tasks[0]}" if one else f"hpc task list {job_id}",
        )

    def requeue_tasks(self, job_id: int, tasks: list[int | str]) -> dict[str, Any]:
        """Requeue many tasks of one job, as :meth:`cancel_tasks` cancels them; the answer
        also says ``requeuedDependents`` and ``dependentJobsCanceled``."""
        return self._many(job_id, tasks, "requeue")

    def requeue_task(self, job_id: int, task_id: int) -> dict[str, Any]:
        return self._task_action(job_id, task_id, "requeue")

    def _task_action(self, job_id: int, task_id: int, action: str) -> dict[str, Any]:
        """Cancel or requeue one task: it waits as long as a job's (JOB_ACTION_TIMEOUT_S; a
        requeue may reopen the job), and a timeout says how to see whether it was done."""
        return self._json(
            "POST",
            f"jobs/{job_id}/tasks/{task_id}/{action}",
            timeout_s=JOB_ACTION_TIMEOUT_S,
            check=f"hpc task view {job_id} {task_id}",
        )

    def list_nodes(
        self, *, groups: Sequence[str] = (), states: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Every node, or those in any of ``groups`` and ``states`` (filtered by the API)."""
        params = {"group": ",".join(groups) or None, "state": ",".join(states) or None}
        return self._json("GET", "nodes", params=params)

    def get_node(self, name: str) -> dict[str, Any]:
        return self._json("GET", f"nodes/{segment(name, 'node name')}")

    def list_node_groups(self) -> dict[str, Any]:
        return self._json("GET", "nodegroups")

    def get_node_group(self, name: str) -> dict[str, Any]:
        return self._json("GET", f"nodegroups/{segment(name, 'node group name')}")

    def add_nodes(
        self,
        group: str,
        count: int,
        *,
        cores: int | None = None,
        size: str | None = None,
        spot: bool = False,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Add VMs to a managed group, keyed and retried as :meth:`submit_job`."""
        body: dict[str, Any] = {"group": group, "count": count}
        if cores is not None:
            body["cores"] = cores
        if size is not None:
            body["size"] = size
        if spot:
            body["spot"] = True
        return self._keyed("POST", "nodes", body, idempotency_key)

    def set_node(self, name: str, *, groups: list[str]) -> dict[str, Any]:
        return self._json("PATCH", f"nodes/{segment(name, 'node name')}", json={"groups": groups})

    def node_action(self, name: str, action: str, reason: str | None = None) -> dict[str, Any]:
        node = segment(name, "node name")
        if action == "remove":
            return self._json("DELETE", f"nodes/{node}")
        if reason is not None:
            return self._json("POST", f"nodes/{node}/{action}", json={"reason": reason})
        return self._json("POST", f"nodes/{node}/{action}")

    def create_node_group(self, name: str, **settings: Any) -> dict[str, Any]:
        return self._json("POST", "nodegroups", json={"name": name, **settings})

    def set_node_group(self, name: str, **settings: Any) -> dict[str, Any]:
        return self._json("PATCH", f"nodegroups/{segment(name, 'node group name')}", json=settings)

    def delete_node_group(self, name: str) -> None:
        """204: nothing to decode."""
        self._send("DELETE", f"nodegroups/{segment(name, 'node group name')}")

    def add_user(self, name: str, role: str) -> dict[str, Any]:
        """``{"name", "role", "tokens", "token"}``: the new token, shown this once."""
        return self._json("POST", "users", json={"name": name, "role": role})

    def list_users(self) -> dict[str, Any]:
        return self._json("GET", "users")

    def me(self) -> dict[str, Any]:
        """``{"name", "role"}``: who this client's token signs in as."""
        return self._json("GET", "me")

    def remove_user(self, name: str) -> dict[str, Any]:
        return self._json("DELETE", f"users/{segment(name, 'user name')}")

    def list_tokens(self, name: str) -> dict[str, Any]:
        """``{"name", "tokens": [{"id", "created"}...]}``: the user's tokens, oldest first."""
        return self._json("GET", f"users/{segment(name, 'user name')}/tokens")

    def revoke_token(self, name: str, token: str) -> dict[str, Any]:
        """``{"name", "revokedTokens": 1, "token"}``: one token revoked, by its id."""
        user, tok = segment(name, "user name"), segment(token, "token id")
        return self._json("DELETE", f"users/{user}/tokens/{tok}")

    def autoscale_log(self, *, group: str | None = None, limit: int = 200) -> dict[str, Any]:
        return self._json("GET", "autoscale/log", params={"group": group, "limit": limit})

    def list_templates(self) -> dict[str, Any]:
        """``{"templates": [...]}``, by name."""
        return self._json("GET", "templates")

    def get_template(self, name: str) -> dict[str, Any]:
        return self.get_template_etag(name)[0]

    def get_template_etag(self, name: str) -> tuple[dict[str, Any], str | None]:
        """A template and its ``ETag`` (send it back as ``if_match`` to change it safely)."""
        response = self._send("GET", _template(name))
        return self._decode(response), response.headers.get("ETag")

    def put_template(
        self, name: str, template: dict[str, Any], *, if_match: str | None = None
    ) -> dict[str, Any]:
        """Create or replace a template (admins only); with ``if_match``, only if unchanged."""
        headers = {"If-Match": if_match} if if_match else None
        response = self._send("PUT", _template(name), json=template, extra_headers=headers)
        return self._decode(response)

    def delete_template(self, name: str) -> dict[str, Any]:
        return self._json("DELETE", _template(name))
