"""Discovering a v2 function app's functions as the Functions host and its Python worker do.

Discovery reads the same decorator metadata the Functions host indexes
(``app.get_functions()``). A function Azure's Python worker would refuse (a
signature that does not match its bindings: :mod:`devhost.indexing`) fails the
whole app, as one refused function fails the app's indexing in Azure. A function
the host could not load (a missing ``%Setting%``, a binding the local host does
not drive) is reported as an error and not run, while the others run, as in Azure.

Invoking them is :mod:`devhost.invoke`.
"""

from __future__ import annotations

import enum
import inspect
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import azure.functions as func

from devhost.indexing import AppIndexingError, WorkerRefusal, check_function
from devhost.ncrontab import parse_schedule
from devhost.routes import compile_template

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
    """The app's runnable functions, and the reason each other function cannot run.

    Raises :class:`~devhost.indexing.AppIndexingError` if Azure's worker would refuse
    any function: in Azure the app would then run nothing."""
    # get_functions() refuses to index the same app twice (it remembers the names
    # it saw); a process may host one app several times (tests, restarts).
    if getattr(app, "functions_bindings", None):
        app.functions_bindings = {}
    functions = app.get_functions()
    refusals: dict[str, str] = {}
    for function in functions:
        try:
            check_function(function)
        except WorkerRefusal as e:
            refusals[str(function.get_function_name())] = str(e)
    if refusals:
        raise AppIndexingError(refusals)
    specs: list[FunctionSpec] = []
    errors: dict[str, str] = {}
    for function in functions:
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
    declared = trigger.get("schedule")  # e.g. %HPC_RECONCILE_SCHEDULE%, before it resolves
    for key in ("schedule", "queueName"):
        if isinstance(trigger.get(key), str):
            trigger[key] = resolve_settings(trigger[key])
    if trigger_type == TIMER_TRIGGER:
        try:
            parse_schedule(str(trigger.get("schedule") or ""))
        except ValueError as e:
            # the setting it came from, as a bad setting is named everywhere else (a probe's
            # HPC_RECONCILE_SCHEDULE=bogus read only "NCRONTAB needs six fields")
            names = _SETTING.findall(declared) if isinstance(declared, str) else []
            where = f"app setting {names[0]}: " if names else ""
            raise FunctionLoadError(f"{where}{e}") from None
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
    # Parameters match bindings by name: check_function (the worker's checks) made sure.
    bindings = {trigger["name"]} | {o.name for o in outputs}
    wants_context = (
        CONTEXT_PARAMETER in inspect.signature(user_function).parameters
        and CONTEXT_PARAMETER not in bindings
    )
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
