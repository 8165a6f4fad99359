"""The Azure Functions entry point (Python v2 programming model).

The same file runs in Azure and under the local host (``python -m devhost``,
started by ``hpc up``): it only assembles the blueprints in ``functions/``.
"""

from __future__ import annotations

import os

import azure.functions as func

from functions import autoscaler, events, http_api, nodes_api, reconciler, scheduler

# Timer schedules name app settings (%...%); give the local run a default.
os.environ.setdefault(reconciler.SCHEDULE_SETTING, reconciler.DEFAULT_SCHEDULE)
os.environ.setdefault(autoscaler.SCHEDULE_SETTING, autoscaler.DEFAULT_SCHEDULE)

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(http_api.bp)
app.register_functions(events.bp)
app.register_functions(scheduler.bp)
app.register_functions(reconciler.bp)
app.register_functions(autoscaler.bp)
app.register_functions(nodes_api.bp)
