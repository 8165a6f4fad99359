"""Jobs by owner: ``GET /api/jobs?owner=NAME`` and ``GET /api/me`` on the served function
app, and ``hpc job list --owner NAME`` / ``--mine`` on it (Slurm's ``squeue -u USER`` and
``squeue --me``, HPC Pack's ``job list /owner:``). Job states are visible to every user,
so anyone may list anyone's jobs; a name that is no user name is refused saying what one
is, and an unknown user's list is empty."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.agent_double import AgentDouble
from tests.app_fixtures import ServedApp, served_app
from tests.cli_fixtures import assert_one_error_line, hpc


@dataclass
class Cluster:
    app: ServedApp
    admin: httpx.Client
    tokens: dict[str, str]
    """Each user's token (alice and bob, role user)."""
    jobs: dict[str, list[int]]
    """Each owner's job ids, oldest first: admin 2, alice 3, bob 1."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Every job stays Queued: the one node is drained."""
    with served_app(tmp_path_factory.mktemp("owners")) as app, app.client() as admin:
        assert AgentDouble(app.cp, "n1").register().accepted
        assert admin.post("/api/nodes/n1/drain").status_code == 200
        tokens = {}
        for name in ("alice", "bob"):
            added = admin.post("/api/users", json={"name": name})
            assert added.status_code == 201, added.text
            tokens[name] = added.json()["token"]
        jobs: dict[str, list[int]] = {"admin": [], "alice": [], "bob": []}
        for owner in ("admin", "alice", "bob", "alice", "admin", "alice"):
            with app.client(tokens.get(owner)) as client:
                answer = client.post("/api/jobs", json={"command": "true"})
                assert answer.status_code == 201, answer.text
                jobs[owner].append(answer.json()["id"])
        yield Cluster(app, admin, tokens, jobs)


def _ids(answer: httpx.Response) -> list[int]:
    assert answer.status_code == 200, answer.text
    return [j["id"] for j in answer.json()["jobs"]]


# --- the API ------------------------------------------------------------------------------


def test_jobs_of_one_owner_newest_first_to_any_user(cluster: Cluster) -> None:
    alice = cluster.jobs["alice"][::-1]
    assert _ids(cluster.admin.get("/api/jobs", params={"owner": "alice"})) == alice
    with cluster.app.client(cluster.tokens["bob"]) as bob:  # not hers: states are no secret
        assert _ids(bob.get("/api/jobs", params={"owner": "alice"})) == alice
        assert _ids(bob.get("/api/jobs", params={"owner": "admin"})) == cluster.jobs["admin"][::-1]


def test_jobs_of_one_owner_page_with_next_and_take_a_state(cluster: Cluster) -> None:
    alice = cluster.jobs["alice"][::-1]
    first = cluster.admin.get("/api/jobs", params={"owner": "alice", "limit": 2}).json()
    assert [j["id"] for j in first["jobs"]] == alice[:2] and first["next"] == alice[1]
    params = {"owner": "alice", "limit": 2, "before": first["next"]}
    last = cluster.admin.get("/api/jobs", params=params).json()
    assert [j["id"] for j in last["jobs"]] == alice[2:] and last["next"] is None
    queued = cluster.admin.get("/api/jobs", params={"owner": "bob", "state": "queued"})
    assert _ids(queued) == cluster.jobs["bob"]
    assert _ids(cluster.admin.get("/api/jobs", params={"owner": "bob", "state": "Failed"})) == []


def test_an_unknown_owner_lists_nothing(cluster: Cluster) -> None:
    answer = cluster.admin.get("/api/jobs", params={"owner": "carol"})
    assert _ids(answer) == [] and answer.json()["next"] is None


@pytest.mark.parametrize("name", ["", "a b", "9lives", "x" * 33, "al/ice"])
def test_an_owner_that_is_no_user_name_is_refused_saying_what_a_name_is(
    cluster: Cluster, name: str
) -> None:
    answer = cluster.admin.get("/api/jobs", params={"owner": name})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error.startswith("owner ") and "is not a user name" in error
    assert "a letter or _ first" in error and "32 characters at most" in error


def test_me_says_who_the_token_signs_in_as(cluster: Cluster) -> None:
    assert cluster.admin.get("/api/me").json() == {"name": "admin", "role": "admin"}
    with cluster.app.client(cluster.tokens["bob"]) as bob:
        assert bob.get("/api/me").json() == {"name": "bob", "role": "user"}
    with httpx.Client(base_url=cluster.app.url) as anonymous:
        assert anonymous.get("/api/me").status_code == 401


# --- the CLI ------------------------------------------------------------------------------


@pytest.fixture
def as_user(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI pointed at the cluster with alice's token."""
    monkeypatch.setenv("HPC_API_URL", cluster.app.url)
    monkeypatch.setenv("HPC_TOKEN", cluster.tokens["alice"])
    yield


def _listed(*args: str) -> list[int]:
    result = hpc("job", "list", *args, "--json")
    assert result.exit_code == 0, result.output
    return [j["id"] for j in json.loads(result.stdout)["jobs"]]


def test_job_list_owner_lists_that_users_jobs(cluster: Cluster, as_user: None) -> None:
    assert _listed("--owner", "bob") == cluster.jobs["bob"]
    assert _listed("--owner", "admin", "--limit", "1") == cluster.jobs["admin"][-1:]
    table = hpc("job", "list", "--owner", "bob")
    assert table.exit_code == 0 and str(cluster.jobs["bob"][0]) in table.stdout
    none = hpc("job", "list", "--owner", "carol")
    assert none.exit_code == 0 and "no jobs of carol" in none.stderr


def test_job_list_mine_lists_the_callers_jobs(cluster: Cluster, as_user: None) -> None:
    assert _listed("--mine") == cluster.jobs["alice"][::-1]
    assert _listed("--mine", "--state", "Queued") == cluster.jobs["alice"][::-1]


def test_job_list_owner_and_mine_together_is_a_usage_error(cluster: Cluster, as_user: None) -> None:
    result = hpc("job", "list", "--owner", "bob", "--mine")
    assert result.exit_code == 2
    assert_one_error_line(result, "--owner", "--mine")


def test_job_list_owner_that_is_no_user_name_says_what_a_name_is(
    cluster: Cluster, as_user: None
) -> None:
    result = hpc("job", "list", "--owner", "a b")
    assert_one_error_line(result, "is not a user name", "a letter or _ first")


def test_job_list_mine_of_the_admin_token_lists_the_admins_jobs(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPC_API_URL", cluster.app.url)
    monkeypatch.setenv("HPC_TOKEN", cluster.app.token)
    assert _listed("--mine") == cluster.jobs["admin"][::-1]
