"""Resource requests from the CLI (``--cores N|MIN-MAX``, ``--exclusive``, ``--nodes``), and
end to end with real agents (HPC_NODES, HPC_TASK_CORES).
"""

from __future__ import annotations

import pytest

from hpc.spec import build_spec, parse_cores
from tests.cli_fixtures import hpc

# --- the CLI ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("4", 4), ("2-8", {"min": 2, "max": 8}), (" 3 - 3 ", {"min": 3, "max": 3})],
)
def test_cli_cores_is_n_or_min_max(text, expected):
    assert parse_cores(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [("0", "at least 1 core"), ("8-2", "MAX 2 is below MIN 8"), ("two", "not N or MIN-MAX")],
)
def test_cli_cores_says_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_cores(text)


def test_build_spec_carries_exclusive_and_nodes():
    spec = build_spec(command="x", cores={"min": 1, "max": 4}, exclusive=True, nodes=2)
    assert spec["tasks"] == [
        {"command": "x", "cores": {"min": 1, "max": 4}, "exclusive": True, "nodes": 2}
    ]
    assert "exclusive" not in build_spec(command="x")["tasks"][0]


def test_cli_submit_sends_resource_options(api):
    result = hpc(
        "job", "submit", "--cores", "2-8", "--exclusive", "--nodes", "2", "--workdir", "/tmp",
        "--", "mpirun", "-np", "4", "app",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [body] = api.posted("/api/jobs")
    assert body["tasks"][0] == {
        "command": "mpirun -np 4 app",
        "cores": {"min": 2, "max": 8},
        "exclusive": True,
        "nodes": 2,
        "workDir": "/tmp",
    }
    bad = hpc("job", "submit", "--cores", "8-2", "--", "x")
    assert bad.exit_code != 0 and "MAX 2 is below MIN 8" in bad.stderr


# --- end to end: real agents ------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from hpc.localcluster import LocalCluster

    c = LocalCluster(tmp_path_factory.mktemp("res") / "hpc", nodes=2, cores=2)
    c.start()
    yield c
    assert c.stop() == 0


@pytest.mark.e2e
def test_a_two_node_task_sees_hpc_nodes_and_hpc_task_cores(cluster):
    echo = "echo nodes=$HPC_NODES cores=$HPC_TASK_CORES node=$HPC_NODE_NAME"
    job_id = cluster.submit(
        {
            "tasks": [
                {"command": echo, "nodes": 2, "cores": 2},
                {"command": echo, "cores": {"min": 1, "max": 2}},
            ]
        }
    )
    job = cluster.wait_job(job_id)
    assert job["state"] == "Finished", job
    wide, grown = cluster.tasks(job_id)
    first = wide["node"]
    [second] = {"onprem-1", "onprem-2"} - {first}
    assert wide["output"].strip() == f"nodes={first}:2,{second}:2 cores=4 node={first}"
    assert [(h["node"], h["cores"]) for h in wide["hosts"]] == [(first, 2), (second, 2)]
    # The second task waited for the first (it held all four cores), then grew to 2.
    node = grown["node"]
    assert grown["output"].strip() == f"nodes={node}:2 cores=2 node={node}"
