"""A heartbeat applied after the task events of its batch (one snapshot per node does for
all) is first brought up to the node's last event: it must not list as running an attempt
whose end came after it (its node would be told to kill an attempt already over: the
"runs N attempt(s) no longer its own" of every busy Cosmos run), nor leave out one started
after it. The rule (:func:`lifecycle.brought_up_to_date`) is pure: a table, then the batch.
"""

from __future__ import annotations

import pytest

from shared.domain import lifecycle
from shared.domain.messages import (
    CancelTask,
    Heartbeat,
    NodeStopping,
    TaskEnded,
    TaskStarted,
)
from shared.domain.states import TaskState
from tests.test_control import make_cp, register, sweep
from tests.test_exactly_once import F, clock  # noqa: F401 (the fixture)


def beat(seq: int, running: list[str], node: str = "n1", inc: int = 1) -> Heartbeat:
    return Heartbeat(node=node, incarnation=inc, seq=seq, free_cores=1, running=running)


def started(seq: int, key: str, node: str = "n1", inc: int = 1) -> TaskStarted:
    job, task, attempt = (int(p) for p in key.split("."))
    return TaskStarted(
        node=node, incarnation=inc, seq=seq, job_id=job, task_id=task, attempt=attempt
    )


def ended(seq: int, key: str, node: str = "n1", inc: int = 1, code: int = 0) -> TaskEnded:
    job, task, attempt = (int(p) for p in key.split("."))
    return TaskEnded(
        node=node,
        incarnation=inc,
        seq=seq,
        job_id=job,
        task_id=task,
        attempt=attempt,
        exit_code=code,
    )


CASES = [
    # (what, the batch's other events, running after)
    ("an end after the beat", [ended(6, "1.1.0")], ["1.2.0"]),
    ("an end before the beat is already in it", [ended(4, "1.1.0")], ["1.1.0", "1.2.0"]),
    ("a start after the beat", [started(6, "1.3.0")], ["1.1.0", "1.2.0", "1.3.0"]),
    ("started and ended after it", [started(6, "1.3.0"), ended(7, "1.3.0")], ["1.1.0", "1.2.0"]),
    ("another node's end", [ended(6, "1.1.0", node="n2")], ["1.1.0", "1.2.0"]),
    ("an end of another incarnation", [ended(6, "1.1.0", inc=2)], ["1.1.0", "1.2.0"]),
    ("not a task event", [NodeStopping(node="n1", incarnation=1, seq=6)], ["1.1.0", "1.2.0"]),
]  # fmt: skip


@pytest.mark.parametrize(("what", "others", "running"), CASES)
def test_a_heartbeat_is_brought_up_to_the_nodes_last_event(what, others, running):
    hb = beat(5, ["1.1.0", "1.2.0"])
    now = lifecycle.brought_up_to_date(hb, lifecycle.in_order([hb, *others]))
    assert now.running == running, what
    assert now.ended == hb.ended, what  # an end's own TaskEnded applies it, with its output


def test_a_heartbeat_nothing_came_after_is_applied_as_sent():
    hb = beat(5, ["1.1.0"])
    assert lifecycle.brought_up_to_date(hb, [ended(4, "1.1.0"), hb]) is hb


def test_a_heartbeat_sent_before_an_end_in_the_same_batch_cancels_nothing(tmp_path, clock):  # noqa: F811
    cp = make_cp(tmp_path, clock)
    n1 = register(cp, "n1", cores=2)
    job = cp.submit(sweep(2))
    cp.schedule_pass()
    first, second = n1.runs()
    n1.send(n1.started(first), n1.started(second))
    # The agent beats while both run, then the first ends; one batch brings both.
    hb = n1.heartbeat(running=[f"{job.id}.1.0", f"{job.id}.2.0"])
    n1.send(n1.ended(first), hb)  # delivered in any order: applied by seq
    assert [a for a in n1.assignments() if isinstance(a, CancelTask)] == []
    assert cp.get_task(job.id, 1).state is F
    assert cp.get_task(job.id, 2).state is TaskState.RUNNING
    assert cp.store.get_node("n1").missing_since == {}
