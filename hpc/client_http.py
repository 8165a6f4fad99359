"""The HTTP plumbing of :class:`hpc.client.ApiClient`: connection, token, errors, JSON.

Every failure, whether the control plane answered with an error or could not
be reached at all, becomes :class:`ApiError` with a message that says what to fix.
Input no request could carry (a name holding ``/``, inf or nan in a body, a token
that is not ASCII) is refused before sending, as :class:`hpc.errors.InvalidInput` or
:class:`hpc.errors.CliError`, rather than escaping as an httpx or encoder exception.
"""

from __future__ import annotations

import math
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from hpc.errors import CliError, InvalidInput
from shared.settings import Settings

try:  # Typer carries its own copy of Click, whose context the running command is in
    from typer._click.globals import get_current_context
except ImportError:  # a Typer that uses Click itself
    from click import get_current_context  # type: ignore[no-redef]

DEFAULT_TIMEOUT_S = 10.0
JOB_ACTION_TIMEOUT_S = 60.0
"""How long ``hpc job cancel`` and ``requeue`` wait: they change every task of the job, one
write each on a store without transactional batches (a 1,000-task job can take longer than
DEFAULT_TIMEOUT_S); Azure's front end cuts any request at 230 s. ``hpc task cancel`` and
``requeue`` wait as long (a task's requeue may reopen its job)."""


