"""Memory as a node filter in the ``hpc`` CLI: ``hpc job submit --min-memory``, the request
in ``hpc job view`` / ``hpc task view``, a node's memory in ``hpc node list`` / ``view``, and
a managed group's ``--node-memory``. On the served function app (the real rules), its nodes
played by tests/test_memory_edges.py's MemoryAgent; the sent spec on the stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hpc.render import memory_request
from tests.app_fixtures import served_app
from tests.cli_fixtures import StandIn, assert_one_error_line, hpc
from tests.test_memory_edges import G, MemoryAgent


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[httpx.Client]:
    """n1 with 16 GB, n2 whose agent says nothing of its memory, both in OnPremNodes."""
    with served_app(tmp_path / "home") as app, app.client() as client:
        for name, memory_mb in (("n1", 16 * G), ("n2", None)):
            assert MemoryAgent(app.cp, name, memory_mb=memory_mb).register().accepted
        monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
        monkeypatch.setenv("HPC_TOKEN", app.token)
        yield client


def row(output: str, first: str) -> list[str]:
    """The words of the table row (or detail line) that starts with ``first``."""
    [line] = [line for line in output.splitlines() if line.split()[:1] == [first]]
    return line.split()


# --- submit -----------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "mb"), [("4G", 4096), ("512M", 512), ("2048", 2048)])
def test_min_memory_is_sent_as_the_tasks_mb(api: StandIn, given: str, mb: int) -> None:
    result = hpc("job", "submit", "--min-memory", given, "--", "true")
    assert result.exit_code == 0, result.output
    assert api.posted("/api/jobs")[0]["tasks"][0]["minMemoryMb"] == mb


@pytest.mark.parametrize("given", ["4X", "lots", "0", "-2G", "65T"])
def test_a_bad_min_memory_is_one_error_line_not_a_traceback(api: StandIn, given: str) -> None:
    result = hpc("job", "submit", "--min-memory", given, "--", "true")
    assert result.exit_code == 2
    assert_one_error_line(result, "'--min-memory'", "is not a size: give e.g. 4G, 512M")
    assert api.posted("/api/jobs") == []


def test_min_memory_beside_a_file_is_the_jobs(api: StandIn, tmp_path: Path) -> None:
    spec = tmp_path / "job.json"
    spec.write_text('{"command": "true", "minMemoryMb": "4G"}')
    result = hpc("job", "submit", "--file", str(spec), "--min-memory", "8G")
    assert result.exit_code == 0, result.output
    assert api.posted("/api/jobs")[-1]["minMemoryMb"] == 8 * 1024  # over the file's


def test_the_request_is_shown_by_job_and_task_view(cluster: httpx.Client) -> None:
    submitted = hpc("job", "submit", "--min-memory", "8G", "--sweep", "1-3", "--", "true")
    assert submitted.exit_code == 0, submitted.output
    job = submitted.stdout.strip()
    shown = ["Min", "memory", "8", "GB", "per", "node"]
    assert row(hpc("job", "view", job).stdout, "Min") == shown
    assert row(hpc("task", "view", f"{job}.2").stdout, "Min") == shown
    plain = hpc("job", "submit", "--", "true").stdout.strip()
    assert "Min memory" not in hpc("job", "view", plain).stdout
    assert "Min memory" not in hpc("task", "view", f"{plain}.1").stdout


def test_memory_no_node_has_is_refused_in_one_line(cluster: httpx.Client) -> None:
    taken = hpc("job", "submit", "--min-memory", "64G", "--nodegroup", "OnPremNodes", "--", "x")
    assert taken.exit_code == 0, taken.output  # n2's memory is unknown: it may have 64 GB
    assert cluster.post("/api/nodegroups", json={"name": "Small"}).status_code == 201
    assert cluster.patch("/api/nodes/n1", json={"groups": ["Small"]}).status_code == 200
    result = hpc("job", "submit", "--min-memory", "64G", "--nodegroup", "Small", "--", "x")
    assert_one_error_line(
        result, "a task asks for 64 GB memory per node but the largest node in node group(s) "
        "Small has 16 GB; ask for at most 16 GB"
    )  # fmt: skip


# --- nodes and groups -------------------------------------------------------------------


def test_node_list_and_view_show_each_nodes_memory(cluster: httpx.Client) -> None:
    listed = hpc("node", "list")
    assert listed.exit_code == 0, listed.output
    header = listed.stdout.splitlines()[0].split()
    memory = header.index("Memory")
    assert row(listed.stdout, "n1")[memory : memory + 2] == ["16", "GB"]
    assert row(listed.stdout, "n2")[memory] == "-"
    assert row(hpc("node", "view", "n1").stdout, "Memory") == ["Memory", "16", "GB"]
    assert row(hpc("node", "view", "n2").stdout, "Memory") == ["Memory", "unknown"]


def group_of(client: httpx.Client, name: str) -> dict:
    [group] = [g for g in client.get("/api/nodegroups").json()["groups"] if g["name"] == name]
    return group


def test_a_managed_groups_node_memory_is_set_shown_and_unset(cluster: httpx.Client) -> None:
    created = hpc("nodegroup", "create", "Big", "--provider", "local", "--node-memory", "1.5T")
    assert created.exit_code == 0, created.output
    assert group_of(cluster, "Big")["nodeMemoryMb"] == 1536 * G
    result = hpc("nodegroup", "set", "AzureNodes", "--provider", "local", "--node-memory", "16G")
    assert result.exit_code == 0, result.output
    assert "node memory 16 GB" in " ".join(result.stdout.split())  # the set is confirmed
    assert group_of(cluster, "AzureNodes")["nodeMemoryMb"] == 16 * G
    listed = hpc("nodegroup", "list").stdout
    assert row(listed, "AzureNodes")[5:7] == ["16", "GB"]  # after Node cores
    assert row(listed, "Big")[5:7] == ["1536", "GB"]
    assert row(listed, "OnPremNodes")[5] == "-"  # its nodes' own word
    assert hpc("nodegroup", "set", "AzureNodes", "--node-memory", "default").exit_code == 0
    assert group_of(cluster, "AzureNodes")["nodeMemoryMb"] is None
    assert row(hpc("nodegroup", "list").stdout, "AzureNodes")[5] == "unknown"


def test_a_bad_node_memory_is_one_error_line(cluster: httpx.Client) -> None:
    bad = hpc("nodegroup", "set", "AzureNodes", "--provider", "local", "--node-memory", "lots")
    assert bad.exit_code == 2
    assert_one_error_line(bad, "--node-memory: 'lots' is not a size", "or default")
    onprem = hpc("nodegroup", "set", "OnPremNodes", "--node-memory", "4G")
    assert_one_error_line(onprem, "nodeMemoryMb applies only to managed groups")


@pytest.mark.parametrize(
    ("asked", "shown"),
    [
        ([], None),
        ([None, None], None),
        ([4096, 4096], "4 GB per node"),
        ([4096, None], "per task: 4 GB, none"),
        ([512, 4096, 1536], "per task: 512 MB, 1.5 GB, 4 GB"),
        ([1, 2, 3, 4, 5], "per task: 1 MB, 2 MB, 3 MB, 4 MB, ..."),
        (["4G", True], None),  # no size: not shown as one
    ],
)
def test_job_view_words_its_tasks_memory_as_it_words_their_limits(asked, shown) -> None:
    assert memory_request([{"minMemoryMb": m} for m in asked]) == shown
