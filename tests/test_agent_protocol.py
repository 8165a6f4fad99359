"""Agent protocol versions: a rolling upgrade never sends an agent an assignment it cannot read.

An agent says its protocol when it registers (left out: 1, as agents that predate it do);
the node keeps it, and the scheduler places a task only where the agent reads every field
its RunTask sets (shared/domain/protocol.py). A task that only older agents could take
waits, and its pending reason says which nodes to upgrade.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError, create_model
from rich.console import Console

from agent.registration import request as agent_request
from hpc.render_nodes import nodes_table
from shared.adapters import cosmos_docs
from shared.domain.cluster import Node, Principal
from shared.domain.messages import NODES_QUEUE, Message, RegisterNode, RunTask
from shared.domain.models import Task
from shared.domain.pending import pending_reason
from shared.domain.protocol import (
    AGENT_PROTOCOL,
    FIELD_PROTOCOL,
    GRACE_PROTOCOL,
    OWNER_PROTOCOL,
    TIMEOUT_PROTOCOL,
    VERSIONS,
    carries_owner,
    run_task_protocol,
    task_protocol,
)
from shared.domain.scheduler import Busy, Request, Space, plan, schedule
from shared.domain.states import NodeState, TaskState
from shared.usecases.control_plane import ControlPlane
from shared.usecases.dispatch import _run_task
from tests.agent_double import AgentDouble
from tests.test_control import Clock, make_cp

T0 = datetime(2026, 1, 1, tzinfo=UTC)


# --- the versions -------------------------------------------------------------------------


def _run(**extra: Any) -> RunTask:
    base: dict[str, Any] = {"incarnation": 3, "job_id": 7, "task_id": 1, "attempt": 1}
    return RunTask.model_validate({**base, "command": "echo hi", **extra})


@pytest.mark.parametrize(
    ("fields", "version"),
    [
        ({}, 1),
        ({"cores": 4}, 1),
        ({"work_dir": "/scratch"}, 1),
        ({"env": {"HPC_JOB_ID": "7"}}, 1),
        ({"runtime_limit_s": 60}, 2),
        ({"stdout": "out.%j.txt"}, 3),
        ({"stderr": "err.txt"}, 3),
        ({"runtime_limit_s": 60, "stdout": "o", "cores": 2}, 3),
        ({"runtime_limit_s": None, "stdout": None, "stderr": None}, 1),  # defaults, written out
        ({"owner": "alice"}, 4),
        ({"owner": "alice", "stdout": "o"}, 4),
        ({"owner": None}, 1),
    ],
)
def test_a_run_task_needs_the_newest_version_among_the_fields_it_sets(
    fields: dict[str, Any], version: int
) -> None:
    assert run_task_protocol(_run(**fields)) == version


def test_every_run_task_field_has_a_version_and_the_versions_count_from_one() -> None:
    """A new RunTask field must get a version (a new one: older agents refuse it)."""
    assert set(FIELD_PROTOCOL) == set(RunTask.model_fields)
    assert [v.number for v in VERSIONS] == list(range(1, len(VERSIONS) + 1))
    assert AGENT_PROTOCOL == VERSIONS[-1].number == GRACE_PROTOCOL == 6
    assert TIMEOUT_PROTOCOL == 5
    assert OWNER_PROTOCOL == 4


def _agent_of(version: int) -> type[Message]:
    """RunTask as an agent of ``version`` knows it: only the fields of versions up to it."""
    known: dict[str, Any] = {
        name: (info.annotation, info)
        for name, info in RunTask.model_fields.items()
        if FIELD_PROTOCOL[name] <= version
    }
    return create_model(f"RunTaskV{version}", __base__=Message, **known)


@pytest.mark.parametrize("agent", [v.number for v in VERSIONS])
@pytest.mark.parametrize(
    "run",
    [
        _run(),
        _run(cores=2, env={"A": "1"}, work_dir="w"),
        _run(runtime_limit_s=5),
        _run(stdout="o"),
        _run(stderr="e", runtime_limit_s=5),
        _run(owner="alice"),
        _run(owner="alice", stdout="o", runtime_limit_s=5),
    ],
)
def test_an_agent_reads_exactly_the_assignments_of_its_version_or_older(
    agent: int, run: RunTask
) -> None:
    """The versions match the wire form: an agent of version N reads a RunTask that needs
    at most N, and refuses one that needs more."""
    model = _agent_of(agent)
    if run_task_protocol(run) <= agent:
        model.model_validate_json(run.to_bytes())
    else:
        with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
            model.model_validate_json(run.to_bytes())


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"cores": 3, "work_dir": "/w", "env": {"A": "1"}, "sweep_index": 4},
        {"runtime_limit_s": 60},
        {"stdout": "out-%j.%t"},
        {"stderr": "err"},
        {"runtime_limit_s": 60, "stderr": "err"},
    ],
)
def test_a_task_needs_what_the_assignment_built_from_it_needs(spec: dict[str, Any]) -> None:
    task = Task(job_id=7, id=1, command="x", **spec)
    node = Node(name="n1", incarnation=2)
    assert task_protocol(task) == run_task_protocol(_run_task(task, node, "G"))
    assert task_protocol(task) == run_task_protocol(_run_task(task, node, "G", owner="alice"))


@pytest.mark.parametrize("protocol", [v.number for v in VERSIONS])
@pytest.mark.parametrize("spec", [{}, {"runtime_limit_s": 60}, {"stdout": "o", "stderr": "e"}])
def test_the_owner_goes_only_to_agents_that_read_it_and_needs_no_newer_agent(
    protocol: int, spec: dict[str, Any]
) -> None:
    """An agent the scheduler may give the task (its protocol at least the task's) reads the
    assignment built for it, told the owner from protocol 4 on; no task waits for protocol 4."""
    task = Task(job_id=7, id=1, command="x", **spec)
    if protocol < task_protocol(task):
        return  # the scheduler never places it there
    node = Node(name="n1", incarnation=2, agent_protocol=protocol)
    run = _run_task(task, node, "G", owner="alice")
    assert run.owner == ("alice" if protocol >= OWNER_PROTOCOL else None)
    assert carries_owner(protocol) is (protocol >= OWNER_PROTOCOL)
    assert run_task_protocol(run) <= protocol
    _agent_of(protocol).model_validate_json(run.to_bytes())  # what that agent's model reads
    assert task_protocol(task) < OWNER_PROTOCOL


# --- the scheduler ---------------------------------------------------------------------------


def node(name: str, protocol: int, cores: int = 4) -> Node:
    return Node(
        name=name,
        cores=cores,
        groups=["G"],
        state=NodeState.ONLINE,
        incarnation=1,
        agent_protocol=protocol,
    )


def task(tid: int, **spec: Any) -> Task:
    return Task(job_id=1, id=tid, command="x", node_groups=["G"], submit_time=T0, **spec)


def test_the_scheduler_places_a_task_only_where_the_agent_reads_its_assignment() -> None:
    old, new = node("old", 1, cores=8), node("new", AGENT_PROTOCOL, cores=2)  # old: most free
    queued = [task(1, stdout="o"), task(2, runtime_limit_s=60), task(3)]
    placed = {p.task_id: p.node for p in plan(queued, [old, new], {})}
    assert placed == {1: "new", 2: "new", 3: "old"}


def test_a_task_no_node_can_read_is_not_placed_and_ordinary_ones_still_are() -> None:
    nodes = [node("a", 1), node("b", 2)]
    placed = {p.task_id: p.node for p in plan([task(1, stdout="o"), task(2)], nodes, {})}
    assert placed == {2: "a"}
    assert [p.node for p in plan([task(3, runtime_limit_s=5)], nodes, {})] == ["b"]


def test_a_multi_node_task_needs_every_node_it_gets_to_read_it() -> None:
    nodes = [node("a", 1), node("b", 3), node("c", 3)]
    [p] = plan([task(1, nodes=2, stdout="o")], nodes, {})
    assert {h.node for h in p.hosts} == {"b", "c"}
    assert plan([task(2, nodes=3, stdout="o")], nodes, {}) == []


def test_no_reservation_is_made_on_a_node_whose_agent_could_not_run_the_request() -> None:
    """EASY would reserve the old node for the head request and hold back the long backfill;
    the head can never run there, so nothing is reserved and the backfill starts."""
    spaces = [Space("old", ("G",), 2, 4, protocol=1)]
    busy = [Busy("old", 2, 100.0)]
    head = Request("head", 4, groups=frozenset({"G"}), protocol=3)
    long = Request("long", 2, groups=frozenset({"G"}), limit_s=500.0)
    decision = schedule([head, long], spaces, busy, now=0.0)
    assert decision.reservation is None
    assert [s.key for s in decision.starts] == ["long"]
    # The same head on a new agent is reserved for, and the long task waits.
    spaces = [Space("new", ("G",), 2, 4, protocol=3)]
    decision = schedule([head, long], spaces, [Busy("new", 2, 100.0)], now=0.0)
    assert decision.reservation is not None and decision.starts == []


# --- pending reasons ---------------------------------------------------------------------------


def test_a_task_only_old_agents_could_take_says_which_protocol_and_which_nodes() -> None:
    reason = pending_reason(task(1, stdout="o"), [node("n2", 1), node("n1", 2)], {})
    assert reason == (
        "needs agent protocol 3 (stdout/stderr files); nodes n1, n2 in G run older agents: "
        "upgrade them (hpc node list shows each node's agent protocol)"
    )
    one = pending_reason(task(1, runtime_limit_s=9), [node("n1", 1)], {})
    assert one is not None and one.startswith(
        "needs agent protocol 2 (runtime limits); node n1 in G runs an older agent: upgrade it"
    )


def test_the_reason_names_at_most_five_nodes_and_counts_the_rest() -> None:
    nodes = [node(f"n{i}", 1) for i in range(1, 9)]
    reason = pending_reason(task(1, stdout="o"), nodes, {})
    assert reason is not None and "nodes n1, n2, n3, n4, n5 and 3 more in G" in reason


def test_with_a_new_agent_among_old_ones_the_reason_is_about_the_new_ones_cores() -> None:
    nodes = [node("old", 1, cores=8), node("new", 3, cores=2)]
    reason = pending_reason(task(1, stdout="o", cores=4), nodes, {})
    assert reason == "needs 4 cores on one node; the largest Online node in G has 2"
    ordinary = pending_reason(task(2, cores=4), nodes, {})
    assert ordinary is not None and ordinary.startswith("next in line: 4 core(s) free in G")


# --- the control plane, with agents of both kinds ----------------------------------------------


@pytest.fixture
def cp(tmp_path: Path) -> ControlPlane:
    return make_cp(tmp_path, Clock())


def join(cp: ControlPlane, name: str, *, protocol: int | None, cores: int = 2) -> AgentDouble:
    agent = AgentDouble(cp, name, cores=cores, protocol=protocol)
    assert agent.register().accepted
    return agent


def test_registration_records_the_agents_protocol_on_the_node(cp: ControlPlane) -> None:
    join(cp, "new", protocol=AGENT_PROTOCOL)
    join(cp, "old", protocol=None)  # an agent that predates protocols sends none
    assert cp.store.get_node("new").agent_protocol == AGENT_PROTOCOL
    assert cp.store.get_node("old").agent_protocol == 1
    shown = {n["name"]: n["agentProtocol"] for n in cp.list_nodes()}
    assert shown == {"new": AGENT_PROTOCOL, "old": 1}
    # Upgraded in place: its next registration (a new incarnation) says the new protocol.
    join(cp, "old", protocol=AGENT_PROTOCOL)
    assert cp.store.get_node("old").agent_protocol == AGENT_PROTOCOL


@pytest.mark.parametrize(("protocol", "told"), [(None, False), (4, False), (5, True)])
def test_the_registration_says_the_heartbeat_timeout_only_to_agents_that_read_it(
    cp: ControlPlane, protocol: int | None, told: bool
) -> None:
    """Protocol 5: the answer says the control plane's HPC_HEARTBEAT_TIMEOUT_S, which the
    agent's lifeline fences on; an older agent would refuse the field (messages refuse
    unknown fields), so it is left off the wire for it."""
    answer = AgentDouble(cp, "n1", cores=2, protocol=protocol).register()
    assert answer.accepted
    assert answer.heartbeat_timeout_s == (cp.settings.heartbeat_timeout_s if told else None)
    assert ("heartbeatTimeoutS" in json.loads(answer.to_bytes())) is told


@pytest.mark.parametrize(("protocol", "told"), [(None, False), (5, False), (6, True)])
def test_the_registration_says_the_clusters_task_grace_only_to_agents_that_read_it(
    cp: ControlPlane, protocol: int | None, told: bool
) -> None:
    """Protocol 6: the answer says the control plane's HPC_TASK_GRACE_S, which the agent uses
    instead of its machine's; left off the wire for older agents, which refuse the field."""
    answer = AgentDouble(cp, "n1", cores=2, protocol=protocol).register()
    assert answer.accepted
    assert answer.task_grace_s == (cp.settings.task_grace_s if told else None)
    assert ("taskGraceS" in json.loads(answer.to_bytes())) is told


