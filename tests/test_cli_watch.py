"""``hpc job watch``: follows a job to its end; the exit code says how it ended.

Against the stand-in control plane of tests/cli_fixtures.py (canned JSON, recorded requests).
"""

from __future__ import annotations

import json

from tests.cli_fixtures import StandIn, assert_one_error_line, hpc

# --- watch --------------------------------------------------------------------


def test_watch_exits_0_when_the_job_finishes(api: StandIn) -> None:
    api.job_states[1] = ["Queued", "Running", "Finished"]
    result = hpc("job", "watch", "1")
    assert result.exit_code == 0, result.output
    assert "Finished" in result.stdout
    assert len([r for r in api.requests if r["path"] == "/api/jobs/1"]) == 3
    # Not a terminal: one plain progress line per change instead of a live bar.
    assert "job 1 Queued:" in result.output and "job 1 Running:" in result.output
    assert "━" not in result.output  # no bar, not even its last frame (a CI log read one)


def test_watch_exits_1_when_the_job_fails(api: StandIn) -> None:
    api.job_states[2] = ["Running", "Failed"]
    result = hpc("job", "watch", "2", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["state"] == "Failed"
    assert "Traceback" not in result.output


def test_watch_of_an_unknown_job_fails_in_one_line(api: StandIn) -> None:
    assert_one_error_line(hpc("job", "watch", "404"), "job 404 not found")
