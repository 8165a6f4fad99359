"""The Azure Functions entry point (Python v2 programming model).

The same file runs in Azure and under the local host (``python -m devhost``,
started by ``hpc up``): it only assembles the blueprints in ``functions/``.
"""

from __future__ import annotations

import azure.functions as func

from functions import (
    autoscaler,
    dashboard,
    events,
    http_api,
    nodes_api,
    reconciler,
    scheduler,
    tasks_api,
    templates_api,
    users_api,
)
from shared.wiring import quiet_azure_sdk_logs

# Timer schedules are app settings (%HPC_RECONCILE_SCHEDULE%, %HPC_AUTOSCALE_SCHEDULE%):
# set in Azure's app settings (infra/), locally in local.settings.json(.example), which
# the local host reads. Setting them here would be too late for Azure's host.

quiet_azure_sdk_logs()  # their INFO lines are one per HTTP request (shared/wiring.py)

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(http_api.bp)
app.register_functions(events.bp)
app.register_functions(scheduler.bp)
app.register_functions(reconciler.bp)
app.register_functions(autoscaler.bp)
app.register_functions(nodes_api.bp)
app.register_functions(tasks_api.bp)
app.register_functions(templates_api.bp)
app.register_functions(users_api.bp)
app.register_functions(dashboard.bp)