def test_an_old_agent_is_never_sent_an_assignment_with_stdout_a_new_one_runs_it(
    cp: ControlPlane,
) -> None:
    old = join(cp, "old", protocol=None, cores=8)  # the most free: the scheduler's first pick
    new = join(cp, "new", protocol=AGENT_PROTOCOL, cores=2)
    job = cp.submit({"command": "x", "stdout": "out-%j.txt", "nodeGroup": "OnPremNodes"})
    cp.schedule_pass()
    assert old.assignments() == []
    [run] = new.runs()
    assert run.stdout == f"out-{job.id}.txt"
    new.send(new.started(run), new.ended(run))
    assert cp.get_task(job.id, 1).state is TaskState.FINISHED
    assert old.assignments() == []


def _wire(cp: ControlPlane, node: str) -> list[dict[str, Any]]:
    """The assignments waiting in a node's session, as the bytes on the bus say them."""
    out = []
    with cp.bus.get_session_receiver(NODES_QUEUE, session_id=node) as rx:
        while batch := rx.receive(max_messages=100, max_wait_ms=0):
            for m in batch:
                out.append(json.loads(m.body))
                rx.complete(m)
    return out


@pytest.mark.parametrize("protocol", [None, 2, 3])
def test_an_old_agent_is_never_sent_the_owner_and_a_new_one_always_is(
    cp: ControlPlane, protocol: int | None
) -> None:
    """Per-user execution: the owner rides only in assignments to agents of protocol 4 on (an
    older one would refuse the field and run nothing); older agents still get every task."""
    old = join(cp, "old", protocol=protocol, cores=1)
    new = join(cp, "new", protocol=AGENT_PROTOCOL, cores=1)
    alice = Principal(name="alice", role="user")
    jobs = [cp.submit({"command": "x", "nodeGroup": "OnPremNodes"}, alice) for _ in range(2)]
    cp.schedule_pass()
    [to_old], [to_new] = _wire(cp, "old"), _wire(cp, "new")
    assert {to_old["jobId"], to_new["jobId"]} == {j.id for j in jobs}
    assert "owner" not in to_old
    _agent_of(1 if protocol is None else protocol).model_validate(to_old)
    assert to_new["owner"] == "alice"
    assert RunTask.model_validate(to_new).owner == "alice"
    assert old.assignments() == new.assignments() == []  # (nothing else was sent)


