"""Bringing an on-prem node back Online while its agent runs (HPC Pack's "Bring Online":
``hpc node start | online``). The pure rules as tables (shared.domain.lifecycle.online, the
heartbeat and registration rules it leans on, the reconciler's backstop), then the use
cases on the embedded store and bus (the agent played by tests/agent_double.py), the HTTP
route and the CLI on the served function app. With real agent processes:
tests/test_node_online_e2e.py."""

# ruff: noqa: F811 - pytest fixtures imported from tests/test_control.py

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.auth import digest
from shared.domain import lifecycle, reconciler
from shared.domain.cluster import Node, Principal
from shared.domain.lifecycle.online import WAITING
from shared.domain.messages import Heartbeat, RegisterNode, Superseded, attempt_key
from shared.domain.models import Task
from shared.domain.states import NodeState, TaskState
from shared.errors import Conflict
from tests.agent_double import AgentDouble
from tests.app_fixtures import served_app
from tests.cli_fixtures import hpc
from tests.test_control import clock, cp, register  # noqa: F401 - fixtures

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
T15 = timedelta(seconds=15)
ON, OFF, DRAIN = NodeState.ONLINE, NodeState.OFFLINE, NodeState.DRAINING
START, GONE = NodeState.STARTING, NodeState.UNREACHABLE
BY_ADMIN = "taken offline by an admin"


def node(
    state=OFF, *, beat_ago=1.0, incarnation=3, reason=BY_ADMIN, provider="onprem", held=None
) -> Node:
    return Node(
        name="n1",
        groups=["OnPremNodes"],
        cores=4,
        provider=provider,
        state=state,
        held=held,
        state_reason=reason,
        state_time=NOW - timedelta(minutes=1),
        incarnation=incarnation,
        agent_id="agent-old1",
        host_id="host-aaaa",
        agent_started_at=NOW - timedelta(hours=1),
        last_heartbeat=None if beat_ago is None else NOW - timedelta(seconds=beat_ago),
    )


# --- the rule ---------------------------------------------------------------------------

START_AGENT = "start its agent there (hpc agent run --name n1)"


@pytest.mark.parametrize(
    ("stored", "state", "incarnation", "refusal"),
    [
        # Draining, heard: Online as the same incarnation (its tasks are its own)
        (node(DRAIN, reason="drained by an admin"), ON, 3, None),
        # Offline by an admin, heard: Starting ends its incarnation; its agent registers again
        (node(OFF), START, 3, None),
        (node(ON, reason="agent registered"), None, None, "n1 is Online already: nothing to do"),
        (node(START, reason=WAITING), None, None, "nothing to do"),
        # its agent not heard from: never Online on the admin's word
        (node(DRAIN, beat_ago=16), None, None, "(15 s; last heard 16 s ago): " + START_AGENT),
        (node(OFF, beat_ago=16), None, None, "has not been heard from within the heartbeat"),
        (node(OFF, beat_ago=None), None, None, "timeout (15 s): " + START_AGENT),
        (node(OFF, reason=lifecycle.AGENT_STOPPED), None, None, "because its agent stopped"),
        (node(GONE, reason="no heartbeat for 15 s"), None, None, "comes back Online by itself"),
        # held by an admin: a registration keeps the hold, so it does not come back Online
        (
            node(GONE, reason="no heartbeat for 15 s", held="drain"),
            None,
            None,
            "it comes back Draining by itself once its agent is heard again, as an admin "
            "drained it (held); then hpc node online n1 brings it back; if the agent stopped, "
            + START_AGENT,
        ),
        (
            node(OFF, reason=lifecycle.AGENT_STOPPED, held="offline"),
            None,
            None,
            "because its agent stopped: " + START_AGENT + "; it registers and the node comes "
            "back Offline, as an admin took it offline (held); then hpc node online n1 brings",
        ),
        (
            node(OFF, beat_ago=None, held="drain"),
            None,
            None,
            START_AGENT + "; it registers and the node comes back Draining, as an admin",
        ),
        (node(OFF, incarnation=0), None, None, "never registered: " + START_AGENT),
    ],
)
def test_bring_online(stored, state, incarnation, refusal):
    before = stored.model_copy(deep=True)
    decision = lifecycle.bring_online(stored, now=NOW, timeout=T15)
    assert decision.done is (refusal is None)
    if refusal is not None:
        assert refusal in (decision.reason or "") and stored == before  # nothing changed
        assert lifecycle.online_refusal(before, now=NOW, timeout=T15) == decision.reason
        return
    assert (stored.state, stored.incarnation) == (state, incarnation)
    assert stored.state_reason is not None and "brought online by an admin" in stored.state_reason
    assert stored.state_time == NOW
    assert decision.ended == (3 if state is START else None)
    assert stored.agent_id == before.agent_id  # only a registration grants an incarnation


