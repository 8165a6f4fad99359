"""The checks Azure's Python worker applies when it indexes a v2 function app.

At start-up the worker (PyPI ``azure-functions-runtime``: ``loader.index_function_app``,
then ``functions.Registry.add_indexed_function`` for each function) refuses functions
whose Python signature does not match their bindings, and in Azure one refused function
fails the whole app's indexing: no function runs, HTTP routes included. The local host
applies the same checks with the same outcome, so an app that starts here also indexes
in Azure; ``tests/test_worker_indexing.py`` runs the worker's own code over the project's
app and over ``tests/signature_cases.py`` and checks that both refuse the same functions.

What is refused (the worker's messages are quoted in each error):

- annotations ``typing.get_type_hints`` cannot resolve (a name imported only under
  ``TYPE_CHECKING``, with ``from __future__ import annotations``);
- an annotation that is neither a class nor a ``typing`` generic: built-in generics
  such as ``list[func.ServiceBusMessage]``, ``X | None``, ``Optional[X]``;
- an annotation the binding's converter does not accept (``func.HttpRequest`` on a
  timer, ``typing.List[func.HttpRequest]``...), for inputs, ``func.Out[...]`` outputs
  and the ``$return`` output (an HTTP function annotated ``-> None`` is refused);
- ``func.Out`` on an input binding, an output binding not annotated ``func.Out``;
- a ``context`` parameter annotated with anything but ``func.Context``;
- a parameter without a binding, a binding without a parameter, ``inout`` bindings;
- a module with more than one top-level ``FunctionApp`` (:func:`find_app`).
"""

from __future__ import annotations

import collections.abc
import inspect
import typing
from types import ModuleType
from typing import Any

import azure.functions as func

IN, OUT, INOUT = 0, 1, 2
"""``BindingInfo.Direction`` of the worker's protocol; ``Binding.direction`` gives these."""
RETURN = "$return"
CONTEXT = "context"


class WorkerRefusal(Exception):
    """The worker would refuse this function (and with it, in Azure, the whole app)."""


class AppIndexingError(Exception):
    """The worker would refuse the app: ``refusals`` maps each refused function to why."""

    def __init__(self, refusals: dict[str, str]) -> None:
        self.refusals = dict(refusals)
        lines = "\n".join(f"  {name}: {why}" for name, why in sorted(self.refusals.items()))
        super().__init__(
            "Azure's Python worker would refuse to index this app (in Azure one refused"
            f" function stops every function, HTTP routes included):\n{lines}"
        )


def find_app(module: ModuleType) -> func.FunctionRegister:
    """The module's one top-level FunctionApp, found as the worker finds it."""
    apps = [v for v in vars(module).values() if isinstance(v, func.FunctionRegister)]
    if len(apps) > 1:
        raise AppIndexingError(
            {module.__name__: "more than one top-level function app instance is defined"}
        )
    if not apps:
        raise AppIndexingError({module.__name__: "no top-level function app instance"})
    return apps[0]


def check_function(function: Any) -> None:
    """Raise :class:`WorkerRefusal` where ``Registry.add_indexed_function`` would refuse
    ``function`` (an ``azure.functions`` decorated Function)."""
    user_function = function.get_user_function()
    try:
        hints = typing.get_type_hints(user_function)
    except Exception as e:
        raise WorkerRefusal(
            f"its annotations cannot be resolved at run time ({type(e).__name__}: {e});"
            " the worker resolves them with typing.get_type_hints"
        ) from None
    params = dict(inspect.signature(user_function).parameters)
    bound: dict[str, Any] = {}
    return_type: str | None = None
    for binding in function.get_bindings():
        direction = binding.direction
        if direction == INOUT:
            raise WorkerRefusal('"inout" bindings are not supported')
        if binding.name == RETURN:
            if direction != OUT:
                raise WorkerRefusal('"$return" binding must have direction set to "out"')
            return_type = return_type or binding.type
        else:
            bound[binding.name] = binding

    if CONTEXT in params and CONTEXT not in bound:
        params.pop(CONTEXT)
        if CONTEXT in hints:
            annotation = hints[CONTEXT]
            if not (isinstance(annotation, type) and annotation.__name__ == "Context"):
                raise WorkerRefusal(
                    'the "context" parameter is expected to be of type'
                    f" azure.functions.Context, got {annotation!r}"
                )
    unbound = set(params) - set(bound)
    if unbound:
        raise WorkerRefusal(
            f"parameters {sorted(unbound)} have no binding (the worker binds by name:"
            " 'declared in Python but not in the function decorators')"
        )
    missing = set(bound) - set(params)
    if missing:
        raise WorkerRefusal(f"bindings {sorted(missing)} have no parameter of that name")

    for name in params:
        if name in hints:
            _check_parameter(name, hints[name], bound[name])
    if return_type is not None and "return" in hints:
        _check_return(hints["return"], return_type)