def test_with_only_old_agents_online_the_task_waits_and_says_what_to_do(cp: ControlPlane) -> None:
    old = join(cp, "old", protocol=None)
    job = cp.submit({"command": "x", "stderr": "e.txt", "nodeGroup": "OnPremNodes"})
    ordinary = cp.submit({"command": "y", "nodeGroup": "OnPremNodes"})
    cp.schedule_pass()
    runs = old.runs()
    assert [(r.job_id, r.stdout, r.stderr) for r in runs] == [(ordinary.id, None, None)]
    waiting = cp.get_task(job.id, 1)
    assert waiting.state is TaskState.QUEUED
    assert cp.pending_reasons([waiting])[(job.id, 1)] == (
        "needs agent protocol 3 (stdout/stderr files); node old in OnPremNodes runs an older "
        "agent: upgrade it (hpc node list shows each node's agent protocol)"
    )
    old.send(*[old.started(r) for r in runs], *[old.ended(r) for r in runs])
    # The node's agent is upgraded (a restart registers again): the task goes there.
    new = AgentDouble(cp, "old", protocol=AGENT_PROTOCOL, host_id=old.host_id)
    assert new.register().accepted
    cp.schedule_pass()
    assert [(r.job_id, r.stderr) for r in new.runs()] == [(job.id, "e.txt")]