def test_a_managed_node_is_started_by_its_provider_not_by_this_rule():
    with pytest.raises(ValueError, match="local VM"):
        lifecycle.bring_online(node(OFF, provider="local"), now=NOW, timeout=T15)


def beat(incarnation=3, running=("1.1.2",)) -> Heartbeat:
    return Heartbeat(
        node="n1", incarnation=incarnation, agent_id="agent-old1", free_cores=4, running=running
    )


def test_an_offline_nodes_agent_is_heard_but_nothing_is_repaired():
    """Its attempts went to new attempts when it was taken offline: no cancels, no missing
    ends; only the heartbeat's time is kept, which bringing it back needs."""
    n = node(OFF, beat_ago=30)
    running_elsewhere = Task(job_id=1, id=1, command="x", state=TaskState.RUNNING, attempt=3)
    running_elsewhere.node, running_elsewhere.incarnation = "n2", 1
    decision = lifecycle.heartbeat(n, beat(), [running_elsewhere], NOW)
    assert (decision.current, decision.heard, decision.cancels) == (False, True, [])
    assert n.last_heartbeat == NOW and n.state is OFF and n.missing_since == {}
    assert lifecycle.online_refusal(n, now=NOW, timeout=T15) is None


OVER = "while its agent runs: incarnation 3 is over; register again"
UNANSWERED = "its agent did not register again within 15 s of being brought online"


@pytest.mark.parametrize(
    ("stored", "heard", "over"),
    [
        # not held, on-prem: its agent runs on (it did not register in time): register again
        (node(OFF, reason=UNANSWERED), True, True),
        (node(OFF, reason=BY_ADMIN, beat_ago=60), True, True),
        # held by an admin's offline or drain: only heard (an admin brings it back)
        (node(OFF, held="offline"), True, False),
        (node(OFF, held="drain", reason=UNANSWERED), True, False),
        # a VM: only heard (its provider starts it)
        (node(OFF, provider="local", reason="deallocated"), True, False),
        # its agent said it stops: sent before the stop, the agent is gone; not heard
        (node(OFF, reason=lifecycle.AGENT_STOPPED), False, False),
        (node(OFF, reason=lifecycle.AGENT_STOPPED, held="offline"), False, False),
    ],
)
def test_an_offline_nodes_heartbeat(stored, heard, over):
    before = stored.model_copy(deep=True)
    decision = lifecycle.heartbeat(stored, beat(), [], NOW)
    assert (decision.current, decision.heard, decision.over) == (False, heard, over)
    # held or a VM, its agent heard: what it still lists was given up, so it is told again to
    # kill it (the one cancel sent at the offline may have been lost); told over, it kills all
    kills = [(c.job_id, c.task_id, c.attempt) for c in decision.cancels]
    assert kills == ([(1, 1, 2)] if heard and not over else [])
    assert decision.recovered == []
    assert stored.last_heartbeat == (NOW if heard else before.last_heartbeat)
    if over:
        assert decision.reason == f"node 'n1' is Offline ({before.state_reason}) {OVER}"
    # the node stays as it was: only a registration grants an incarnation (exactly once)
    assert stored.model_copy(update={"last_heartbeat": before.last_heartbeat}) == before


def test_the_ended_incarnations_heartbeat_is_told_to_register_and_its_registration_is_online():
    n = node(OFF)
    lifecycle.bring_online(n, now=NOW, timeout=T15)
    decision = lifecycle.heartbeat(n, beat(incarnation=3), [], NOW)
    assert (decision.current, decision.over, decision.heard) == (False, True, False)
    assert decision.reason == (
        "node 'n1' was brought online by an admin, which ends incarnation 3: register again"
    )
    assert n.state is START and n.last_heartbeat == NOW - timedelta(seconds=1)
    again = RegisterNode(
        node="n1", groups=["G"], cores=4, agent_id="agent-new1", host_id="host-aaaa",
        started_at=NOW,
    )  # fmt: skip
    registered = lifecycle.register(n, again, now=NOW, timeout=T15)
    assert (registered.accepted, registered.incarnation, registered.previous) == (True, 4, 3)
    assert n.state is ON and n.state_reason == (
        "brought online by an admin: its agent registered again"
    )


