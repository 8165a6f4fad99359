"""Timer trigger: the autoscaler (grow and shrink managed node groups; poll VM operations)."""

from __future__ import annotations

import azure.functions as func

from functions.context import control

bp = func.Blueprint()

SCHEDULE_SETTING = "HPC_AUTOSCALE_SCHEDULE"
"""An app setting (NCRONTAB, seconds first): docs/functions.md gives the Azure value and its
cost; local.settings.json.example the local one."""


@bp.timer_trigger(arg_name="timer", schedule=f"%{SCHEDULE_SETTING}%", run_on_startup=False)
def autoscale(timer: func.TimerRequest) -> None:
    control().autoscale()
