"""Function signatures Azure's Python worker accepts (``accepted_*``) or refuses (``refused_*``).

Indexed twice by tests/test_worker_indexing.py: by the worker's own code (in the worker
venv) and by the local host (devhost.indexing); both must refuse exactly the ``refused_*``
functions. Nothing here runs. Annotations are strings (``from __future__ import
annotations``), as in the project, so the worker resolves them with
``typing.get_type_hints``.
"""

from __future__ import annotations

import typing
from typing import TYPE_CHECKING

import azure.functions as func

if TYPE_CHECKING:
    from decimal import Decimal as OnlyForTypeCheckers

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
SB = "ServiceBusConnection"


# --- accepted ------------------------------------------------------------------------


@app.route(route="a/http")
def accepted_http(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("ok")


@app.route(route="a/bare")
def accepted_unannotated(req):  # type: ignore[no-untyped-def]
    return func.HttpResponse("ok")


@app.route(route="a/context")
async def accepted_async_with_context(
    req: func.HttpRequest, context: func.Context
) -> func.HttpResponse:
    return func.HttpResponse(context.function_name)


@app.route(route="a/text")
def accepted_text_response(req: func.HttpRequest) -> str:
    return "ok"


@app.service_bus_queue_output(arg_name="out", queue_name="q-out", connection=SB)
@app.route(route="a/out")
def accepted_output(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
    return func.HttpResponse(status_code=202)


@app.service_bus_queue_trigger(arg_name="batch", queue_name="q1", connection=SB, cardinality="many")
def accepted_batch(batch: typing.List[func.ServiceBusMessage]) -> None:  # noqa: UP006
    pass


@app.service_bus_queue_trigger(
    arg_name="kicks", queue_name="q2", connection=SB, is_sessions_enabled=True, cardinality="many"
)
def accepted_session_batch(kicks: typing.List[func.ServiceBusMessage]) -> None:  # noqa: UP006
    pass


@app.service_bus_queue_trigger(arg_name="msg", queue_name="q3", connection=SB)
def accepted_message(msg: func.ServiceBusMessage) -> None:
    pass


@app.service_bus_queue_trigger(arg_name="body", queue_name="q4", connection=SB)
def accepted_body_as_text(body: str) -> None:
    pass


@app.timer_trigger(arg_name="timer", schedule="0 0 * * * *")
def accepted_timer(timer: func.TimerRequest) -> None:
    pass


# --- refused -------------------------------------------------------------------------


@app.service_bus_queue_trigger(arg_name="batch", queue_name="q5", connection=SB, cardinality="many")
def refused_builtin_list(batch: list[func.ServiceBusMessage]) -> None:
    pass


@app.service_bus_queue_trigger(arg_name="msg", queue_name="q6", connection=SB)
def refused_union(msg: func.ServiceBusMessage | None) -> None:
    pass


@app.service_bus_queue_trigger(arg_name="msg", queue_name="q7", connection=SB)
def refused_optional(msg: typing.Optional[func.ServiceBusMessage]) -> None:  # noqa: UP045
    pass


@app.timer_trigger(arg_name="timer", schedule="0 0 * * * *")
def refused_wrong_type(timer: func.HttpRequest) -> None:
    pass


@app.route(route="r/list")
def refused_http_as_list(req: typing.List[func.HttpRequest]) -> func.HttpResponse:  # noqa: UP006
    return func.HttpResponse("no")


@app.route(route="r/none")
def refused_http_returning_none(req: func.HttpRequest) -> None:
    pass


@app.route(route="r/unresolved")
def refused_unresolved_annotation(req: OnlyForTypeCheckers) -> func.HttpResponse:
    return func.HttpResponse("no")


@app.service_bus_queue_trigger(arg_name="msg", queue_name="q8", connection=SB)
def refused_out_on_an_input(msg: func.Out[str]) -> None:
    pass


@app.service_bus_queue_output(arg_name="out", queue_name="q-out", connection=SB)
@app.route(route="r/out")
def refused_output_not_out(req: func.HttpRequest, out: str) -> func.HttpResponse:
    return func.HttpResponse("no")


@app.route(route="r/context")
def refused_context_type(req: func.HttpRequest, context: str) -> func.HttpResponse:
    return func.HttpResponse("no")


@app.route(route="r/extra")
def refused_unbound_parameter(req: func.HttpRequest, extra: str) -> func.HttpResponse:
    return func.HttpResponse("no")


@app.service_bus_queue_trigger(arg_name="msg", queue_name="q9", connection=SB)
def refused_misnamed_trigger(message: func.ServiceBusMessage) -> None:
    pass


REFUSED = sorted(name for name in dict(globals()) if name.startswith("refused_"))
ACCEPTED = sorted(name for name in dict(globals()) if name.startswith("accepted_"))