@pytest.mark.parametrize(
    ("state", "provider", "ago", "listening_ago", "expired"),
    [
        (START, "onprem", 16, 100, True),
        (START, "onprem", 14, 100, False),
        (START, "onprem", 60, 10, False),  # we were away: its registration may wait unread
        (START, "local", 600, 1000, False),  # a VM: the autoscaler's deployment timeout
        (OFF, "onprem", 16, 100, False),
    ],
)
def test_unanswered_starts(state, provider, ago, listening_ago, expired):
    n = node(state, provider=provider)
    n.state_time = NOW - timedelta(seconds=ago)
    since = NOW - timedelta(seconds=listening_ago)
    found = reconciler.unanswered_starts([n], now=NOW, timeout=T15, since=since)
    assert bool(found) is expired


# --- the use cases (heartbeat timeout 10 s: tests/test_control.py) ---------------------


def test_a_drained_node_started_again_is_online_as_the_same_incarnation_and_takes_work(cp, clock):
    agent = register(cp, "n1", cores=2)
    first = cp.submit({"command": "long"})
    assert cp.schedule_pass() == 1
    [run] = agent.runs()
    agent.send(agent.started(run))
    cp.node_action("drain", ["n1"])
    second = cp.submit({"command": "next"})
    assert cp.schedule_pass() == 0  # Draining: no new work
    clock.advance(5)
    agent.send(agent.heartbeat(running=[attempt_key(run.job_id, run.task_id, run.attempt)]))
    [node] = cp.node_action("start", ["n1"])
    assert (node.state, node.incarnation) == (ON, agent.incarnation)
    assert node.state_reason == "brought online by an admin"
    assert cp.schedule_pass() == 1
    [placed] = agent.runs()
    assert (placed.job_id, placed.incarnation) == (second.id, agent.incarnation)
    [kept] = cp.list_tasks(first.id)  # what ran through the drain runs on, untouched
    assert (kept.state, kept.attempt, kept.node) == (TaskState.RUNNING, 0, "n1")


def test_an_offlined_node_started_again_comes_back_when_its_running_agent_registers_again(
    cp, clock
):
    """Taking it offline gave its task to a new attempt but left the agent running as its
    incarnation; bringing it back ends that incarnation, so nothing of it can count, and
    the agent (told at its next heartbeat) registers again without restarting."""
    agent = register(cp, "n1", cores=2)
    job = cp.submit({"command": "work"})
    assert cp.schedule_pass() == 1
    [old] = agent.runs()
    agent.send(agent.started(old))
    still_running = [attempt_key(old.job_id, old.task_id, old.attempt)]
    cp.node_action("offline", ["n1"])
    [task] = cp.list_tasks(job.id)
    assert (task.state, task.attempt) == (TaskState.QUEUED, 1)
    clock.advance(1)
    agent.send(agent.heartbeat(running=still_running))  # its agent runs on
    assert agent.replies() == [] and cp.store.get_node("n1").last_heartbeat == clock.now

    [node] = cp.node_action("start", ["n1"])
    assert (node.state, node.incarnation) == (START, agent.incarnation)
    assert cp.schedule_pass() == 0  # not before its agent is back
    agent.send(agent.heartbeat(running=still_running))
    [told] = agent.replies()
    assert isinstance(told, Superseded) and "brought online by an admin" in told.reason
    agent.send(agent.ended(old, exit_code=None, canceled=True))  # it kills what it ran
    assert cp.store.get_node("n1").state is START

    again = AgentDouble(cp, "n1", cores=2, host_id=agent.host_id)  # the same process registers
    assert again.register().accepted and again.incarnation == agent.incarnation + 1
    node = cp.store.get_node("n1")
    assert (node.state, node.incarnation) == (ON, again.incarnation)
    assert cp.schedule_pass() == 1
    [run] = again.runs()
    assert (run.job_id, run.attempt, run.incarnation) == (job.id, 1, again.incarnation)
    agent.send(agent.started(run))  # stamped with the ended incarnation: changes nothing
    assert cp.list_tasks(job.id)[0].state is TaskState.DISPATCHING
    again.send(again.started(run), again.ended(run))
    [done] = cp.list_tasks(job.id)
    assert (done.state, done.attempt, done.node) == (TaskState.FINISHED, 1, "n1")