def test_an_old_agent_still_gets_ordinary_tasks(cp: ControlPlane) -> None:
    old = join(cp, "old", protocol=None)
    job = cp.submit({"command": "echo $HPC_SWEEP_INDEX", "sweep": "1-2", "workDir": "/tmp"})
    cp.schedule_pass()
    runs = old.runs()
    assert sorted(r.task_id for r in runs) == [1, 2]
    assert all(run_task_protocol(r) == 1 for r in runs)
    old.send(*[old.started(r) for r in runs], *[old.ended(r) for r in runs])
    assert cp.get_job(job.id).state.value == "Finished"


# --- the wire form and stored nodes --------------------------------------------------------------


@pytest.mark.parametrize("as_owner", [False, True])
def test_a_node_says_whether_its_agent_runs_tasks_as_their_owners(
    cp: ControlPlane, as_owner: bool
) -> None:
    """Sent only when true (its default is left off the wire), so an agent without
    --run-as-owner registers with any control plane; a restart without it clears it."""
    request = agent_request(
        node="n1", groups=["G"], cores=2, agent_id="agent-1111", host_id="host-1111",
        run_as_owner=as_owner,
    )  # fmt: skip
    assert ("runAsOwner" in json.loads(request.to_bytes())) is as_owner
    double = AgentDouble(cp, "n1", cores=2, protocol=AGENT_PROTOCOL)
    double.run_as_owner = as_owner
    assert double.register().accepted
    assert cp.store.get_node("n1").runs_as_owner is as_owner
    [shown] = cp.list_nodes()
    assert shown["runsAsOwner"] is as_owner
    again = AgentDouble(cp, "n1", cores=2, protocol=AGENT_PROTOCOL)
    assert again.register().accepted
    assert cp.store.get_node("n1").runs_as_owner is False


