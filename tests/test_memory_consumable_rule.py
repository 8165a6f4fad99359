"""Consumable memory's rule and accounting (shared.domain.memoryfit), as a table: does a
request of M MB fit a node of N MB whose running tasks hold H, and what do active tasks hold
on each node."""

from __future__ import annotations

import pytest

from shared.adapters.cosmos_index_docs import holding
from shared.domain.hosts import Holding, Seat
from shared.domain.memoryfit import fits_now, free_mb, held_memory
from shared.domain.models import Host, Task

G = 1024


@pytest.mark.parametrize(
    ("need", "memory", "held", "fits"),
    [
        (None, None, 0, True),  # asks none: any node, even of unknown memory
        (None, 4 * G, 4 * G, True),  # asks none: a node whose memory is all held still takes it
        (8 * G, None, 0, False),  # unknown memory runs no task asking for memory
        (8 * G, 16 * G, 0, True),
        (8 * G, 16 * G, 8 * G, True),  # exactly what is left
        (8 * G, 12 * G, 8 * G, False),  # 4 GB left
        (8 * G, 16 * G, 8 * G + 1, False),
        (8 * G, 4 * G, 0, False),  # the node is too small whatever runs
        (1, 16 * G, 20 * G, False),  # more held than it has (it reported less later): none free
    ],
)
def test_a_request_fits_the_memory_its_nodes_running_tasks_leave(
    need: int | None, memory: int | None, held: int, fits: bool
) -> None:
    assert fits_now(need, memory, held) is fits


@pytest.mark.parametrize(
    ("memory", "held", "free"),
    [(None, 0, None), (None, 8 * G, None), (16 * G, 0, 16 * G), (16 * G, 12 * G, 4 * G)]
    + [(16 * G, 17 * G, 0)],
)
def test_free_memory_is_what_no_running_task_holds(
    memory: int | None, held: int, free: int | None
) -> None:
    assert free_mb(memory, held) == free


def _task(task_id: int, mb: int | None, *nodes: str) -> Task:
    t = Task(job_id=1, id=task_id, command="x", min_memory_mb=mb)
    t.node, t.hosts = nodes[0], [Host(node=n, cores=1) for n in nodes]
    return t


@pytest.mark.parametrize(
    ("active", "held"),
    [
        ([], {}),
        ([_task(1, None, "a")], {}),  # asks none: holds none
        ([_task(1, 8 * G, "a"), _task(2, 4 * G, "a")], {"a": 12 * G}),
        ([_task(1, 2 * G, "a", "b", "c")], {"a": 2 * G, "b": 2 * G, "c": 2 * G}),  # each node
        ([Holding(1, 1, (Seat("a", 4), Seat("b", 4)), memory_mb=G)], {"a": G, "b": G}),
        ([Holding(1, 1, (Seat("a", 4),))], {}),  # a holding of no memory
    ],
)
def test_active_tasks_hold_their_ask_on_each_of_their_nodes(
    active: list[Task | Holding], held: dict[str, int]
) -> None:
    assert held_memory(active) == held


def test_an_active_pointer_written_before_memory_was_held_holds_none() -> None:
    old = {"jobId": 1, "taskId": 2, "hosts": [["a", 2, 1]], "runtimeLimitS": None, "since": None}
    assert holding(old).memory_mb is None
    assert holding({**old, "memoryMb": 4096}).memory_mb == 4096