def _silent(cp, clock, agent) -> None:
    cp.node_action("offline", ["n1"])
    clock.advance(11)


def _stopped(cp, clock, agent) -> None:
    agent.send(agent.stopping())


def _unreachable(cp, clock, agent) -> None:
    clock.advance(6)
    cp.reconcile()
    clock.advance(5)
    cp.reconcile()


def _draining_silent(cp, clock, agent) -> None:
    cp.node_action("drain", ["n1"])
    clock.advance(11)


@pytest.mark.parametrize(
    ("lose", "message"),
    [
        (_silent, "n1 is Offline and its agent has not been heard from within the heartbeat"),
        (_stopped, "n1 is Offline because its agent stopped: " + START_AGENT),
        (_unreachable, "n1 is Unreachable (no heartbeat for 10 s): it comes back Online by"),
        (_draining_silent, "n1 is Draining and its agent has not been heard from"),
    ],
    ids=["offline-silent", "agent-stopped", "unreachable", "draining-silent"],
)
def test_a_node_whose_agent_is_not_heard_from_is_refused_saying_to_start_it(
    cp, clock, lose, message
):
    agent = register(cp, "n1")
    cp.reconcile()
    lose(cp, clock, agent)
    before = cp.store.get_node("n1")
    with pytest.raises(Conflict, match=message.replace("(", r"\(").replace(")", r"\)")):
        cp.node_action("start", ["n1"])
    after = cp.store.get_node("n1")
    assert (after.state, after.incarnation) == (before.state, before.incarnation)


def test_a_node_whose_agent_never_registers_again_goes_offline_saying_why(cp, clock):
    agent = register(cp, "n1")
    cp.reconcile()  # listening from now on
    cp.node_action("offline", ["n1"])
    clock.advance(1)
    agent.send(agent.heartbeat())
    cp.node_action("start", ["n1"])  # and the agent is cut off before its next heartbeat
    clock.advance(6)
    cp.reconcile()
    assert cp.store.get_node("n1").state is START
    clock.advance(5)
    cp.reconcile()
    node = cp.store.get_node("n1")
    assert (node.state, node.incarnation) == (OFF, agent.incarnation)
    assert node.state_reason == (
        "its agent did not register again within 10 s of being brought online: if it runs, "
        "its next heartbeat tells it to register again and the node comes back Online; else "
        "start it there (hpc agent run --name n1)"
    )
    with pytest.raises(Conflict, match="last heard 11 s ago"):
        cp.node_action("start", ["n1"])


def test_a_node_whose_paused_agent_runs_on_after_it_went_offline_again_comes_back_online(cp, clock):
    """Brought online, its agent paused (SIGSTOP) past the heartbeat timeout: the node went
    Offline again, not held. Once the agent runs on, its heartbeat is answered Superseded,
    and its registration makes the node Online as the next incarnation; nothing of the
    ended incarnation counts."""
    agent = register(cp, "n1", cores=2)
    cp.reconcile()  # listening from now on
    job = cp.submit({"command": "work"})
    assert cp.schedule_pass() == 1
    [old] = agent.runs()
    agent.send(agent.started(old))
    still_running = [attempt_key(old.job_id, old.task_id, old.attempt)]
    cp.node_action("offline", ["n1"])
    clock.advance(1)
    agent.send(agent.heartbeat(running=still_running))
    cp.node_action("start", ["n1"])  # and its agent is paused before its next heartbeat
    _unreachable(cp, clock, agent)  # two reconciler runs: 11 s without a registration
    node = cp.store.get_node("n1")
    assert (node.state, node.held, node.incarnation) == (OFF, None, agent.incarnation)

    clock.advance(30)
    agent.send(agent.heartbeat(running=still_running))  # it runs on
    [told] = agent.replies()
    assert isinstance(told, Superseded) and told.current == agent.incarnation
    assert "while its agent runs: incarnation" in told.reason
    node = cp.store.get_node("n1")
    assert (node.state, node.incarnation, node.last_heartbeat) == (
        OFF,
        agent.incarnation,
        clock.now,
    )  # no incarnation but by a registration
    assert cp.schedule_pass() == 0
    agent.send(agent.ended(old, exit_code=None, canceled=True))  # it kills what it ran
    again = AgentDouble(cp, "n1", cores=2, host_id=agent.host_id)
    assert again.register().accepted and again.incarnation == agent.incarnation + 1
    node = cp.store.get_node("n1")
    assert (node.state, node.incarnation) == (ON, again.incarnation)
    assert cp.schedule_pass() == 1
    [run] = again.runs()
    assert (run.job_id, run.attempt, run.incarnation) == (job.id, 1, again.incarnation)
    agent.send(agent.started(run), agent.heartbeat())  # the ended incarnation: changes nothing
    assert cp.list_tasks(job.id)[0].state is TaskState.DISPATCHING
    assert agent.replies() != [] and cp.store.get_node("n1").incarnation == again.incarnation
    again.send(again.started(run), again.ended(run))
    [done] = cp.list_tasks(job.id)
    assert (done.state, done.attempt, done.node) == (TaskState.FINISHED, 1, "n1")