class ApiError(CliError):
    """The control plane refused a request, or could not be reached.

    ``status`` is the HTTP status code, or 0 when no response came back (the
    server is down, the URL is wrong, no token is configured).
    """

    def __init__(
        self,
        status: int,
        message: str,
        body: dict[str, Any] | None = None,
        *,
        transient: bool = False,
        unsent: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body: dict[str, Any] = body or {}
        """The error's JSON body: ``error`` and any fields beside it (a refused node action's
        ``state``)."""
        self.transient = transient
        """No answer came (refused, dropped or timed-out connection): the request may or may
        not have been done (:mod:`hpc.client_retry` retries those that carry a key)."""
        self.unsent = unsent
        """The connection was refused: the request never reached the control plane."""


def _root_url(url: str) -> str:
    """``http://host:port`` without a trailing ``/api`` (both spellings are accepted)."""
    url = url.strip().rstrip("/")
    return url.removesuffix("/api")


def _read_token(settings: Settings) -> tuple[str | None, str]:
    """The configured token (None if none) and where it came from, to name in errors."""
    if settings.token:
        return settings.token.strip() or None, "HPC_TOKEN"
    try:
        token = settings.token_path.read_text().strip() or None
    except FileNotFoundError:
        token = None
    except UnicodeDecodeError:
        token = settings.token_path.read_bytes().decode("latin-1").strip() or None
    except OSError as e:
        raise ApiError(
            0, f"cannot read the token file {settings.token_path}: {e.strerror}"
        ) from None
    return token, f"the token in {settings.token_path}"


def _check_token(token: str, source: str) -> None:
    """Refuse a token no server issued: HTTP headers carry ASCII only (httpx would raise
    UnicodeEncodeError), and ``hpc up`` writes letters, digits, ``-`` and ``_``."""
    bad = next((c for c in token if not "!" <= c <= "~"), None)
    if bad is not None:
        raise CliError(
            f"{source} is not a valid API token: it must be ASCII letters, digits and "
            f"punctuation without spaces, as `hpc up` writes it (it holds {bad!r})"
        )


def segment(value: str, what: str) -> str:
    """``value`` as one path segment of a route (percent-encoded), refused if no route can
    carry it: the host decodes ``%2F`` back to ``/`` (another route), and an empty name,
    ``.`` or ``..`` drops or climbs a segment (the collection's route, or none)."""
    if not value.strip():
        raise InvalidInput(f"the {what} is empty: give its name")
    if "/" in value or value in (".", ".."):
        raise InvalidInput(f"{what} {value!r}: a name cannot hold '/' or be '.' or '..'")
    return quote(value, safe="")


def _non_finite(value: Any, path: str = "") -> tuple[str, float] | None:
    """The first number in a JSON body that JSON cannot hold (inf, -inf, nan), with where."""
    if isinstance(value, float) and not math.isfinite(value):
        return path, value
    items: Any = ()
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    for key, item in items:
        found = _non_finite(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def _same(a: Any, b: float) -> bool:
    """Whether ``a`` is the float ``b`` (nan included, which equals nothing)."""
    return isinstance(a, float) and (a == b or (math.isnan(a) and math.isnan(b)))


def _option_given(value: float) -> str | None:
    """The option of the running ``hpc`` command that was given ``value``, to name it in an
    error (None outside a command, or if no option holds it, e.g. a value from a file)."""
    ctx = get_current_context(silent=True)
    if ctx is None:
        return None
    for param in ctx.command.params:
        given = ctx.params.get(param.name or "")
        values = given if isinstance(given, list | tuple) else [given]
        if any(_same(v, value) for v in values):
            opts = [o for o in param.opts if o.startswith("--")]
            return opts[0] if opts else (param.name or "").upper() or None
    return None


def _check_finite(body: Any) -> None:
    """Refuse inf and nan before sending (Python parses them as floats, JSON has no such
    numbers, and httpx's encoder raises ValueError), naming the option that gave them."""
    found = _non_finite(body)
    if found is None:
        return
    path, value = found
    option = _option_given(value)
    if option is not None:
        raise InvalidInput(f"{option} must be a finite number, not {value}")
    raise InvalidInput(f"{path or 'the request'} must be a finite number, not {value}")


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
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``transport``: httpx's (tests put one that loses answers there)."""
        settings = settings or Settings()
        self.url = _root_url(base_url or settings.api_url)
        self.timeout_s = timeout_s
        self._token, self._token_source = (
            (token, "the API token given") if token else _read_token(settings)
        )
        self._token_path = settings.token_path
        try:
            self._http = httpx.Client(
                base_url=self.url + "/api/", timeout=timeout_s, transport=transport
            )
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
        _check_token(self._token, self._token_source)
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
        timeout_s: float | None = None,
        check: str | None = None,
    ) -> httpx.Response:
        """One request; ``timeout_s`` (the client's if None) bounds it, and ``check`` is the
        command that shows whether a change that timed out was made after all."""
        _check_finite(json)
        headers = self._auth_headers() if auth else {}
        headers.update(extra_headers or {})
        if params:
            params = {k: v for k, v in params.items() if v is not None}
        waited = self.timeout_s if timeout_s is None else timeout_s
        try:
            response = self._http.request(
                method, path, params=params, json=json, headers=headers, timeout=waited
            )
        except httpx.ConnectError:
            raise ApiError(
                0,
                f"cannot reach the control plane at {self.url}: is `hpc up` running?",
                transient=True,
                unsent=True,
            ) from None
        except httpx.TimeoutException as e:
            message = f"the control plane at {self.url} did not answer within {waited:g} s"
            if method != "GET" and isinstance(e, httpx.ReadTimeout):  # sent, maybe done
                message += "; the request was sent and may still complete: " + (
                    f"see `{check}`" if check else "check before sending it again"
                )
            raise ApiError(0, message, transient=True) from None
        except httpx.UnsupportedProtocol:
            raise ApiError(
                0,
                f"control plane URL {self.url!r} must start with http:// or https://: fix HPC_API_URL",
            ) from None
        except httpx.HTTPError as e:  # a dropped connection (ReadError...) is transient
            raise ApiError(
                0,
                f"request to the control plane at {self.url} failed: {e}",
                transient=isinstance(e, httpx.TransportError),
            ) from None
        if response.is_error:
            error = self._error(response)
            if error.status == 401 and auth:
                error = ApiError(401, f"{error.message} ({self._token_origin()})", error.body)
            raise error
        return response

    def _token_origin(self) -> str:
        """Where the refused token came from, for a 401: HPC_TOKEN overrides the file the
        server's message points at, so a stale HPC_TOKEN is the usual cause and must be named."""
        if self._token_source == "HPC_TOKEN":
            return (
                "the token sent came from the HPC_TOKEN environment variable (it overrides "
                f"{self._token_path}): if it was revoked, ask an admin for a new one"
            )
        if self._token_source.startswith("the token in "):
            return (
                f"the token sent was read from {self._token_path}, the admin token `hpc up` "
                "writes as it starts: if the admin user was removed, `hpc up` makes a new one"
            )
        return "the token sent was the one given to the client"

    def _error(self, response: httpx.Response) -> ApiError:
        """The API's ``{"error": ...}``, or a description of whatever else came back."""
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return ApiError(status, body["error"], body)
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
