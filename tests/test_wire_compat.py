"""Rolling upgrades: the control plane may be upgraded before its agents. Messages refuse
unknown fields, so the wire form leaves out every field at its default: an agent that
predates a field still reads every assignment that does not use it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Literal

import pytest
from pydantic import ValidationError

from shared.domain.messages import (
    ASSIGNMENT,
    EndedAttempt,
    Heartbeat,
    Message,
    RegisterNode,
    RunTask,
)


class RunTaskBeforeResources(Message):
    """RunTask as an agent built before ``cores``, ``stdout`` and ``stderr`` existed knew it."""

    kind: Literal["run"] = "run"
    incarnation: int
    job_id: int
    task_id: int
    attempt: int
    command: str
    runtime_limit_s: int | None = None
    work_dir: str | None = None
    env: dict[str, str] = {}


def _run(**extra: object) -> RunTask:
    base: dict[str, object] = {
        "incarnation": 3,
        "job_id": 7,
        "task_id": 1,
        "attempt": 1,
        "command": "echo hi",
    }
    return RunTask.model_validate({**base, **extra})


def test_an_older_agent_reads_an_assignment_that_uses_no_newer_field() -> None:
    old = RunTaskBeforeResources.model_validate_json(_run().to_bytes())
    assert (old.job_id, old.task_id, old.attempt, old.command) == (7, 1, 1, "echo hi")


@pytest.mark.parametrize(
    "newer", [{"cores": 4}, {"stdout": "out.%j.txt"}, {"stderr": "e"}, {"owner": "alice"}]
)
def test_an_assignment_that_uses_a_newer_field_is_still_refused_by_an_older_agent(
    newer: dict[str, object],
) -> None:
    """Leaving a used field out would run the task wrongly: the old agent must refuse it."""
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        RunTaskBeforeResources.model_validate_json(_run(**newer).to_bytes())


@pytest.mark.parametrize(
    "message",
    [
        _run(),
        _run(cores=4, stdout="o", stderr="e", runtime_limit_s=60, env={"A": "1"}),
        _run(owner="alice"),
        Heartbeat(node="n1", incarnation=2, seq=0, free_cores=0, running=["7.1.1"]),
        Heartbeat(
            node="n1",
            incarnation=2,
            seq=5,
            free_cores=2,
            ended=[EndedAttempt(key="7.1.1", exit_code=None, canceled=False)],
        ),
        RegisterNode(
            node="n1",
            groups=[],
            cores=2,
            agent_id="agent-123",
            host_id="host-1234",
            started_at=datetime(2026, 1, 1, tzinfo=UTC),
        ),
    ],
)
def test_every_message_reads_back_equal_from_its_wire_form(message: Message) -> None:
    assert type(message).model_validate_json(message.to_bytes()) == message


def test_the_wire_form_keeps_the_kind_and_required_nulls_and_drops_defaults() -> None:
    body = json.loads(_run().to_bytes())
    assert body["kind"] == "run"
    assert not {"cores", "stdout", "stderr", "runtimeLimitS", "workDir", "env", "owner"} & (
        body.keys()
    )
    ended = json.loads(EndedAttempt(key="7.1.1", exit_code=None).to_bytes())
    assert ended == {"key": "7.1.1", "exitCode": None}  # required, so kept even when null
    assert isinstance(ASSIGNMENT.validate_json(_run().to_bytes()), RunTask)
