"""``hpc job`` and ``hpc task``: views, tables, paging, hold/release/modify, output, cancel.

Against the stand-in control plane of tests/cli_fixtures.py (canned JSON, recorded requests).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

from tests.cli_fixtures import StandIn, canned_job, hpc

# --- reading ------------------------------------------------------------------


def test_view_json_passes_the_api_json_through(api: StandIn) -> None:
    result = hpc("job", "view", "3", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == canned_job(
        3, taskCounts={"Queued": 2, "Running": 1, "Finished": 1}
    )


def test_tables_show_jobs_tasks_and_nodes(api: StandIn) -> None:
    jobs = hpc("job", "list", "--state", "running")
    assert jobs.exit_code == 0 and "job2" in jobs.stdout and "Running" in jobs.stdout
    assert api.requests[-1]["query"] == {"state": "Running", "limit": "100"}
    view = hpc("job", "view", "3")
    assert "Normal" in view.stdout and "Finished 1" in view.stdout
    tasks = hpc("task", "list", "1")
    assert tasks.exit_code == 0 and "onprem-1" in tasks.stdout and "Output" in tasks.stdout
    nodes = hpc("node", "list")
    assert nodes.exit_code == 0 and "OnPremNodes" in nodes.stdout and "Online" in nodes.stdout
    assert hpc("node", "list", "--json").stdout.count('"freeCores": 1') == 1


def test_a_state_that_is_not_one_is_a_bad_option_value_before_any_request(api: StandIn) -> None:
    """A probe's ``--state Runing`` exited 1 with the server's 400; a bad option is exit 2."""
    sent = len(api.requests)
    for command in (("job", "list"), ("task", "list", "1")):
        result = hpc(*command, "--state", "Queued,Runing")
        assert result.exit_code == 2, result.output
        assert "'Runing' is not a state (did you mean Running?)" in result.stderr
        assert "'--state'" in result.stderr and "Traceback" not in result.output
    assert hpc("job", "list", "--state", "nope").exit_code == 2
    empty = hpc("job", "list", "--state", "")  # `--state "$S"` of an unset S: not every job
    assert empty.exit_code == 2 and "'--state': is empty" in empty.stderr
    nodes = hpc("node", "list", "--state", "Onlin")
    assert nodes.exit_code == 2 and "(did you mean Online?)" in nodes.stderr
    assert len(api.requests) == sent
    assert hpc("task", "list", "1", "--state", "queued,FAILED").exit_code == 0
    assert api.requests[-1]["query"]["state"] == "Queued,Failed"


def test_submit_refuses_an_empty_name_as_modify_does(api: StandIn) -> None:
    sent = len(api.requests)
    for name in ("", "  "):
        result = hpc("job", "submit", "--name", name, "--", "true")
        assert result.exit_code == 2 and "--name" in result.stderr, result.output
        assert "leave --name out" in result.stderr
        modify = hpc("job", "modify", "3", "--name", name)  # the same words (it exited 1)
        assert modify.exit_code == 2 and "is empty: give a name" in modify.stderr
    assert len(api.requests) == sent


def test_task_list_shows_a_first_page_unless_asked_for_more(api: StandIn) -> None:
    first = hpc("task", "list", "5")
    assert first.exit_code == 0
    assert first.stdout.count("big[") == 100 and "big[101]" not in first.stdout
    assert "first 100 tasks shown; --limit N or --all for more" in first.stderr
    assert hpc("task", "list", "5", "--limit", "10").stdout.count("big[") == 10
    before = len(api.requests)
    everything = hpc("task", "list", "5", "--all")
    assert everything.stdout.count("big[") == 250 and "first" not in everything.stderr
    pages = [r["query"] for r in api.requests[before:] if r["path"] == "/api/jobs/5/tasks"]
    assert pages == [{"after": "0", "limit": "1000"}]


def test_task_list_all_prints_its_pages_as_one_table(api: StandIn, monkeypatch) -> None:
    """A probe's `hpc task list --all | wc -l` counted a header per page of 1,000."""
    monkeypatch.setattr("hpc.commands.tasks.TASK_PAGE", 100)
    everything = hpc("task", "list", "5", "--all")
    lines = everything.stdout.splitlines()
    assert sum(1 for line in lines if line.split()[:2] == ["ID", "Name"]) == 1
    assert everything.stdout.count("big[") == 250
    rows = [line for line in lines if "big[" in line]
    assert len({line.index("big[") for line in rows}) == 1  # the Name column never moves
    bare = hpc("task", "list", "5", "--all", "--noheader")
    assert len([line for line in bare.stdout.splitlines() if line.strip()]) == 250
    nodes = hpc("node", "list", "--noheader")
    assert nodes.exit_code == 0 and "Groups" not in nodes.stdout