def test_the_agent_sends_its_protocol_and_an_old_request_reads_as_one() -> None:
    sent = agent_request(node="n1", groups=[], cores=2, agent_id="agent-123", host_id="host-1234")
    assert json.loads(sent.to_bytes())["protocol"] == AGENT_PROTOCOL
    old = RegisterNode(
        node="n1", groups=[], cores=2, agent_id="agent-123", host_id="host-1234", started_at=T0
    )
    body = json.loads(old.to_bytes())
    assert "protocol" not in body  # at its default: left out, as before protocols existed
    assert RegisterNode.model_validate(body).protocol == 1
    with pytest.raises(ValidationError):
        RegisterNode.model_validate({**body, "protocol": 0})


def test_a_stored_node_without_the_field_loads_as_protocol_one(
    cp: ControlPlane, tmp_path: Path
) -> None:
    join(cp, "n1", protocol=AGENT_PROTOCOL)
    con = sqlite3.connect(tmp_path / "store.db")
    with con:
        [(doc,)] = con.execute("SELECT doc FROM nodes WHERE name = 'n1'").fetchall()
        stored = json.loads(doc)
        assert stored.pop("agentProtocol") == AGENT_PROTOCOL
        con.execute("UPDATE nodes SET doc = ? WHERE name = 'n1'", (json.dumps(stored),))
    con.close()
    assert cp.store.get_node("n1").agent_protocol == 1
    assert [n.agent_protocol for n in cp.store.list_nodes()] == [1]
    # Cosmos: the same document body, read through the adapter's loader.
    cosmos = cosmos_docs.named_doc("node", "n1", node("n1", 3))
    del cosmos["body"]["agentProtocol"]
    assert cosmos_docs.load(Node, {**cosmos, "_etag": "e1"}).agent_protocol == 1


def test_hpc_node_list_shows_each_nodes_agent_protocol() -> None:
    console = Console(width=200, record=True)
    row = {"name": "n1", "groups": ["G"], "state": "Online", "cores": 4, "agentProtocol": 2}
    console.print(nodes_table([row]))
    header, line = console.export_text().splitlines()[:2]
    at = header.index("Protocol")
    assert line[at : at + len("Protocol")].strip() == "2"
    # a node no agent has registered yet (an Azure VM just added) has no protocol to show
    console = Console(width=200, record=True)
    console.print(nodes_table([{**row, "state": "Offline", "incarnation": 0}]))
    header, line = console.export_text().splitlines()[:2]
    at = header.index("Protocol")
    assert line[at : at + len("Protocol")].strip() == "-"


# --- the autoscaler ----------------------------------------------------------------------------


def test_the_autoscaler_grows_for_a_task_only_old_agents_have_room_for() -> None:
    """An Online node with an old agent and free cores is no room for a task it cannot read:
    the group starts a node (its VM boots the current agent) instead of waiting on it."""
    from datetime import timedelta

    from shared.domain.autoscaler import ClusterView, autoscale
    from shared.domain.growshrink import AutoscalerPolicy, AutoscalerState, GroupPolicy

    old = node("old", 1)
    offline = Node(name="vm1", cores=4, groups=["G"], state=NodeState.OFFLINE)
    group = GroupPolicy(node_cores=4, max_nodes=4, grow_interval=timedelta(0))
    policy = AutoscalerPolicy(groups={"G": group})

    def starts(queued: list[Task]) -> list[str]:
        view = ClusterView([old, offline], queued, {})
        decision = autoscale(view, policy, AutoscalerState(), T0)
        return [o.node for o in decision.orders if o.action == "start"]

    assert starts([task(1, stdout="o")]) == ["vm1"]
    assert starts([task(2)]) == []  # the old agent runs it: no node is started
    assert starts([task(3, nodes=2, stdout="o")]) == ["vm1"]  # nor half of a wide one
