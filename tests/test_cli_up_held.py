"""``hpc up`` starts again when an admin holds one of its nodes (``hpc node drain | offline``
holds until an admin brings the node online: README). Found on a live cluster: `hpc node
offline onprem-1`, Ctrl-C, `hpc up` again: "node(s) onprem-1 not Online within 30 s" and the
whole cluster stopped, though the agent had registered and the hold kept its node Offline.

A held node whose agent was heard since the agents started counts as started, and `hpc up`
says it stays so. The wait's predicate on the API's node JSON, the wait itself with the
processes and API played here, and once end to end with real processes.
"""

from __future__ import annotations

import io
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from hpc import up_processes
from hpc.errors import CliError
from hpc.localcluster import LocalCluster, hpc_command
from hpc.up_processes import Child, ClusterProcesses, Stopper, held_line, node_started

SINCE = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)


def stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # the API's fixed-width UTC time


def node(
    state: str = "Offline", held: str | None = "offline", heard: float | None = 1.0, **extra: Any
) -> dict[str, Any]:
    """Node JSON as the API lists it; ``heard``: seconds after SINCE (negative: before)."""
    beat = None if heard is None else stamp(SINCE + timedelta(seconds=heard))
    return {"name": "onprem-1", "groups": ["OnPremNodes"], "state": state, "held": held,
            "lastHeartbeat": beat, "stateReason": "agent restarted; taken offline by an admin",
            **extra}  # fmt: skip


@pytest.mark.parametrize(
    ("doc", "started"),
    [
        (node("Online", held=None), True),
        (node("Online", held=None, heard=-5), False),  # the last run's record, after a crash
        (node("Online", held=None, heard=None), False),
        (node("Offline", "offline"), True),  # held, its agent registered in this run
        (node("Draining", "drain"), True),
        (node("Offline", "offline", heard=-5), False),  # an earlier run's agent
        (node("Offline", "offline", heard=None), False),  # never heard
        (node("Offline", None), False),  # Offline, not held: it should come Online
        (node("Draining", None), False),
        (node("Unreachable", "offline"), False),
        (node("Starting", None), False),
        (node("Offline", "offline", lastHeartbeat="garbage"), False),
    ],
)
def test_a_node_counts_as_started_online_or_held_with_its_agent_heard(
    doc: dict[str, Any], started: bool
) -> None:
    assert node_started(doc, SINCE) is started


def test_the_line_for_a_held_node_says_how_to_bring_it_online() -> None:
    assert held_line(node("Offline", "offline")) == (
        "onprem-1 stays Offline (held by an admin: hpc node online onprem-1)"
    )
    assert held_line({**node("Draining", "drain"), "name": "onprem-2"}) == (
        "onprem-2 stays Draining (held by an admin: hpc node online onprem-2)"
    )


# --- the wait, with the agents and the API played here -----------------------------------


class Running:
    """A child process that runs on."""

    returncode = None

    def poll(self) -> None:
        return None


class Api:
    def __init__(self, *nodes: dict[str, Any]) -> None:
        self.nodes = list(nodes)

    def list_nodes(self) -> dict[str, Any]:
        return {"nodes": self.nodes}


def processes(tmp_path: Path, *names: str) -> tuple[ClusterProcesses, io.StringIO]:
    out = io.StringIO()
    cluster = ClusterProcesses(
        root=tmp_path, home=tmp_path, port=1, env={},
        console=Console(file=out, width=200, log_path=False), stopper=Stopper(),
    )  # fmt: skip
    for name in names:
        log = tmp_path / f"{name}.log"
        proc: Any = Running()
        cluster.agents.append(Child(name, proc, log, log.open("wb")))
    cluster.agents_since = SINCE
    return cluster, out


