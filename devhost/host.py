"""LocalHost: a function app served on one machine as the Azure Functions host serves it.

HTTP triggers go through uvicorn (in a background thread with its own event
loop, which also runs every async function), timers and Service Bus triggers
through their own threads. Stopping is graceful: triggers stop taking work,
running invocations finish and settle their messages, then the HTTP server
finishes its requests and closes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import time
from pathlib import Path
from types import FrameType, TracebackType

import azure.functions as func
import uvicorn

from devhost.config import HostConfig
from devhost.functions import (
    HTTP_TRIGGER,
    SERVICE_BUS_TRIGGER,
    TIMER_TRIGGER,
    FunctionSpec,
    discover,
)
from devhost.http import build_app
from devhost.invoke import Invoker
from devhost.locks import LockRenewer
from devhost.servicebus import Listener, listener_for
from devhost.timers import TimerRunner
from shared.ports.bus import Bus

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn that says when it is serving, and on which loop."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.loop = asyncio.get_running_loop()
        self.ready.set()


class LocalHost:
    """Serve ``app`` (a ``func.FunctionApp``) locally; Service Bus triggers read ``bus``.

    ``host_json`` is the app's host.json (route prefix, Service Bus options);
    ``None`` means the Functions defaults. Functions that cannot be loaded are
    listed in :attr:`errors` and not run; the others are.
    """

    def __init__(
        self,
        app: func.FunctionApp,
        *,
        bus: Bus,
        host: str = "127.0.0.1",
        port: int = 7071,
        host_json: Path | None = None,
        max_request_body_bytes: int | None = None,
        shutdown_timeout_s: float = 30.0,
    ) -> None:
        self.config = HostConfig.load(host_json)
        self.functions: list[FunctionSpec]
        self.errors: dict[str, str]
        self.functions, self.errors = discover(app)
        self._refuse_manual_settlement()
        self._bus = bus
        self._host = host
        self._port = port
        self._max_body = max_request_body_bytes
        self._shutdown_timeout_s = shutdown_timeout_s
        self._invoker = Invoker(bus=bus, timeout_s=self.config.function_timeout_s)
        self._renewer = LockRenewer(max_renewal_s=self.config.max_auto_lock_renewal_s)
        self._timers: list[TimerRunner] = []
        self._listeners: list[Listener] = []
        self._server: _Server | None = None
        self._server_thread: threading.Thread | None = None
        self._server_error: BaseException | None = None
        self._bound_port: int | None = None
        self._lock = threading.Lock()
        self._stop_requested = threading.Event()
        self._started = False
        self._stopped = False

    # --- what is served ------------------------------------------------------------

    def _refuse_manual_settlement(self) -> None:
        """A Service Bus function without auto-complete must settle its messages itself
        (a ServiceBusMessageActions client in Azure), which the local host cannot give it;
        run as if completed it would hide messages Azure redelivers and dead-letters."""
        for spec in list(self.functions):
            if spec.trigger_type != SERVICE_BUS_TRIGGER:
                continue
            own = spec.trigger.get("autoCompleteMessages")
            if (self.config.auto_complete_messages if own is None else bool(own)) is False:
                self.functions.remove(spec)
                self.errors[spec.name] = (
                    "autoCompleteMessages is false: the function would have to settle its own"
                    " messages, which the local host does not support"
                )

    def describe(self) -> list[str]:
        """One line per function, e.g. ``http GET api/jobs/{id} -> get_job``."""
        return [spec.describe(self.config.route_prefix) for spec in self.functions]

    @property
    def url(self) -> str:
        """Base URL of the HTTP server (the real port when constructed with port 0)."""
        if self._bound_port is None:
            raise RuntimeError("the host is not started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._bound_port}"

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Serve HTTP, then start timers and Service Bus listeners; returns once HTTP accepts."""
        with self._lock:
            if self._started:
                raise RuntimeError("the host was started already")
            self._started = True
        for line in self.describe():
            log.info("%s", line)
        for name, error in self.errors.items():
            log.error("function %s is not loaded: %s", name, error)

        self._start_http()
        self._invoker.loop = self._server.loop if self._server else None
        self._renewer.start()
        for spec in self.functions:
            if spec.trigger_type == TIMER_TRIGGER:
                timer = TimerRunner(spec, self._invoker)
                self._timers.append(timer)
                timer.start()
            elif spec.trigger_type == SERVICE_BUS_TRIGGER:
                listener = listener_for(spec, self._bus, self._invoker, self._renewer, self.config)
                self._listeners.append(listener)
                listener.start()
        log.info("local Functions host listening on %s", self.url)

    def _start_http(self) -> None:
        specs = [s for s in self.functions if s.trigger_type == HTTP_TRIGGER]
        asgi = build_app(
            specs,
            self._invoker,
            route_prefix=self.config.route_prefix,
            max_body_bytes=self._max_body,
            errors=self.errors,
        )
        # Bind here so a taken port fails start() itself and port 0 gives the real port.
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.create_server((self._host, self._port), family=family)
        self._bound_port = sock.getsockname()[1]
        config = uvicorn.Config(
            asgi,
            lifespan="off",
            log_level="warning",
            log_config=None,
            timeout_graceful_shutdown=max(1, round(self._shutdown_timeout_s)),
        )
        server = _Server(config)
        self._server = server

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(server.serve(sockets=[sock]))
            except BaseException as e:  # SystemExit from uvicorn on a failed start
                self._server_error = e
                log.exception("the HTTP server stopped")
            finally:
                server.ready.set()
                sock.close()
                loop.close()

        self._server_thread = threading.Thread(target=serve, name="devhost-http", daemon=True)
        self._server_thread.start()
        server.ready.wait()
        if self._server_error is not None or not server.started:
            raise RuntimeError("the HTTP server did not start") from self._server_error

    def stop(self) -> None:
        """Stop taking work, let running invocations finish and settle, then close HTTP."""
        with self._lock:
            if self._stopped or not self._started:
                self._stopped = True
                self._stop_requested.set()
                return
            self._stopped = True
        self._stop_requested.set()
        deadline = time.monotonic() + self._shutdown_timeout_s
        workers: list[TimerRunner | Listener] = [*self._timers, *self._listeners]
        for worker in workers:
            worker.stop()
        for worker in workers:
            if not worker.join(max(0.0, deadline - time.monotonic())):
                log.warning(
                    "%s did not stop within %.0f s", worker.spec.name, self._shutdown_timeout_s
                )
        if self._server is not None:
            self._server.should_exit = True
        if self._server_thread is not None:
            self._server_thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
        self._renewer.stop()
        self._invoker.loop = None
        log.info("local Functions host stopped")

    def serve_forever(self) -> None:
        """Start (if needed) and serve until SIGINT or SIGTERM (or :meth:`stop`), then stop."""
        previous: dict[int, object] = {}
        if threading.current_thread() is threading.main_thread():

            def request_stop(signum: int, frame: FrameType | None) -> None:
                log.info("received %s, stopping", signal.Signals(signum).name)
                self._stop_requested.set()

            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, request_stop)
        try:
            if not self._started:
                self.start()
            while not self._stop_requested.wait(1.0):
                pass
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)  # type: ignore[arg-type]

    def __enter__(self) -> LocalHost:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