def _check_parameter(name: str, annotation: Any, binding: Any) -> None:
    is_out = _is_out(annotation)
    pytype = annotation
    if is_out:
        args = typing.get_args(annotation)
        if len(args) != 1:
            raise WorkerRefusal(f"binding {name} has invalid Out annotation {annotation!r}")
        pytype = args[0]
    if not isinstance(pytype, type) and not _is_generic(pytype):
        raise WorkerRefusal(
            f"binding {name} has invalid non-type annotation {annotation!r}"
            " (use a class, or typing.List[...] rather than list[...])"
        )
    binding_out = binding.direction == OUT
    if binding_out and not is_out:
        raise WorkerRefusal(
            f'binding {name} is declared to have the "out" direction, but its annotation'
            " in Python is not a subclass of azure.functions.Out"
        )
    if is_out and not binding_out:
        raise WorkerRefusal(
            f'binding {name} is declared to have the "in" direction, but its annotation'
            " is azure.functions.Out in Python"
        )
    kind = "generic" if pytype in (str, bytes) else binding.type
    converter = _converter(kind)
    try:
        accepted = (
            converter.check_output_type_annotation(pytype)
            if is_out
            else converter.check_input_type_annotation(pytype)
        )
    except TypeError as e:  # issubclass() of a generic: the worker fails the same way
        accepted, why = False, f" ({e})"
    else:
        why = ""
    if not accepted:
        raise WorkerRefusal(
            f'type of {name} binding "{binding.type}" does not match its Python'
            f" annotation {_name(pytype)}{why}"
        )


def _check_return(annotation: Any, binding_type: str) -> None:
    if _is_out(annotation):
        raise WorkerRefusal("return annotation should not be azure.functions.Out")
    if not isinstance(annotation, type):
        raise WorkerRefusal(f"has invalid non-type return annotation {annotation!r}")
    if not _converter(binding_type).check_output_type_annotation(annotation):
        raise WorkerRefusal(
            f'Python return annotation "{_name(annotation)}" does not match binding type'
            f' "{binding_type}"'
        )


def _is_out(annotation: Any) -> bool:
    origin = typing.get_origin(annotation) if _is_generic(annotation) else None
    target = origin if origin is not None else annotation
    return isinstance(target, type) and target.__name__ == "Out"


def _is_generic(annotation: Any) -> bool:
    """The worker's ``typing_inspect.is_generic_type``: a Generic subclass or a
    ``typing`` alias (``typing.List[X]``), not a Union, Tuple, ClassVar or Callable, and not
    a built-in alias (``list[X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, typing.Generic):  # type: ignore[arg-type]
        return True
    aliases = (typing._GenericAlias, typing._SpecialGenericAlias)  # type: ignore[attr-defined]
    return isinstance(annotation, aliases) and annotation.__origin__ not in (
        typing.Union,
        tuple,
        typing.ClassVar,
        collections.abc.Callable,
    )


class _Generic:
    """The worker's GenericBinding: what any binding without a converter accepts."""

    @staticmethod
    def check_input_type_annotation(pytype: type) -> bool:
        return issubclass(pytype, str | bytes)

    @staticmethod
    def check_output_type_annotation(pytype: type) -> bool:
        return issubclass(pytype, str | bytes | bytearray)


def _converter(binding_type: str) -> Any:
    return func.get_binding_registry().get(binding_type) or _Generic


def _name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or repr(annotation)