def test_a_held_offline_nodes_agent_is_only_heard(cp, clock):
    agent = register(cp, "n1")
    cp.node_action("offline", ["n1"])
    clock.advance(3)
    agent.send(agent.heartbeat())
    assert agent.replies() == []
    node = cp.store.get_node("n1")
    assert (node.state, node.held, node.last_heartbeat) == (OFF, "offline", clock.now)


@pytest.mark.parametrize("held", [True, False], ids=["held", "not-held"])
def test_an_offline_node_whose_agent_stopped_is_refused_saying_to_start_it(cp, clock, held):
    """`hpc node offline`, then its agent stops cleanly: its stop is recorded (the hold is
    kept), so bringing it online is refused (409) saying to start the agent."""
    agent = register(cp, "n1")
    cp.reconcile()
    cp.node_action("offline", ["n1"])
    if not held:  # brought online, its agent did not register in time: Offline, not held
        agent.send(agent.heartbeat())
        cp.node_action("start", ["n1"])
        _unreachable(cp, clock, agent)  # two reconciler runs: 11 s without a registration
    clock.advance(1)
    agent.send(agent.stopping())
    node = cp.store.get_node("n1")
    hold = "offline" if held else None
    assert (node.state, node.held, node.state_reason) == (OFF, hold, lifecycle.AGENT_STOPPED)
    back = ", as an admin took it offline (held); then hpc node online n1 brings it back"
    message = (
        f"node n1 is Offline because its agent stopped: {START_AGENT}; it registers and the "
        f"node comes back {'Offline' + back if held else 'Online'}"
    )
    with pytest.raises(Conflict) as refused:
        cp.node_action("start", ["n1"])
    assert str(refused.value) == message
    assert cp.store.get_node("n1") == node  # nothing changed
    restarted = AgentDouble(cp, "n1", host_id=agent.host_id)  # as the refusal says
    assert restarted.register().accepted
    assert cp.store.get_node("n1").state is (OFF if held else ON)


def test_a_held_unreachable_node_is_refused_saying_it_comes_back_draining(cp, clock):
    """Drained, then its agent killed (-9): it comes back Draining (held), not Online."""
    agent = register(cp, "n1")
    cp.reconcile()
    cp.node_action("drain", ["n1"])
    _unreachable(cp, clock, agent)
    assert cp.store.get_node("n1").state is GONE
    with pytest.raises(Conflict) as refused:
        cp.node_action("start", ["n1"])
    assert str(refused.value) == (
        "node n1 is Unreachable (no heartbeat for 10 s): it comes back Draining by itself once "
        "its agent is heard again, as an admin drained it (held); then hpc node online n1 "
        "brings it back; if the agent stopped, " + START_AGENT
    )
    restarted = AgentDouble(cp, "n1", host_id=agent.host_id)
    assert restarted.register().accepted
    assert cp.store.get_node("n1").state is DRAIN
    restarted.send(restarted.heartbeat())
    assert cp.node_action("start", ["n1"])[0].state is ON


