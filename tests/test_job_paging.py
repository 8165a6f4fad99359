"""Job listings page with a continuation (``before`` / ``next``), never an offset: the HTTP
API of the real function_app.py served in this process, and ``hpc job list`` on it; and the
use cases that walk every task of a job do it a page at a time."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hpc.cli import app
from shared.usecases import cancel
from tests.agent_double import AgentDouble
from tests.app_fixtures import served_app


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with served_app(tmp_path_factory.mktemp("paging")) as app:
        AgentDouble(app.cp, "n1", cores=4).register()
        with app.client() as client:
            answers = [client.post("/api/jobs", json={"command": "true"}) for _ in range(5)]
            assert all(a.status_code == 201 for a in answers), answers[0].text
            ids = [a.json()["id"] for a in answers]
            yield client, app.cp, ids, {"HPC_API_URL": app.url, "HPC_TOKEN": app.token}


def test_the_job_list_pages_with_next_and_before(api) -> None:
    client, _, ids, _ = api
    first = client.get("/api/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in first["jobs"]] == [ids[4], ids[3]]
    assert first["next"] == ids[3]
    second = client.get("/api/jobs", params={"limit": 2, "before": first["next"]}).json()
    assert [j["id"] for j in second["jobs"]] == [ids[2], ids[1]]
    last = client.get("/api/jobs", params={"limit": 2, "before": second["next"]}).json()
    assert [j["id"] for j in last["jobs"]] == [ids[0]] and last["next"] is None
    whole = client.get("/api/jobs", params={"limit": 5}).json()
    assert len(whole["jobs"]) == 5 and whole["next"] is None  # no empty page to fetch


def test_a_bad_continuation_is_a_400_that_says_what_to_send(api) -> None:
    client, _, _, _ = api
    r = client.get("/api/jobs", params={"before": "abc"})
    assert r.status_code == 400 and "before must be a whole number" in r.json()["error"]
    r = client.get("/api/jobs", params={"before": "0"})
    assert r.status_code == 400 and "before must be at least 1" in r.json()["error"]


def hpc(api, monkeypatch, *args: str):
    for name, value in api[3].items():
        monkeypatch.setenv(name, value)  # (an autouse fixture clears them per test)
    return CliRunner().invoke(app, list(args))


def test_hpc_job_list_shows_a_first_page_unless_asked_for_more(api, monkeypatch) -> None:
    _, _, ids, _ = api
    some = hpc(api, monkeypatch, "job", "list", "--limit", "2", "--json")
    assert some.exit_code == 0, some.output
    data = json.loads(some.stdout)
    assert [j["id"] for j in data["jobs"]] == [ids[4], ids[3]] and data["next"] == ids[3]
    table = hpc(api, monkeypatch, "job", "list", "--limit", "2")
    assert table.exit_code == 0 and "--limit N or --all for more" in table.stderr


def test_hpc_job_list_all_follows_the_continuation(api, monkeypatch) -> None:
    _, _, ids, _ = api
    monkeypatch.setattr("hpc.commands.jobs.JOB_PAGE", 2)  # three pages of 2, 2, 1
    every = hpc(api, monkeypatch, "job", "list", "--all", "--json")
    assert every.exit_code == 0, every.output
    assert [j["id"] for j in json.loads(every.stdout)["jobs"]] == ids[::-1]


def test_hpc_job_list_all_prints_one_table_and_noheader_none(api, monkeypatch) -> None:
    """A probe's pipes counted a header per page."""
    _, _, ids, _ = api
    monkeypatch.setattr("hpc.commands.jobs.JOB_PAGE", 2)  # three pages
    every = hpc(api, monkeypatch, "job", "list", "--all")
    lines = [line for line in every.stdout.splitlines() if line.strip()]
    assert [line.split()[0] for line in lines] == ["ID", *map(str, ids[::-1])]
    bare = hpc(api, monkeypatch, "job", "list", "--all", "--noheader")
    assert [line.split()[0] for line in bare.stdout.splitlines() if line.strip()] == [
        *map(str, ids[::-1])
    ]


def test_cancel_walks_the_tasks_of_a_job_page_by_page(api, monkeypatch) -> None:
    client, cp, _, _ = api
    monkeypatch.setattr(cancel, "PAGE", 3)
    job_id = client.post(
        "/api/jobs", json={"tasks": [{"command": f"echo {i}"} for i in range(8)]}
    ).json()["id"]
    calls: list[int] = []
    real = cp.store.list_tasks

    def spy(*args, **kwargs):
        calls.append(kwargs["limit"])
        return real(*args, **kwargs)

    monkeypatch.setattr(cp.store, "list_tasks", spy)
    job = cp.cancel_job(job_id)
    assert job.state.value == "Canceled" and job.task_counts == {"Canceled": 8}
    assert calls and max(calls) <= 3


def test_the_control_planes_own_walks_over_jobs_read_every_page(tmp_path, monkeypatch):
    """The reconciler and the "jobs ahead" reason read every queued job a page at a time:
    with pages of 3, seven jobs are all seen, newest first, each once."""
    from shared.domain.states import JobState
    from shared.usecases import deps as deps_module
    from tests.test_control import Clock, make_cp, register

    cp = make_cp(tmp_path, Clock())
    register(cp, "n1")
    ids = [cp.submit({"command": "x"}).id for _ in range(7)]
    monkeypatch.setattr(deps_module, "JOB_PAGE", 3)
    seen = [j.id for j in deps_module.all_jobs(cp.store, [JobState.QUEUED])]
    assert seen == sorted(ids, reverse=True)
