"""Discovering a v2 function app's functions and invoking them as the Python worker does.

Discovery reads the same decorator metadata the Functions host indexes
(``app.get_functions()``); a function the host could not load (a missing
``%Setting%``, a binding the local host does not drive, a parameter without a
binding) is reported as an error and not run, while the others run, as in Azure.

Invocation binds arguments by parameter name, like the worker: the trigger's
``arg_name``, ``context`` for the invocation context, and ``func.Out`` objects
for output bindings. Async functions run on one event loop (the HTTP server's),
sync ones in the caller's thread.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from azure.functions._abc import RetryContext, TraceContext  # not exported at the top
from starlette.concurrency import run_in_threadpool

from devhost.ncrontab import parse_schedule
from devhost.routes import compile_template
from shared.ports.bus import Bus, OutgoingMessage

log = logging.getLogger(__name__)

HTTP_TRIGGER = "httpTrigger"
TIMER_TRIGGER = "timerTrigger"
SERVICE_BUS_TRIGGER = "serviceBusTrigger"
SUPPORTED_TRIGGERS = (HTTP_TRIGGER, TIMER_TRIGGER, SERVICE_BUS_TRIGGER)
SUPPORTED_OUTPUTS = ("http", "serviceBus")
RETURN = "$return"
CONTEXT_PARAMETER = "context"

_SETTING = re.compile(r"%([^%]+)%")


class FunctionLoadError(Exception):
    """The function cannot be run as declared (the Functions host would report it in error)."""


class InvocationError(Exception):
    """The user function raised; the cause is ``__cause__`` and was logged with its traceback."""


def resolve_settings(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace every ``%Name%`` with the app setting ``Name`` (an environment variable).

    Functions resolves binding expressions such as a timer schedule or a queue
    name from app settings the same way; a missing setting is a load error.
    """
    env = os.environ if environ is None else environ

    def setting(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise FunctionLoadError(f"app setting {name!r} (in {value!r}) is not set")
        return env[name]

    return _SETTING.sub(setting, value)


def plain(value: Any) -> Any:
    """The binding dict with enums (HttpMethod, Cardinality, ...) replaced by their values."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


@dataclass(frozen=True)
class OutputBinding:
    name: str
    type: str
    queue_name: str | None = None


@dataclass(frozen=True)
class FunctionSpec:
    """One loadable function: its trigger (settings resolved) and how to call it."""

    name: str
    trigger_type: str
    trigger_arg: str
    trigger: dict[str, Any]
    """``get_dict_repr()`` of the trigger, enums as plain values, ``%Setting%`` resolved."""
    func: Callable[..., Any]
    is_async: bool
    wants_context: bool
    outputs: tuple[OutputBinding, ...] = ()
    directory: str = ""

    @property
    def cardinality_many(self) -> bool:
        return str(self.trigger.get("cardinality") or "one").lower() == "many"

    @property
    def sessions(self) -> bool:
        return bool(self.trigger.get("isSessionsEnabled"))

    def describe(self, route_prefix: str = "api") -> str:
        """One line per function, as the host logs them at start."""
        if self.trigger_type == HTTP_TRIGGER:
            methods = ",".join(self.trigger.get("methods") or []) or "*"
            route = "/".join(p for p in (route_prefix, self.trigger["route"].strip("/")) if p)
            return f"http {methods} {route} -> {self.name}"
        if self.trigger_type == TIMER_TRIGGER:
            startup = " (runOnStartup)" if self.trigger.get("runOnStartup") else ""
            return f"timer {self.trigger['schedule']}{startup} -> {self.name}"
        options = ["many" if self.cardinality_many else "one"]
        if self.sessions:
            options.append("sessions")
        return f"servicebus {self.trigger['queueName']} ({', '.join(options)}) -> {self.name}"


def discover(app: func.FunctionApp) -> tuple[list[FunctionSpec], dict[str, str]]:
    """The app's runnable functions, and the reason each other function cannot run."""
    # get_functions() refuses to index the same app twice (it remembers the names
    # it saw); a process may host one app several times (tests, restarts).
    if getattr(app, "functions_bindings", None):
        app.functions_bindings = {}
    specs: list[FunctionSpec] = []
    errors: dict[str, str] = {}
    for function in app.get_functions():
        name = str(function.get_function_name())
        try:
            specs.append(_load(function))
        except FunctionLoadError as e:
            errors[name] = str(e)
    return specs, errors


def _load(function: Any) -> FunctionSpec:
    name = function.get_function_name()
    trigger_binding = function.get_trigger()
    trigger = plain(dict(trigger_binding.get_dict_repr()))
    trigger_type = trigger.get("type")
    if trigger_type not in SUPPORTED_TRIGGERS:
        raise FunctionLoadError(f"trigger type {trigger_type!r} is not supported by the local host")
    if trigger_type == HTTP_TRIGGER:
        trigger["route"] = str(trigger.get("route") or name)
        trigger["methods"] = [str(m).upper() for m in trigger.get("methods") or []]
        try:
            compile_template(trigger["route"])
        except ValueError as e:
            raise FunctionLoadError(f"route {trigger['route']!r}: {e}") from None
    for key in ("schedule", "queueName"):
        if isinstance(trigger.get(key), str):
            trigger[key] = resolve_settings(trigger[key])
    if trigger_type == TIMER_TRIGGER:
        try:
            parse_schedule(str(trigger.get("schedule") or ""))
        except ValueError as e:
            raise FunctionLoadError(str(e)) from None
    if trigger_type == SERVICE_BUS_TRIGGER and not trigger.get("queueName"):
        raise FunctionLoadError("only Service Bus queue triggers are supported (no topics)")

    outputs: list[OutputBinding] = []
    for binding in function.get_bindings():
        if binding is trigger_binding:
            continue
        doc = plain(dict(binding.get_dict_repr()))
        if doc.get("direction") != 1 or doc.get("type") not in SUPPORTED_OUTPUTS:
            raise FunctionLoadError(
                f"binding {doc.get('name')!r} of type {doc.get('type')!r} is not supported"
                " by the local host"
            )
        if doc["type"] == "http" and trigger_type != HTTP_TRIGGER:
            raise FunctionLoadError("an http output needs an http trigger")
        queue = doc.get("queueName")
        outputs.append(
            OutputBinding(
                name=doc["name"],
                type=doc["type"],
                queue_name=resolve_settings(queue) if isinstance(queue, str) else None,
            )
        )

    user_function = function.get_user_function()
    parameters = set(inspect.signature(user_function).parameters)
    wants_context = CONTEXT_PARAMETER in parameters
    declared = {trigger["name"]} | {o.name for o in outputs if o.name != RETURN}
    unbound = parameters - declared - {CONTEXT_PARAMETER}
    if unbound:
        raise FunctionLoadError(
            f"parameters {sorted(unbound)} have no binding (the worker binds by name)"
        )
    missing = declared - parameters
    if missing:
        raise FunctionLoadError(f"bindings {sorted(missing)} have no parameter of that name")
    try:
        directory = os.path.dirname(inspect.getfile(user_function))
    except (TypeError, OSError):
        directory = ""
    return FunctionSpec(
        name=name,
        trigger_type=trigger_type,
        trigger_arg=trigger["name"],
        trigger=trigger,
        func=user_function,
        is_async=inspect.iscoroutinefunction(user_function),
        wants_context=wants_context,
        outputs=tuple(outputs),
        directory=directory,
    )


# --- invocation -----------------------------------------------------------------


class _TraceContext(TraceContext):
    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return ""

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class InvocationContext(func.Context):
    """The ``context`` argument: what the worker's Context carries, without tracing."""

    def __init__(self, spec: FunctionSpec) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._spec = spec
        self._local = threading.local()
        self._local.invocation_id = self._invocation_id

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._local

    @property
    def function_name(self) -> str:
        return self._spec.name

    @property
    def function_directory(self) -> str:
        return self._spec.directory

    @property
    def trace_context(self) -> TraceContext:
        return _TraceContext()

    @property
    def retry_context(self) -> RetryContext:
        return _RetryContext()


class Out(func.Out[Any]):
    """An output binding's value, read after the function returns."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


@dataclass
class Invoker:
    """Calls user functions; one per host.

    ``loop`` is the event loop async functions run on when called from a thread
    (the HTTP server's, as the worker runs every async function on one loop);
    without one, each such call gets a fresh loop.
    """

    bus: Bus | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def call(self, spec: FunctionSpec, trigger_value: Any) -> Any:
        """Invoke from a worker thread; returns the http output, raises InvocationError."""
        context = InvocationContext(spec)
        kwargs, outs = self._arguments(spec, trigger_value, context)
        started = time.perf_counter()
        try:
            if spec.is_async:
                result = self._run_coroutine(spec.func(**kwargs))
            else:
                result = spec.func(**kwargs)
            http_output = self._deliver_outputs(spec, result, outs)
        except Exception as e:
            self._failed(spec, context, started)
            raise InvocationError(f"{spec.name} failed: {e!r}") from e
        self._succeeded(spec, context, started)
        return http_output

    async def acall(self, spec: FunctionSpec, trigger_value: Any) -> Any:
        """Invoke from the event loop (HTTP); sync functions go to the thread pool."""
        context = InvocationContext(spec)
        kwargs, outs = self._arguments(spec, trigger_value, context)
        started = time.perf_counter()
        try:
            if spec.is_async:
                result = await spec.func(**kwargs)
            else:
                result = await run_in_threadpool(spec.func, **kwargs)
            if any(o.type == "serviceBus" for o in spec.outputs):
                http_output = await run_in_threadpool(self._deliver_outputs, spec, result, outs)
            else:
                http_output = self._deliver_outputs(spec, result, outs)
        except Exception as e:
            self._failed(spec, context, started)
            raise InvocationError(f"{spec.name} failed: {e!r}") from e
        self._succeeded(spec, context, started)
        return http_output

    def _run_coroutine(self, coroutine: Any) -> Any:
        loop = self.loop
        if loop is not None and loop.is_running():
            return asyncio.run_coroutine_threadsafe(coroutine, loop).result()
        return asyncio.run(coroutine)

    @staticmethod
    def _arguments(
        spec: FunctionSpec, trigger_value: Any, context: InvocationContext
    ) -> tuple[dict[str, Any], dict[str, Out]]:
        outs = {o.name: Out() for o in spec.outputs if o.name != RETURN}
        kwargs: dict[str, Any] = {spec.trigger_arg: trigger_value, **outs}
        if spec.wants_context:
            kwargs[CONTEXT_PARAMETER] = context
        return kwargs, outs

    def _deliver_outputs(self, spec: FunctionSpec, result: Any, outs: dict[str, Out]) -> Any:
        """Send Service Bus outputs; return the http output (``$return`` or an Out)."""
        http_output = None
        for output in spec.outputs:
            value = result if output.name == RETURN else outs[output.name].get()
            if output.type == "http":
                http_output = value
            elif value is not None:
                if self.bus is None or output.queue_name is None:
                    raise RuntimeError(f"no bus for the Service Bus output {output.name!r}")
                self.bus.send(output.queue_name, _outgoing(value))
        return http_output

    @staticmethod
    def _succeeded(spec: FunctionSpec, context: InvocationContext, started: float) -> None:
        log.debug(
            "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%.1fms)",
            spec.name,
            context.invocation_id,
            (time.perf_counter() - started) * 1000,
        )

    @staticmethod
    def _failed(spec: FunctionSpec, context: InvocationContext, started: float) -> None:
        log.exception(
            "Executed 'Functions.%s' (Failed, Id=%s, Duration=%.1fms)",
            spec.name,
            context.invocation_id,
            (time.perf_counter() - started) * 1000,
        )


def _outgoing(value: Any) -> list[OutgoingMessage]:
    """A Service Bus output value as messages: str, bytes, JSON data, or a list of them."""
    items = value if isinstance(value, list) else [value]
    messages = []
    for item in items:
        if isinstance(item, bytes | bytearray):
            messages.append(OutgoingMessage(body=bytes(item)))
        elif isinstance(item, str):
            messages.append(OutgoingMessage(body=item.encode()))
        else:
            messages.append(
                OutgoingMessage(body=json.dumps(item).encode(), content_type="application/json")
            )
    return messages
