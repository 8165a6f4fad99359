"""EASY's reservation when what runs has no runtime limit (an *unknown time* reservation):
the blocked head still gets its nodes, which drain for it, as in HPC Pack (a missing
runtime is infinite: no backfill past a blocked job). Found by the job-model probe: an
exclusive or 3-node Highest job waited behind all 80 Normal tasks of a sweep submitted
before it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.domain.capacity import Space
from shared.domain.scheduler import Busy, Decision, Request, schedule
from shared.domain.states import TaskState
from tests.test_control import clock, cp, register, sweep  # noqa: F401 - fixtures


def starts(decision: Decision) -> dict[object, tuple[str, ...]]:
    return {s.key: s.nodes for s in decision.starts}


def full(*names: str, cores: int = 4, free: dict[str, int] | None = None) -> list[Busy]:
    """Nodes of ``cores`` cores, each busy but for ``free`` cores, with unlimited 1-core tasks."""
    free = free or {}
    return [Busy(n, 1, None) for n in names for _ in range(cores - free.get(n, 0))]


@pytest.mark.parametrize(
    ("spaces", "busy", "queue", "expected", "reserved"),
    [
        pytest.param(
            [Space("a", (), 0, 4), Space("b", (), 1, 4), Space("c", (), 0, 4)],
            full("a", "b", "c", free={"b": 1}),
            [Request("E", 1, exclusive=True), Request("s1", 1), Request("s2", 1)],
            {},
            ("b",),
            id="an-exclusive-head-drains-the-most-free-node",
        ),
        pytest.param(
            [Space("a", (), 1, 4), Space("b", (), 4, 4), Space("c", (), 1, 4)],
            full("a", "c", free={"a": 1, "c": 1}),
            [Request("E", 1, exclusive=True), Request("s1", 1)],
            {"E": ("b",), "s1": ("a",)},
            None,
            id="it-starts-there-once-the-node-is-idle",
        ),
        pytest.param(
            [
                Space("a", (), 2, 4),
                Space("b", (), 1, 4),
                Space("c", (), 3, 4),
                Space("d", (), 1, 2),
            ],
            [*full("a", "b", "c", free={"a": 2, "b": 1, "c": 3}), Busy("d", 1, None)],
            [Request("mpi", 4, nodes=3), Request("one", 1), Request("two", 1)],
            {"one": ("d",)},  # d (2 cores) could never hold it: free to use
            ("c", "a", "b"),
            id="a-multi-node-head-reserves-every-node-it-needs",
        ),
        pytest.param(
            [Space("a", ("G",), 1, 4), Space("h", ("H",), 2, 4)],
            [*full("a", free={"a": 1}), *full("h", free={"h": 2})],
            [
                Request("E", 1, groups=frozenset({"G"}), exclusive=True),
                Request("low", 1, groups=frozenset({"G", "H"})),
                Request("other", 1, groups=frozenset({"H"})),
                Request("mine", 1, groups=frozenset({"G"})),
            ],
            {"low": ("h",), "other": ("h",)},
            ("a",),
            id="later-requests-keep-using-nodes-outside-the-reservation",
        ),
        pytest.param(
            [Space("a", (), 3, 4)],
            full("a", free={"a": 3}),
            [Request("x", 2, exclusive=True), Request("y", 1, limit_s=1.0)],
            {},
            ("a",),
            id="a-limited-request-does-not-backfill-onto-the-reserved-node",
        ),
        pytest.param(
            [Space("a", (), 3, 4)],
            full("a", free={"a": 3}),
            [Request("x", 3, nodes=2), Request("y", 1)],
            {"y": ("a",)},
            None,
            id="no-reservation-for-what-can-never-fit-plain-backfill",
        ),
        pytest.param(  # a probe: the head's group had only a held node; a wide job starved
            [Space("a", ("G",), 1, 4), Space("b", ("G",), 1, 4)],
            full("a", "b", free={"a": 1, "b": 1}),
            [
                Request("head", 4, groups=frozenset({"X"})),  # no node of X is up: never fits
                Request("wide", 4, nodes=2, groups=frozenset({"G"})),
                Request("s1", 1, groups=frozenset({"G"})),
            ],
            {},
            ("a", "b"),
            id="an-unreservable-head-passes-the-reservation-to-the-next-blocked",
        ),
    ],
)
def test_unknown_time_reservations(spaces, busy, queue, expected, reserved):
    decision = schedule(queue, spaces, busy, now=0.0)
    assert starts(decision) == expected
    if reserved is None:
        assert decision.reservation is None or decision.reservation.key not in expected
    else:
        assert decision.reservation is not None
        assert (decision.reservation.at, decision.reservation.nodes) == (None, reserved)


def test_cores_the_reserved_request_will_not_need_stay_usable():
    # x wants 2 cores on each of 2 nodes: a has 3 free, b 1 (the rest runs with no limit).
    # Reserved a and b; a's third free core is spare: y takes it, z would take x's.
    spaces = [Space("a", (), 3, 4), Space("b", (), 1, 4)]
    busy = full("a", "b", free={"a": 3, "b": 1})
    queue = [Request("x", 2, nodes=2), Request("y", 1), Request("z", 1)]
    decision = schedule(queue, spaces, busy, now=0.0)
    assert starts(decision) == {"y": ("a",)}
    assert decision.reservation is not None
    assert decision.reservation.nodes == ("a", "b")
    assert decision.reservation.spare == {"a": 0, "b": 0}  # (y booked a's)


def test_the_known_time_path_is_unchanged():
    # a runs 2 of its 4 cores until t=100: x (4 cores) is reserved at 100; a request ending
    # by then starts on a, one that does not waits (as before unknown-time reservations).
    spaces = [Space("a", (), 2, 4)]
    busy = [Busy("a", 2, 100.0)]
    queue = [Request("x", 4), Request("short", 1, limit_s=50), Request("long", 1, limit_s=500)]
    decision = schedule(queue, spaces, busy, now=0.0)
    assert starts(decision) == {"short": ("a",)}
    assert decision.reservation is not None and decision.reservation.at == 100.0
    # When some of what it needs has a known end and the rest not, the time is unknown.
    spaces = [Space("a", (), 2, 4), Space("b", (), 2, 4)]
    busy = [Busy("a", 2, 100.0), Busy("b", 2, None)]
    queue = [Request("x", 4, nodes=2), Request("short", 1, limit_s=50)]
    decision = schedule(queue, spaces, busy, now=0.0)
    assert starts(decision) == {}
    assert decision.reservation is not None and decision.reservation.at is None


def test_a_highest_exclusive_job_is_not_passed_by_a_stream_of_unlimited_tasks(cp):  # noqa: F811
    """The probe's case: 3 nodes of 4 cores full of a Normal sweep with no runtime limit; a
    Highest exclusive job gets the first node that drains, not whatever is left after the
    sweep."""
    nodes = [register(cp, f"n{i}", cores=4) for i in (1, 2, 3)]
    stream = cp.submit(sweep(40, nodeGroup="OnPremNodes"))
    assert cp.schedule_pass() == 12
    running = {n.name: n.runs() for n in nodes}
    excl = cp.submit(
        {
            "command": "echo excl",
            "exclusive": True,
            "priority": "Highest",
            "nodeGroup": "OnPremNodes",
        }
    )
    started_on, rounds = None, 0
    while started_on is None and rounds < 12:
        rounds += 1
        for n in nodes:  # each node ends its oldest task
            if running[n.name]:
                done = running[n.name].pop(0)
                n.send(n.started(done), n.ended(done))
        cp.schedule_pass()
        for n in nodes:
            for run in n.runs():
                if run.job_id == excl.id:
                    started_on = n.name
                    assert not running[n.name], "it shares its node with nothing"
                running[n.name].append(run)
    assert started_on is not None and rounds == 4  # the 4 tasks of its node ended, no more
    # It started while the sweep still had queued tasks (the old code ran them all first).
    assert cp.get_job(stream.id).task_counts.get(TaskState.QUEUED, 0) > 0


def test_a_task_held_back_by_the_reservation_says_for_which_job(cp):  # noqa: F811
    """Found by the job-model probe: a sweep task held back by a wide job's reservation said
    "next in line ... the next scheduler pass places it" for as long as it waited."""
    nodes = [register(cp, f"n{i}", cores=4) for i in (1, 2, 3)]
    stream = cp.submit(sweep(20, nodeGroup="OnPremNodes"))
    assert cp.schedule_pass() == 12
    wide = cp.submit(
        {
            "command": "mpi",
            "nodes": 3,
            "cores": 4,
            "priority": "Highest",
            "nodeGroup": "OnPremNodes",
        }
    )
    [done, *_] = nodes[0].runs()
    nodes[0].send(nodes[0].started(done), nodes[0].ended(done))
    assert cp.schedule_pass() == 0  # n1's free core is the wide job's
    waiting = cp.list_tasks(stream.id, states=[TaskState.QUEUED], limit=1)
    reasons = cp.pending_reasons([*waiting, *cp.list_tasks(wide.id)])
    assert reasons[(stream.id, waiting[0].id)] == (
        f"held back for job {wide.id} (task {wide.id}.1), which has n1, n2, n3 reserved, and "
        "for tasks ahead of it: it starts when they free up, then this one as cores allow"
    )
    assert reasons[(wide.id, 1)].endswith(
        "; n1, n2, n3 reserved for it: nothing else takes the cores it needs (no runtime "
        "limit of what runs there gives a time)"
    )


def test_a_known_reservation_time_is_shown():
    from shared.domain.pending import held_for
    from shared.domain.reservation import Reservation

    at = datetime(2026, 1, 1, 12, 30, tzinfo=UTC).timestamp()
    assert held_for((7, 1), Reservation((7, 1), at, ("a",))) == (
        "held back for job 7 (task 7.1), which has a reserved, and for tasks ahead of it: it "
        "starts when they free up (projected at 12:30:00 UTC), then this one as cores allow"
    )
