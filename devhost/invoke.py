"""Invoking a function as the Python worker does.

Arguments are bound by parameter name, like the worker: the trigger's
``arg_name``, ``context`` for the invocation context, and ``func.Out`` objects
for output bindings. Async functions run on one event loop (the HTTP server's),
sync ones in the caller's thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from azure.functions._abc import RetryContext, TraceContext  # not exported at the top
from starlette.concurrency import run_in_threadpool

from devhost.functions import CONTEXT_PARAMETER, RETURN, FunctionSpec
from shared.ports.bus import Bus, OutgoingMessage

log = logging.getLogger(__name__)


class InvocationError(Exception):
    """The user function raised; the cause is ``__cause__`` and was logged with its traceback."""


class InvocationTimeout(InvocationError):
    """The function ran past host.json's ``functionTimeout``. Azure's host cancels it and
    recycles the worker, so nothing it would have output is delivered and its trigger counts
    as failed (Service Bus messages are redelivered). Python cannot stop a running thread: the
    local host lets it finish, then discards its outputs the same way."""


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
    timeout_s: float | None = None
    """host.json's ``functionTimeout`` (None: unbounded)."""
    clock: Callable[[], float] = time.perf_counter

    def call(self, spec: FunctionSpec, trigger_value: Any) -> Any:
        """Invoke from a worker thread; returns the http output, raises InvocationError."""
        context = InvocationContext(spec)
        kwargs, outs = self._arguments(spec, trigger_value, context)
        started = self.clock()
        try:
            if spec.is_async:
                result = self._run_coroutine(spec.func(**kwargs))
            else:
                result = spec.func(**kwargs)
            self._check_timeout(spec, context, started)
            http_output = self._deliver_outputs(spec, result, outs)
        except InvocationTimeout:
            raise
        except Exception as e:
            self._failed(spec, context, started)
            raise InvocationError(f"{spec.name} failed: {e!r}") from e
        self._succeeded(spec, context, started)
        return http_output

    async def acall(self, spec: FunctionSpec, trigger_value: Any) -> Any:
        """Invoke from the event loop (HTTP); sync functions go to the thread pool."""
        context = InvocationContext(spec)
        kwargs, outs = self._arguments(spec, trigger_value, context)
        started = self.clock()
        try:
            if spec.is_async:
                result = await spec.func(**kwargs)
            else:
                result = await run_in_threadpool(spec.func, **kwargs)
            self._check_timeout(spec, context, started)
            if any(o.type == "serviceBus" for o in spec.outputs):
                http_output = await run_in_threadpool(self._deliver_outputs, spec, result, outs)
            else:
                http_output = self._deliver_outputs(spec, result, outs)
        except InvocationTimeout:
            raise
        except Exception as e:
            self._failed(spec, context, started)
            raise InvocationError(f"{spec.name} failed: {e!r}") from e
        self._succeeded(spec, context, started)
        return http_output

    def _check_timeout(
        self, spec: FunctionSpec, context: InvocationContext, started: float
    ) -> None:
        if self.timeout_s is None:
            return
        took = self.clock() - started
        if took > self.timeout_s:
            log.error(
                "Timeout value of %s exceeded by function 'Functions.%s' (Id: '%s'; it ran %.1f s):"
                " in Azure it would have been canceled and its worker recycled; its outputs are"
                " dropped and its trigger fails",
                _timespan(self.timeout_s),
                spec.name,
                context.invocation_id,
                took,
            )
            raise InvocationTimeout(f"{spec.name} ran {took:.1f} s, past functionTimeout")

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

    def _succeeded(self, spec: FunctionSpec, context: InvocationContext, started: float) -> None:
        log.debug(
            "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%.1fms)",
            spec.name,
            context.invocation_id,
            (self.clock() - started) * 1000,
        )

    def _failed(self, spec: FunctionSpec, context: InvocationContext, started: float) -> None:
        log.exception(
            "Executed 'Functions.%s' (Failed, Id=%s, Duration=%.1fms)",
            spec.name,
            context.invocation_id,
            (self.clock() - started) * 1000,
        )


def _timespan(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


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
