"""``--state`` of ``hpc job list``, ``hpc task list`` and ``hpc node list``: state names in
any case, checked here so that a misspelt one is a bad option value (exit 2) before any
request."""

from __future__ import annotations

import difflib

import typer

from shared.domain.specvalues import quoted
from shared.domain.states import JobState, NodeState, TaskState

JOB_STATES = tuple(s.value for s in JobState)
TASK_STATES = tuple(s.value for s in TaskState)
NODE_STATES = (*(s.value for s in NodeState), "Drained")
"""Drained: Draining with no task (the API's filter)."""


def normalise_states(value: str | None, names: tuple[str, ...]) -> str | None:
    """Normalise the case of known state names (``running`` -> ``Running``); an unknown one
    is a bad option value (exit 2, the names taken and the closest), as click says of a
    choice, not the server's 400 after a request (a probe's ``--state Runing`` exited 1)."""
    if value is None:
        return None
    if not value.strip():  # `--state "$S"` of an unset S: not every job (a third probe)
        raise typer.BadParameter(
            f"is empty; give one or more of {', '.join(names)}, comma-separated",
            param_hint="'--state'",
        )
    by_lower = {n.lower(): n for n in names}
    out = []
    for given in (s.strip() for s in value.split(",")):
        if given.lower() not in by_lower:
            close = difflib.get_close_matches(given.lower(), list(by_lower), n=1)
            hint = f" (did you mean {by_lower[close[0]]}?)" if close else ""
            raise typer.BadParameter(
                f"{quoted(given)} is not a state{hint}; give one or more of "
                f"{', '.join(names)}, comma-separated",
                param_hint="'--state'",
            )
        out.append(by_lower[given.lower()])
    return ",".join(out)
