"""A small synchronous client for the control-plane HTTP API: one method per route.

Every failure, whether the control plane answered with an error or could not
be reached at all, is raised as :class:`ApiError` with a message that says
what to fix, so callers never see httpx exceptions. Methods return the API's
JSON unchanged (camelCase dicts), which is what ``--json`` prints.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import httpx

from hpc.errors import CliError
from shared.ports.output import MAX_READ_BYTES
from shared.settings import Settings

DEFAULT_TIMEOUT_S = 10.0
OUTPUT_PAGE_BYTES = 4 << 20
"""Bytes asked for per request when reading a whole output."""
TAIL_FIRST_BYTES = 64 << 10
"""The first range read from the end of an output for ``--tail`` (doubled while short)."""

Stream = Literal["stdout", "stderr"]


@dataclass(frozen=True)
class OutputPage:
    """A byte range of a task attempt's stream, with what the API said of the whole."""

    data: bytes
    size: int | None
    """The stream's whole size (``X-Output-Size``), None if the server did not say."""
    attempt: int | None
    """The attempt served (``X-Attempt``), None if the server did not say."""
    truncated: bool
    """The agent cut the stream at HPC_MAX_OUTPUT_BYTES (``X-Output-Truncated``)."""


def tail_lines(data: bytes, lines: int) -> bytes:
    """The last ``lines`` lines of ``data`` (a final newline ends the last line)."""
    if lines <= 0:
        return b""
    pos = len(data) - 1 if data.endswith(b"\n") else len(data)
    for _ in range(lines):
        pos = data.rfind(b"\n", 0, pos)
        if pos < 0:
            return data
    return data[pos + 1 :]


def _holds_lines(data: bytes, lines: int) -> bool:
    """Whether ``data`` (the end of a stream) surely holds its last ``lines`` whole lines."""
    end = len(data) - 1 if data.endswith(b"\n") else len(data)
    return data.count(b"\n", 0, max(end, 0)) >= lines


def _int_header(response: httpx.Response, name: str) -> int | None:
    try:
        return int(response.headers[name])
    except (KeyError, ValueError):
        return None


class ApiError(CliError):
    """The control plane refused a request, or could not be reached.

    ``status`` is the HTTP status code, or 0 when no response came back (the
    server is down, the URL is wrong, no token is configured).
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _root_url(url: str) -> str:
    """``http://host:port`` without a trailing ``/api`` (both spellings are accepted)."""
    url = url.strip().rstrip("/")
    return url.removesuffix("/api")


def _read_token(settings: Settings) -> str | None:
    if settings.token:
        return settings.token.strip() or None
    try:
        return settings.token_path.read_text().strip() or None
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ApiError(
            0, f"cannot read the token file {settings.token_path}: {e.strerror}"
        ) from None


