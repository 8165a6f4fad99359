"""Why a task waits under job-level exclusive: the nodes other jobs use (or hold) are named."""

from __future__ import annotations

import pytest

from shared.domain.cluster import Node
from shared.domain.hosts import Holding, Seat
from shared.domain.jobexclusive import occupancy
from shared.domain.models import Task
from shared.domain.pending import pending_reason
from shared.domain.states import NodeState

E, N = 1, 2


def node(name: str) -> Node:
    return Node(name=name, cores=4, groups=["G"], state=NodeState.ONLINE, incarnation=1)


def task(job: int, **kw) -> Task:
    return Task(job_id=job, id=5, command="x", node_groups=["G"], job_exclusive=job == E, **kw)


@pytest.mark.parametrize(
    ("queued", "running", "expected"),
    [
        pytest.param(
            task(E),
            Holding(N, 1, (Seat("a", 1),)),
            "waiting for 1 free core(s) on one node in G: exclusive job: waits for nodes with no "
            "other job's task (a runs another job's task)",
            id="exclusive-job-behind-another-jobs-task",
        ),
        pytest.param(
            task(E, nodes=1, exclusive=True),
            Holding(N, 1, (Seat("a", 1),)),
            "waiting for an idle node in G: exclusive job: waits for nodes with no other job's "
            "task (a runs another job's task)",
            id="task-exclusive-in-an-exclusive-job",
        ),
        pytest.param(
            task(N),
            Holding(E, 1, (Seat("a", 1),), job_exclusive=True),
            "waiting for 1 free core(s) on one node in G: a held by exclusive job 1",
            id="normal-job-behind-a-held-node",
        ),
        pytest.param(
            task(E),
            Holding(E, 1, (Seat("a", 1),), job_exclusive=True),
            "next in line: 1 core(s) free in G; the next scheduler pass places it",
            id="its-own-jobs-node-is-room",
        ),
    ],
)
def test_pending_reason_names_what_job_exclusive_keeps_it_from(queued, running, expected):
    reason = pending_reason(queued, [node("a")], {"a": 1}, occupied=occupancy([running]))
    assert reason == expected