def test_task_list_follows_the_apis_next_and_asks_no_more(api: StandIn, monkeypatch) -> None:
    """Pages continue from the API's ``next`` (the jobs list's contract); whether more are
    left is the last page's ``next``, not one more request."""
    monkeypatch.setattr("hpc.commands.tasks.TASK_PAGE", 100)
    before = len(api.requests)
    first = hpc("task", "list", "5")
    assert "first 100 tasks shown; --limit N or --all for more" in first.stderr
    everything = hpc("task", "list", "5", "--all")
    assert everything.stdout.count("big[") == 250
    pages = [r["query"] for r in api.requests[before:] if r["path"] == "/api/jobs/5/tasks"]
    assert pages == [
        {"after": "0", "limit": "100"},
        {"after": "0", "limit": "100"},
        {"after": "100", "limit": "100"},
        {"after": "200", "limit": "100"},
    ]


def test_job_hold_release_and_modify_call_their_routes(api: StandIn) -> None:
    held = hpc("job", "hold", "3", "--until", "2099-12-01T14:00")
    assert held.exit_code == 0 and "held (hpc job release 3)" in held.stdout
    assert api.requests[-1]["path"] == "/api/jobs/3/hold"
    local = datetime(2099, 12, 1, 14, 0).astimezone().isoformat()  # no zone: local time
    assert api.requests[-1]["body"] == {"until": local}
    assert hpc("job", "hold", "3", "--until", "soon").exit_code == 2
    # as job submit's --begin: now+DURATION (a probe found only ISO 8601 taken here)
    before = datetime.now(UTC)
    assert hpc("job", "hold", "3", "4", "--until", "now+1:00:00").exit_code == 0
    untils = [r["body"]["until"] for r in api.requests[-2:]]
    assert untils[0] == untils[1]  # one time for every job named
    until = datetime.fromisoformat(untils[0].replace("Z", "+00:00"))
    assert timedelta(minutes=59) < until - before < timedelta(minutes=61)
    assert hpc("job", "release", "3").exit_code == 0
    assert api.requests[-1]["path"] == "/api/jobs/3/release"
    modified = hpc("job", "modify", "3", "--priority", "highest")
    assert modified.exit_code == 0
    assert api.requests[-1]["method"] == "PATCH" and api.requests[-1]["body"] == {
        "priority": "Highest"
    }


def test_job_submit_array_and_depends_on(api: StandIn) -> None:
    result = hpc("job", "submit", "--array", "1-100%10", "--depends-on", "4", "--", "echo *")
    assert result.exit_code == 0, result.stderr
    [spec] = api.posted("/api/jobs")[-1:]
    assert spec["maxConcurrent"] == 10 and spec["dependsOn"] == [4]
    assert spec["tasks"] == [
        {"command": "echo *", "cores": 1, "sweep": "1-100", "workDir": os.getcwd()}
    ]
    # Slurm's other array forms: a lone index, and a list (a probe found both refused)
    assert hpc("job", "submit", "--array", "5", "--", "x").exit_code == 0
    assert [t["sweep"] for t in api.posted("/api/jobs")[-1]["tasks"]] == ["5-5"]
    listed = hpc("job", "submit", "--array", "1,3,10-20:5%2", "--", "x *")
    assert listed.exit_code == 0, listed.stderr
    [spec] = api.posted("/api/jobs")[-1:]
    assert [t["sweep"] for t in spec["tasks"]] == ["1-1", "3-3", "10-20:5"]
    assert {t["command"] for t in spec["tasks"]} == {"x *"} and spec["maxConcurrent"] == 2
    bad = hpc("job", "submit", "--array", "1,,3", "--", "x")
    assert bad.exit_code == 2 and "between the commas" in bad.stderr
    # comma-separated, as the group flags (a probe's 1,12 was "not a valid integer")
    both = hpc("job", "submit", "--depends-on", "1,12", "--depends-on", "5", "--", "x")
    assert both.exit_code == 0 and api.posted("/api/jobs")[-1]["dependsOn"] == [1, 12, 5]
    bad = hpc("job", "submit", "--depends-on", "1,x", "--", "x")
    assert bad.exit_code == 2 and "--depends-on" in bad.stderr and "'x'" in bad.stderr


def test_task_view_says_why_a_queued_task_waits(api: StandIn) -> None:
    view = hpc("task", "view", "1", "2")
    assert view.exit_code == 0
    assert "Waiting" in view.stdout and "waiting for 8 free core(s)" in view.stdout
    assert "0:02:00" in view.stdout  # its runtime limit


def test_task_output_prints_the_requested_stream(api: StandIn) -> None:
    assert hpc("task", "output", "1", "1").stdout == "stdout of task\n"
    assert hpc("task", "output", "1", "1", "--stream", "stderr").stdout == "stderr of task\n"


def test_cancel_and_requeue_show_the_new_state(api: StandIn) -> None:
    assert "Canceling" in hpc("job", "cancel", "5").stdout
    assert "Queued" in hpc("job", "requeue", "5").stdout
    assert [r["path"] for r in api.requests] == ["/api/jobs/5/cancel", "/api/jobs/5/requeue"]
