"""Timer trigger: the reconciler (silent nodes become Unreachable; lost work is requeued)."""

from __future__ import annotations

import azure.functions as func

from functions.context import control

bp = func.Blueprint()

SCHEDULE_SETTING = "HPC_RECONCILE_SCHEDULE"
"""An app setting (NCRONTAB, seconds first): docs/functions.md gives the Azure value and its
cost; local.settings.json.example the local one."""


@bp.timer_trigger(arg_name="timer", schedule=f"%{SCHEDULE_SETTING}%", run_on_startup=False)
def reconcile(timer: func.TimerRequest) -> None:
    control().reconcile()