class ApiClient:
    """The HTTP API at ``base_url`` (default: HPC_API_URL, else ``Settings().api_url``).

    The token comes from ``token``, else HPC_TOKEN, else the file ``hpc up``
    writes (HPC_HOME/admin.token). A missing token is reported on the first
    call that needs one, so :meth:`health` works without it.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        settings: Settings | None = None,
    ) -> None:
        settings = settings or Settings()
        self.url = _root_url(base_url or settings.api_url)
        self.timeout_s = timeout_s
        self._token = token or _read_token(settings)
        self._token_path = settings.token_path
        try:
            self._http = httpx.Client(base_url=self.url + "/api/", timeout=timeout_s)
        except (httpx.InvalidURL, ValueError) as e:
            raise ApiError(
                0, f"control plane URL {self.url!r} is not valid ({e}): fix HPC_API_URL"
            ) from None

    # --- plumbing ---------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _auth_headers(self) -> dict[str, str]:
        if not self._token:
            raise ApiError(
                0,
                f"no API token: run `hpc up` (it writes {self._token_path}) "
                "or set HPC_TOKEN (and HPC_HOME if `hpc up` used another one)",
            )
        return {"Authorization": f"Bearer {self._token}"}

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        auth: bool = True,
    ) -> httpx.Response:
        headers = self._auth_headers() if auth else {}
        if params:
            params = {k: v for k, v in params.items() if v is not None}
        try:
            response = self._http.request(method, path, params=params, json=json, headers=headers)
        except httpx.ConnectError:
            raise ApiError(
                0, f"cannot reach the control plane at {self.url}: is `hpc up` running?"
            ) from None
        except httpx.TimeoutException:
            raise ApiError(
                0, f"the control plane at {self.url} did not answer within {self.timeout_s:g} s"
            ) from None
        except httpx.UnsupportedProtocol:
            raise ApiError(
                0,
                f"control plane URL {self.url!r} must start with http:// or https://: fix HPC_API_URL",
            ) from None
        except httpx.HTTPError as e:
            raise ApiError(0, f"request to the control plane at {self.url} failed: {e}") from None
        if response.is_error:
            raise self._error(response)
        return response

    def _error(self, response: httpx.Response) -> ApiError:
        """The API's ``{"error": ...}``, or a description of whatever else came back."""
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return ApiError(status, body["error"])
        text = " ".join(response.text.split())[:200]
        where = f"{response.request.method} {response.request.url}"
        return ApiError(
            status,
            f"{where} answered HTTP {status}"
            + (f": {text}" if text else "")
            + " (is HPC_API_URL pointing at the control plane?)",
        )

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                response.status_code,
                f"{method} {response.request.url} did not return JSON "
                "(is HPC_API_URL pointing at the control plane?)",
            ) from None

    # --- routes -----------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``{"status": "ok"}``; needs no token."""
        return self._json("GET", "health", auth=False)

    def submit_job(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Submit a job spec; returns the new job."""
        return self._json("POST", "jobs", json=spec)

    def list_jobs(self, *, state: str | None = None, limit: int | None = None) -> dict[str, Any]:
        """``{"jobs": [...]}``, newest first; ``state`` may list several, comma-separated."""
        return self._json("GET", "jobs", params={"state": state, "limit": limit})

    def get_job(self, job_id: int) -> dict[str, Any]:
        return self._json("GET", f"jobs/{job_id}")

    def cancel_job(self, job_id: int) -> dict[str, Any]:
        return self._json("POST", f"jobs/{job_id}/cancel")

    def requeue_job(self, job_id: int) -> dict[str, Any]:
        return self._json("POST", f"jobs/{job_id}/requeue")

    def hold_job(self, job_id: int, *, until: str | None = None) -> dict[str, Any]:
        body = {"until": until} if until else None
        return self._json("POST", f"jobs/{job_id}/hold", json=body)

    def release_job(self, job_id: int) -> dict[str, Any]:
        return self._json("POST", f"jobs/{job_id}/release")

    def modify_job(self, job_id: int, *, priority: int | str) -> dict[str, Any]:
        return self._json("PATCH", f"jobs/{job_id}", json={"priority": priority})

    def list_tasks(
        self,
        job_id: int,
        *,
        state: str | None = None,
        offset: int | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """One page ``{"tasks": [...]}`` of a job's tasks, in task id order."""
        params = {"state": state, "offset": offset, "limit": limit}
        return self._json("GET", f"jobs/{job_id}/tasks", params=params)

    def get_task(self, job_id: int, task_id: int) -> dict[str, Any]:
        return self._json("GET", f"jobs/{job_id}/tasks/{task_id}")

    def task_output_page(
        self,
        job_id: int,
        task_id: int,
        *,
        stream: Stream = "stdout",
        attempt: int | None = None,
        offset: int | None = None,
        limit: int | None = None,
    ) -> OutputPage:
        """One byte range of a task attempt's stdout or stderr (the API's defaults: the
        attempt the task's state comes from, offset 0, 1 MiB)."""
        params = {"stream": stream, "attempt": attempt, "offset": offset, "limit": limit}
        response = self._send("GET", f"jobs/{job_id}/tasks/{task_id}/output", params=params)
        return OutputPage(
            data=response.content,
            size=_int_header(response, "X-Output-Size"),
            attempt=_int_header(response, "X-Attempt"),
            truncated=response.headers.get("X-Output-Truncated", "").lower() == "true",
        )

    def iter_task_output(
        self,
        job_id: int,
        task_id: int,
        *,
        stream: Stream = "stdout",
        attempt: int | None = None,
        page_bytes: int | None = None,
    ) -> Iterator[OutputPage]:
        """The whole stream, page by page (``OUTPUT_PAGE_BYTES`` each), all from the attempt
        the first page came from (a task retried meanwhile does not mix attempts). Ends at
        the first short page."""
        page_bytes = page_bytes or OUTPUT_PAGE_BYTES
        offset = 0
        while True:
            page = self.task_output_page(
                job_id, task_id, stream=stream, attempt=attempt, offset=offset, limit=page_bytes
            )
            if attempt is None:
                attempt = page.attempt
            yield page
            offset += len(page.data)
            if len(page.data) < page_bytes or (page.size is not None and offset >= page.size):
                return

    def task_output(
        self, job_id: int, task_id: int, *, stream: Stream = "stdout", attempt: int | None = None
    ) -> str:
        """A task attempt's whole stdout or stderr as text (read in pages)."""
        pages = self.iter_task_output(job_id, task_id, stream=stream, attempt=attempt)
        return b"".join(page.data for page in pages).decode("utf-8", errors="replace")

    def task_output_tail(
        self,
        job_id: int,
        task_id: int,
        lines: int,
        *,
        stream: Stream = "stdout",
        attempt: int | None = None,
    ) -> OutputPage:
        """The last ``lines`` lines of a task attempt's stream, fetching only ranges from its
        end (growing from 64 KiB) until they hold that many lines."""
        probe = self.task_output_page(
            job_id, task_id, stream=stream, attempt=attempt, offset=0, limit=0
        )
        if probe.size is None:  # a server that does not say the size: read it all
            pages = list(self.iter_task_output(job_id, task_id, stream=stream, attempt=attempt))
            data = b"".join(p.data for p in pages)
            last = pages[-1]
            return OutputPage(tail_lines(data, lines), last.size, last.attempt, last.truncated)
        attempt = probe.attempt if attempt is None else attempt
        data, end, chunk = b"", probe.size, TAIL_FIRST_BYTES
        truncated = probe.truncated
        while end > 0 and lines > 0 and not _holds_lines(data, lines):
            start = max(0, end - chunk)
            page = self.task_output_page(
                job_id, task_id, stream=stream, attempt=attempt, offset=start, limit=end - start
            )
            truncated = truncated or page.truncated
            data, end = page.data + data, start
            chunk = min(chunk * 2, MAX_READ_BYTES)
        return OutputPage(tail_lines(data, lines), probe.size, attempt, truncated)

    def list_nodes(self) -> dict[str, Any]:
        return self._json("GET", "nodes")

    def list_node_groups(self) -> dict[str, Any]:
        return self._json("GET", "nodegroups")

    def add_nodes(
        self, group: str, count: int, *, cores: int | None = None, size: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"group": group, "count": count}
        if cores is not None:
            body["cores"] = cores
        if size is not None:
            body["size"] = size
        return self._json("POST", "nodes", json=body)

    def node_action(self, name: str, action: str) -> dict[str, Any]:
        if action == "remove":
            return self._json("DELETE", f"nodes/{name}")
        return self._json("POST", f"nodes/{name}/{action}")

    def create_node_group(self, name: str, **settings: Any) -> dict[str, Any]:
        return self._json("POST", "nodegroups", json={"name": name, **settings})

    def set_node_group(self, name: str, **settings: Any) -> dict[str, Any]:
        return self._json("PATCH", f"nodegroups/{name}", json=settings)

    def autoscale_log(self, *, group: str | None = None, limit: int = 200) -> dict[str, Any]:
        return self._json("GET", "autoscale/log", params={"group": group, "limit": limit})
