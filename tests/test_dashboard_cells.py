"""The dashboard's cells that are words for numbers and flags, run under Node.js, and the
CLI's node state cell (found live: the dashboard showed priority 2000 where the CLI says
Normal, a requeued Queued task's old error instead of why it waits, and neither said a
node was held by an admin)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from hpc.render import memory_request, node_state
from hpc.render_nodes import AGENT_STOPPED, free_memory, node_reason, nodes_table
from hpc.render_tasks import task_detail
from shared.domain import lifecycle
from shared.domain.cluster import Node
from shared.domain.memory import shown
from shared.domain.models import PRIORITY_NAMES
from shared.domain.nodeactions import already
from shared.domain.states import NodeState

SCRIPT = Path(__file__).parent.parent / "functions" / "dashboard_assets" / "cells.js"

HARNESS = """
const vm = require("vm");
const fs = require("fs");
const context = vm.createContext({ document: { addEventListener() {} } });
vm.runInContext(fs.readFileSync(process.argv[1], "utf8"), context);
const calls = JSON.parse(process.argv[2]);
const out = calls.map(([fn, arg]) => vm.runInContext(`${fn}(${JSON.stringify(arg)})`, context));
console.log(JSON.stringify(out));
"""


def run_js(calls: list[tuple[str, Any]]) -> list[Any]:
    """Each ``(function, argument)`` of cells.js called in one Node.js process."""
    done = subprocess.run(
        ["node", "-e", HARNESS, str(SCRIPT), json.dumps(calls)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return list(json.loads(done.stdout))


CASES: list[tuple[str, Any, Any]] = [
    *(("priorityName", value, name) for name, value in PRIORITY_NAMES.items()),
    ("priorityName", 2500, 2500),  # no name: the number, as the CLI shows it
    ("nodeStateText", {"state": "Offline", "held": "offline"}, "Offline (held)"),
    ("nodeStateText", {"state": "Draining", "held": "drain"}, "Draining (held)"),
    ("nodeStateText", {"state": "Draining", "held": "drain", "runningTasks": 2}, "Draining (held)"),
    ("nodeStateText", {"state": "Draining", "held": "drain", "runningTasks": 0}, "Drained (held)"),
    ("nodeStateText", {"state": "Draining", "held": None, "runningTasks": 0}, "Drained"),
    ("nodeStateText", {"state": "Online", "held": None}, "Online"),
    (
        "taskNote",
        {"state": "Queued", "error": None, "pendingReason": "next in line"},
        "next in line",
    ),
    (
        "taskNote",
        {"state": "Queued", "error": "exit code 1", "pendingReason": "no Online node"},
        "no Online node; last attempt: exit code 1",
    ),
    ("taskNote", {"state": "Failed", "error": "exit code 1", "pendingReason": None}, "exit code 1"),
    # a queued task waiting for what its job waits for says so, not the job's reason again
    (
        "(t => taskNote(t.task, t.job))",
        {"task": {"state": "Queued", "pendingReason": "no core free"}, "job": "no core free"},
        "as its job",
    ),
    (
        "(t => taskNote(t.task, t.job))",
        {"task": {"state": "Queued", "pendingReason": "after task 3"}, "job": "no core free"},
        "after task 3",
    ),
    (
        "(t => taskNote(t.task, t.job))",
        {"task": {"state": "Queued", "pendingReason": "x", "error": "node lost"}, "job": "x"},
        "as its job; last attempt: node lost",
    ),
    # the header: "1 job", not "1 jobs" (seen in a browser)
    (
        "summaryText",
        {"online": 1, "nodes": 1, "busy": 0, "cores": 2, "running": 1, "queued": 0},
        "1/1 node online · 0/2 cores busy · 1 job running · 0 queued",
    ),
    (
        "summaryText",
        {
            "online": 2,
            "nodes": 3,
            "busy": 4,
            "cores": 4,
            "running": 100,
            "runningMore": True,
            "queued": 100,
            "queuedMore": True,
        },
        "2/3 nodes online · 4/4 cores busy · 100+ jobs running · 100+ queued",
    ),
    # a job's buttons: those its state allows (seen: Requeue offered on a Running job)
    ("jobActions", {"state": "Running", "held": False}, ["cancel", "hold"]),
    ("jobActions", {"state": "Queued", "held": True}, ["cancel", "release"]),
    (
        "jobActions",
        {"state": "Queued", "holdUntil": "2026-12-04T00:00:00Z"},
        ["cancel", "hold", "release"],
    ),
    ("jobActions", {"state": "Failed"}, ["requeue"]),
    ("jobActions", {"state": "Canceled", "held": True}, ["requeue"]),
    ("jobActions", {"state": "Finished"}, []),
    ("jobActions", {"state": "Canceling", "held": True}, ["release"]),
    # another user's job: no buttons, no output asked for (seen: 403 banners every refresh)
    (
        "(a => mayChange(a.job, a.me))",
        {"job": {"owner": "alice"}, "me": {"name": "bob", "role": "user"}},
        False,
    ),
    (
        "(a => mayChange(a.job, a.me))",
        {"job": {"owner": "alice"}, "me": {"name": "alice", "role": "user"}},
        True,
    ),
    (
        "(a => mayChange(a.job, a.me))",
        {"job": {"owner": "alice"}, "me": {"name": "root", "role": "admin"}},
        True,
    ),
    ("(a => mayChange(a.job, a.me))", {"job": {"owner": "alice"}, "me": None}, False),
    # a node's buttons: those its state allows (seen: start on an Online node)
    ("nodeActions", {"provider": "onprem", "state": "Online"}, ["drain", "offline"]),
    ("nodeActions", {"provider": "onprem", "state": "Offline", "held": "offline"}, ["start"]),
    ("nodeActions", {"provider": "local", "state": "Online"}, ["drain", "stop", "offline"]),
    ("nodeActions", {"provider": "azure", "state": "Offline"}, ["start", "offline"]),
    (
        "nodeActions",
        {"provider": "azure", "state": "Offline", "held": "offline"},
        ["start", "release"],
    ),
    ("nodeActions", {"provider": "local", "state": "Stopping"}, ["start", "offline"]),
    # the summary's cores: a drained, empty node offers none (a probe read "2/4 cores busy")
    (
        "coreCounts",
        [
            {"state": "Online", "cores": 2, "usedCores": 2},
            {"state": "Draining", "cores": 2, "usedCores": 0},
            {"state": "Draining", "cores": 4, "usedCores": 1},
            {"state": "Offline", "cores": 8},
        ],
        [3, 3],
    ),
]


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_the_dashboards_cells() -> None:
    got = run_js([(fn, arg) for fn, arg, _ in CASES])
    assert got == [expected for _, _, expected in CASES]


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_the_dashboard_offers_no_node_action_whose_result_holds_already() -> None:
    """Every button the dashboard shows on a node does something: none is an action the API
    would answer "already ...: nothing to do" (shared/domain/nodeactions.py, the one rule)."""
    cases = [
        Node(name="n", provider=provider, state=state, held=held)
        for provider in ("onprem", "local", "azure")
        for state in NodeState
        for held in (None, "drain", "offline")
    ]
    docs = [{"provider": n.provider, "state": str(n.state), "held": n.held} for n in cases]
    offered = run_js([("nodeActions", doc) for doc in docs])
    for node, actions in zip(cases, offered, strict=True):
        for action in actions:
            assert already(action, node) is None, (node.provider, node.state, node.held, action)
        if node.state is NodeState.ONLINE:
            assert "drain" in actions and "offline" in actions


@pytest.mark.parametrize(
    ("node", "shown"),
    [
        ({"state": "Offline", "held": "offline"}, "Offline (held)"),
        ({"state": "Draining", "held": "drain"}, "Draining (held)"),
        ({"state": "Draining", "held": "drain", "runningTasks": 1}, "Draining (held)"),
        ({"state": "Draining", "held": "drain", "runningTasks": 0}, "Drained (held)"),  # Slurm's
        ({"state": "Draining", "runningTasks": 0}, "Drained"),
        ({"state": "Offline", "held": None}, "Offline"),
        ({"state": "Online"}, "Online"),
        ({}, "-"),
    ],
)
def test_node_state(node, shown):
    assert node_state(node).plain == shown


def test_hpc_node_list_says_a_node_is_held():
    console = Console(record=True, width=200)
    row = {"name": "azure-2", "state": "Offline", "held": "offline", "stateReason": "agent stopped"}
    console.print(nodes_table([row]))
    assert "Offline (held)" in console.export_text()


def test_hpc_task_view_labels_a_queued_tasks_old_error_as_its_last_attempts():
    console = Console(record=True, width=200)
    task = {"id": 1, "state": "Queued", "error": "node n1 lost", "pendingReason": "next in line"}
    console.print(task_detail(task))
    shown = console.export_text()
    assert "Last attempt   node n1 lost" in shown and "Error" not in shown
    console.print(task_detail({**task, "state": "Failed", "pendingReason": None}))
    assert "Error          node n1 lost" in console.export_text()


@pytest.mark.skipif(shutil.which("node") is None, reason="no Node.js")
def test_the_dashboards_memory_cell_reads_as_the_clis() -> None:
    sizes = [512, 1024, 1536, 4096, 16385, 24105, 1024 * 1024]
    assert run_js([("memoryText", mb) for mb in sizes]) == [shown(mb) for mb in sizes]
    assert run_js([("memoryText", None)]) == ["-"]


@pytest.mark.skipif(shutil.which("node") is None, reason="no Node.js")
def test_the_dashboards_free_memory_reads_as_hpc_node_list() -> None:
    """The dashboard showed no free memory where `hpc node list` has a "Free mem" column."""
    nodes = [{"freeMemoryMb": mb} for mb in (0, 512, 4096, 6000)] + [{"freeMemoryMb": None}, {}]
    got = run_js([("freeMemoryText", node) for node in nodes])
    assert got == [free_memory(node, "-") for node in nodes]
    assert got[0] == "0 MB" and got[-1] == "-"
    html = (SCRIPT.parent / "index.html").read_text()
    assert "<th>Free</th><th>Free mem</th>" in html  # the column the app fills


def test_the_dashboards_job_memory_reads_as_hpc_job_view() -> None:
    pages = [[], [None, None], [4096, 4096], [4096, None], [512, 4096, 1536], [1, 2, 3, 4, 5]]
    pages.append([24105, 24105])  # tenths: 23.5 GB, as the CLI rounds
    tasks = [[{"minMemoryMb": m} for m in page] for page in pages]
    shown_by_cli = [memory_request(page) for page in tasks]
    assert shown_by_cli[2:4] == ["4 GB per node", "per task: 4 GB, none"]
    assert run_js([("memoryRequest", page) for page in tasks]) == shown_by_cli


def test_a_task_view_shows_its_sweep_index_its_dependencies_and_every_node() -> None:
    """A probe: `hpc task view` showed the first node of a 2-node task, and no dependsOn."""
    task = {
        "jobId": 7, "id": 3, "name": "sum", "state": "Running", "command": "x", "cores": 2,
        "sweepIndex": 20, "dependsOn": ["prep", "work"], "node": "n1",
        "hosts": [{"node": "n1", "cores": 2}, {"node": "n2", "cores": 2}],
    }  # fmt: skip
    console = Console(width=120, record=True)
    console.print(task_detail(task))
    text = console.export_text()
    assert "Sweep index    20" in text and "Depends on     prep, work" in text
    assert "Nodes          n1:2, n2:2" in text
    console.print(task_detail({**task, "hosts": [{"node": "n1", "cores": 2}]}))
    assert "Node           n1" in console.export_text()


def test_a_sweep_steps_view_and_list_show_what_it_runs_and_its_index() -> None:
    """A probe: a sweep step showed its template (``echo * **``) and a named sweep's steps
    all listed as the same name."""
    from hpc.render import job_detail
    from hpc.render_tasks import tasks_table

    step = {"jobId": 3, "id": 2, "name": "work", "state": "Queued", "command": "echo * **",
            "sweepIndex": 6}  # fmt: skip
    console = Console(width=120, record=True)
    console.print(task_detail(step))
    console.print(tasks_table([step, {**step, "id": 3, "name": "job3[7]", "sweepIndex": 7}]))
    failed = {"id": 3, "state": "Failed", "taskCounts": {"Failed": 1}}
    console.print(job_detail(failed, failure="task 3.1: working directory 'x' does not exist"))
    text = console.export_text()
    assert "Command        echo 6 *" in text and "As submitted   echo * **" in text
    assert "work[6]" in text and "job3[7]" in text and "job3[7][7]" not in text
    assert "First failure  task 3.1: working directory 'x' does not exist" in text


def test_hpc_task_list_keeps_every_column_beside_a_long_error() -> None:
    """A probe: a task that failed with a long error squeezed ID and Exit out of
    `hpc task list` at 80 columns ("Na… Sta… Node At… Output")."""
    from hpc.render_tasks import tasks_table

    long = "memory limit exceeded: its processes used 404 MB, above the 150 MB it asked for " * 2
    tasks = [
        {"id": 17, "name": "j", "state": "Failed", "node": "n1", "exitCode": -9, "attempt": 0,
         "error": long},
        {"id": 18, "name": "j", "state": "Finished", "node": "n1", "exitCode": 0, "attempt": 0,
         "output": "ok"},
    ]  # fmt: skip
    console = Console(width=80, record=True)
    console.print(tasks_table(tasks))
    lines = console.export_text().splitlines()
    assert lines[0].split()[:7] == ["ID", "Name", "State", "Node", "Exit", "Attempt", "Output"]
    assert lines[1].split()[:6] == ["17", "j", "Failed", "n1", "-9", "0"]
    assert lines[1].rstrip().endswith("…") and len(lines) == 3  # one line a task


@pytest.mark.skipif(shutil.which("node") is None, reason="no Node.js")
def test_a_held_nodes_why_outlives_its_agents_stop_in_both_views() -> None:
    """A probe drained azure-3 with a reason, restarted `hpc up` cleanly, and read "agent
    stopped" alone in `hpc node list`: the why was only in the JSON's heldReason."""
    assert AGENT_STOPPED == lifecycle.AGENT_STOPPED  # the CLI's copy of the words
    nodes = [
        {"held": "drain", "heldReason": "drained by admin: look", "stateReason": AGENT_STOPPED},
        {"held": None, "heldReason": None, "stateReason": AGENT_STOPPED},
        {"held": "offline", "heldReason": "taken offline by bob", "stateReason": "x"},
    ]
    shown = [node_reason(n) for n in nodes]
    assert shown == ["drained by admin: look (agent stopped)", "agent stopped", "x"]
    assert run_js([("nodeReasonText", n) for n in nodes]) == shown
    console = Console(record=True, width=250)
    console.print(nodes_table([{"name": "azure-3", "state": "Offline", **nodes[0]}]))
    assert "drained by admin: look (agent stopped)" in console.export_text()


@pytest.mark.skipif(shutil.which("node") is None, reason="no Node.js")
def test_a_node_that_takes_no_work_shows_no_free_cores_or_memory_in_both_views() -> None:
    """A probe read "Free 0, Free mem 0 MB" of an Offline node with 23.5 GB."""
    nodes = [
        {"name": "a", "state": "Offline", "freeCores": 0, "freeMemoryMb": 0, "memoryMb": 24064},
        {"name": "b", "state": "Online", "freeCores": 2, "freeMemoryMb": 4096},
        {"name": "c", "state": "Draining", "freeCores": 0, "freeMemoryMb": 0},
    ]
    assert run_js([("freeCells", n) for n in nodes]) == [["-", "-"], [2, "4 GB"], [0, "0 MB"]]
    console = Console(record=True, width=250)
    console.print(nodes_table(nodes))
    rows = {line.split()[0]: line.split() for line in console.export_text().splitlines()[1:]}
    assert rows["a"][3:6] == ["-", "23.5", "GB"] and rows["a"][6:8] == ["-", "-"]
    assert rows["b"][5:8] == ["2", "4", "GB"]