def test_hpc_up_waits_for_held_nodes_agents_and_says_they_stay_held(tmp_path: Path) -> None:
    cluster, out = processes(tmp_path, "onprem-1", "onprem-2", "onprem-3")
    api = Api(
        node("Offline", "offline"),
        {**node("Online", None), "name": "onprem-2"},
        {**node("Draining", "drain"), "name": "onprem-3"},
    )
    started = cluster.wait_online(api)  # type: ignore[arg-type]
    assert [n["name"] for n in started] == ["onprem-1", "onprem-2", "onprem-3"]
    said = " ".join(out.getvalue().split())
    assert "onprem-1 stays Offline (held by an admin: hpc node online onprem-1)" in said
    assert "onprem-3 stays Draining (held by an admin: hpc node online onprem-3)" in said
    assert "onprem-2 stays" not in said


def test_hpc_up_still_times_out_on_a_held_node_whose_agent_was_not_heard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(up_processes, "START_TIMEOUT_S", 0.3)
    monkeypatch.setattr(up_processes, "POLL_S", 0.05)
    cluster, _ = processes(tmp_path, "onprem-1")
    with pytest.raises(CliError, match="node\\(s\\) onprem-1 not Online within 0.3 s"):
        cluster.wait_online(Api(node("Offline", "offline", heard=-5)))  # type: ignore[arg-type]


# --- end to end: hpc up, an admin's offline, Ctrl-C, hpc up again ------------------------

FAST = {"HPC_HEARTBEAT_INTERVAL_S": "0.5", "HPC_HEARTBEAT_TIMEOUT_S": "3"}


@pytest.mark.e2e
def test_hpc_up_starts_again_with_a_node_an_admin_took_offline(tmp_path: Path) -> None:
    home = tmp_path / "hpc"
    with LocalCluster(home, nodes=2, cores=1, env=FAST) as first:
        port = first.port
        offline = subprocess.run(
            [*hpc_command(), "node", "offline", "onprem-1"],
            env=first.env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert offline.returncode == 0, offline
    assert first.proc is not None and first.proc.returncode == 0, first.log()

    with LocalCluster(home, nodes=2, cores=1, port=port, env=FAST) as again:
        # "Ctrl-C to stop" is hpc up's last line: the node table is printed before it
        again.wait_for(
            lambda: "Ctrl-C to stop" in again.log(), timeout_s=60, what="hpc up to be up"
        )
        log = " ".join(again.log().split())
        assert "onprem-1 stays Offline (held by an admin: hpc node online onprem-1)" in log
        assert "HybridHPC is up with 1 node(s) Online (1 held by an admin)" in log  # a probe
        # written to a file, the node table keeps its columns (a probe saw "Pro…" at 80)
        header = next(line for line in again.log().splitlines() if "Heartbeat" in line)
        assert "Provider" in header and "Protocol" in header and "Reason" in header
        # the control plane's log of the first run is kept (a probe lost a crashed one's)
        host_log = (home / "logs" / "devhost.log").read_text()
        assert host_log.count("--- devhost started by hpc up at ") == 2
        nodes = {n["name"]: (n["state"], n["held"]) for n in again.get("/api/nodes")["nodes"]}
        assert nodes == {"onprem-1": ("Offline", "offline"), "onprem-2": ("Online", None)}
        assert again.proc is not None and again.proc.poll() is None  # it stays up


def test_hpc_up_refuses_to_run_a_control_plane_missing_a_function(tmp_path: Path) -> None:
    """A probe's bad HPC_RECONCILE_SCHEDULE left the reconciler unloaded (only the host's
    log said so) and hpc up said "HybridHPC is up": a dead agent's tasks stayed Running."""
    cluster = LocalCluster(tmp_path / "hpc", nodes=1, cores=1, env={"HPC_RECONCILE_SCHEDULE": "x"})
    with pytest.raises(RuntimeError, match="hpc up exited"):
        cluster.start(timeout_s=60)
    cluster.stop()
    log = " ".join(cluster.log().split())
    assert cluster.proc is not None and cluster.proc.returncode == 1, log
    assert "the control plane could not load reconcile:" in log
    assert "HybridHPC is up" not in log