def test_taking_a_node_offline_while_it_waits_for_its_agent_keeps_it_offline(cp, clock):
    agent = register(cp, "n1")
    cp.node_action("offline", ["n1"])
    agent.send(agent.heartbeat())
    cp.node_action("start", ["n1"])
    [node] = cp.node_action("offline", ["n1"])  # the admin changed their mind
    assert node.state is OFF
    agent.send(agent.heartbeat())
    assert agent.replies() == []  # not told to register again, so it does not come back
    assert cp.store.get_node("n1").state is OFF


def test_an_agent_that_stops_while_its_node_waits_for_it_takes_the_node_offline(cp, clock):
    agent = register(cp, "n1")
    cp.node_action("offline", ["n1"])
    agent.send(agent.heartbeat())
    cp.node_action("start", ["n1"])
    agent.send(agent.stopping())
    node = cp.store.get_node("n1")
    assert (node.state, node.state_reason) == (OFF, lifecycle.AGENT_STOPPED)


def test_nodes_named_together_are_all_checked_before_any_is_brought_online(cp, clock):
    register(cp, "n1")
    register(cp, "n2")
    cp.node_action("drain", ["n2"])
    with pytest.raises(Conflict, match="n1 is Online already"):
        cp.node_action("start", ["n2", "n1"])
    assert cp.store.get_node("n2").state is DRAIN
    assert [n.state for n in cp.node_action("start", ["n2"])] == [ON]


# --- HTTP and the CLI, on the served function app ---------------------------------------


def test_bringing_a_node_online_over_http_is_for_admins_and_a_refusal_says_why(tmp_path):
    with served_app(tmp_path / "home") as app, app.client() as admin:
        agent = AgentDouble(app.cp, "p-1")
        assert agent.register().accepted
        assert admin.post("/api/nodes/p-1/drain").status_code == 200
        app.cp.store.add_token(digest("user-token-1"), Principal(name="ann", role="user"))
        with app.client("user-token-1") as user:
            denied = user.post("/api/nodes/p-1/start")
        assert denied.status_code == 403 and "only an admin may" in denied.json()["error"]
        assert app.cp.store.get_node("p-1").state is DRAIN
        started = admin.post("/api/nodes/p-1/start")
        assert started.status_code == 200, started.text
        assert [(n["name"], n["state"]) for n in started.json()["nodes"]] == [("p-1", "Online")]
        again = admin.post("/api/nodes/p-1/start")  # already so: a 200 that says it
        assert again.status_code == 200
        assert again.json()["message"] == "node p-1 is already Online: nothing to do"
        assert again.json()["changed"] is False
        agent.send(agent.stopping())
        gone = admin.post("/api/nodes/p-1/start")
        assert gone.status_code == 409
        assert gone.json()["error"] == (
            "node p-1 is Offline because its agent stopped: start its agent there (hpc agent "
            "run --name p-1); it registers and the node comes back Online"
        )


def test_hpc_node_start_and_online_bring_on_prem_nodes_back_past_those_online(
    tmp_path, monkeypatch
):
    with served_app(tmp_path / "home") as app, app.client() as client:
        agents = {name: AgentDouble(app.cp, name) for name in ("p-1", "p-2", "p-3")}
        for agent in agents.values():
            assert agent.register().accepted
        assert client.post("/api/nodes/p-1/drain").status_code == 200
        assert client.post("/api/nodes/p-3/offline").status_code == 200
        agents["p-3"].send(agents["p-3"].heartbeat())  # its agent runs on
        monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
        monkeypatch.setenv("HPC_TOKEN", app.token)

        result = hpc("node", "start", "--group", "onpremnodes")
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines() == [
            "p-1: Online",
            "p-2: Online (already: nothing to do)",
            "p-3: Starting (brought online by an admin: waiting for its agent to register again)",
        ]
        online = hpc("node", "online", "p-2")  # Online already: done, as HPC Pack's no-op
        assert online.exit_code == 0, online.output
        assert online.stdout.splitlines() == ["p-2: Online (already: nothing to do)"]
        assert hpc("node", "online").exit_code == 2  # names or --group

        p3 = agents["p-3"]
        p3.send(p3.heartbeat())  # told its incarnation is over, it registers again
        assert isinstance(p3.replies()[-1], Superseded)
        assert AgentDouble(app.cp, "p-3", host_id=p3.host_id).register().accepted
        states = {n["name"]: n["state"] for n in client.get("/api/nodes").json()["nodes"]}
        assert states == {"p-1": "Online", "p-2": "Online", "p-3": "Online"}
