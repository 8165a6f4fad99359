"""The HTTP plumbing of :class:`hpc.client.ApiClient`: connection, token, errors, JSON.

Every failure, whether the control plane answered with an error or could not
be reached at all, becomes :class:`ApiError` with a message that says what to fix.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import httpx

from hpc.errors import CliError
from shared.settings import Settings

DEFAULT_TIMEOUT_S = 10.0


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


class HttpClient:
    """The connection to the API (the base of :class:`hpc.client.ApiClient`, which says
    where its URL and token come from)."""

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

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def token(self) -> str:
        """The bearer token this client sends (ApiError saying where to get one if none)."""
        return self._auth_headers()["Authorization"].removeprefix("Bearer ")

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
        extra_headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        headers = self._auth_headers() if auth else {}
        headers.update(extra_headers or {})
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

    def _decode(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                response.status_code,
                f"{response.request.method} {response.request.url} did not return JSON "
                "(is HPC_API_URL pointing at the control plane?)",
            ) from None
