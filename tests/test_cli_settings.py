"""A setting the environment gives a bad value is one line naming the variable as the user spelt
it, the value and what is expected, not pydantic's multi-line dump (found on a live cluster:
``HPC_AGENT_RUN_AS_OWNER=maybe hpc job list`` broke every command with it).

Against the stand-in control plane of tests/cli_fixtures.py: nothing is sent.
"""

from __future__ import annotations

import pytest

from hpc.errors import settings_problem
from tests.cli_fixtures import StandIn, assert_one_error_line, hpc


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("HPC_AGENT_RUN_AS_OWNER", "maybe", "expected true or false"),
        ("HPC_HEARTBEAT_INTERVAL_S", "abc", "not a number"),
        ("hpc_heartbeat_timeout_s", "soon", "not a number"),  # named as the user spells it
        ("HPC_SCHEDULER_WINDOW", "1.5", "not a whole number"),
        ("HPC_MAX_OUTPUT_BYTES", "0", "must be at least 1"),
        ("HPC_STORE", "mysql", "expected 'sqlite' or 'cosmos'"),
        ("HPC_AZURE_TAGS", "[1]", "expected a JSON object"),
        ("HPC_AZURE_TAGS", "{bad", "not JSON"),
        # found by the second live probe: each was taken and left a cluster that never works
        ("HPC_HEARTBEAT_TIMEOUT_S", "-1", "must be more than 0"),
        ("HPC_HEARTBEAT_INTERVAL_S", "0", "must be more than 0"),
        ("HPC_HEARTBEAT_INTERVAL_S", "nan", ""),
        ("HPC_SCHEDULER_WINDOW", "0", "must be at least 1"),
        ("HPC_MAX_TASKS_PER_JOB", "-5", "must be at least 1"),
        ("HPC_MAX_BODY_BYTES", "0", "must be at least 1024"),
        # a fault probe: taken, then every task's output upload failed (OutOfRangeInput)
        ("HPC_BLOB_CONTAINER", "ab", "not a Blob container name: 3-63 lowercase letters"),
        ("HPC_BLOB_CONTAINER", "Output", "not a Blob container name"),
        ("HPC_BLOB_CONTAINER", "a--b", "not a Blob container name"),
        ("HPC_BLOB_CONTAINER", "-abc", "not a Blob container name"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable_its_value_and_what_is_expected(
    api: StandIn, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    result = hpc("job", "list")
    assert_one_error_line(result, f"error: {variable}={value}: {expected}")
    assert result.exit_code == 1
    assert "pydantic" not in result.stderr and "ValidationError" not in result.stderr
    assert api.requests == []


def test_every_bad_setting_is_named_in_the_one_line(
    api: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPC_AGENT_RUN_AS_OWNER", "maybe")
    monkeypatch.setenv("HPC_HEARTBEAT_INTERVAL_S", "abc")
    result = hpc("node", "list")
    assert_one_error_line(
        result,
        "HPC_HEARTBEAT_INTERVAL_S=abc: not a number",
        "HPC_AGENT_RUN_AS_OWNER=maybe: expected true or false",
    )


def test_a_bad_setting_is_named_even_with_hpc_debug(
    api: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPC_DEBUG", "1")
    monkeypatch.setenv("HPC_HEARTBEAT_INTERVAL_S", "abc")
    assert_one_error_line(hpc("job", "list"), "HPC_HEARTBEAT_INTERVAL_S=abc: not a number")


def test_other_errors_are_not_taken_for_a_bad_setting() -> None:
    from pydantic import BaseModel, ValidationError

    class Other(BaseModel):
        n: int

    with pytest.raises(ValidationError) as e:
        Other(n="x")  # type: ignore[arg-type]
    assert settings_problem(e.value) is None
    assert settings_problem(ValueError("x")) is None


def test_a_heartbeat_timeout_not_longer_than_the_interval_is_refused(
    api: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPC_HEARTBEAT_TIMEOUT_S", "2")
    monkeypatch.setenv("HPC_HEARTBEAT_INTERVAL_S", "5")
    result = hpc("job", "list")
    assert_one_error_line(result, "HPC_HEARTBEAT_TIMEOUT_S (2) must be longer than")
    assert "{" not in result.stderr and "Value error" not in result.stderr  # (a probe: a dict)
    assert api.requests == []
