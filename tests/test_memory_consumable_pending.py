"""Why a task asking for memory waits when nodes have its cores free but running tasks hold
the memory it needs (consumable memory: shared.domain.memoryfit): it says how much free
memory it waits for, where, and the node with the most free. Pure tables."""

from __future__ import annotations

import pytest

from shared.domain.pending import pending_reason
from tests.test_memory_pending import asking, mem

G = 1024


@pytest.mark.parametrize(
    ("t", "held", "expected"),
    [
        (
            asking(8),
            {"node-3": 12 * G},
            "waiting for 8 GB free memory on one node in OnPremNodes (node-3 has 4 GB free: "
            "running tasks hold the rest)",
        ),
        (
            asking(8),
            {"node-3": 12 * G, "node-4": 10 * G},
            "waiting for 8 GB free memory on one node in OnPremNodes (node-4 has 6 GB free, "
            "the most of the 2 nodes with its cores free: running tasks hold the rest)",
        ),
        (
            asking(8, nodes=2),
            {"node-3": 12 * G},
            "waiting for 8 GB free memory on each of 2 nodes in OnPremNodes (node-3 has 4 GB "
            "free: running tasks hold the rest)",
        ),
        (
            asking(8),
            {"node-3": 8 * G},
            "next in line: 1 core(s) free in OnPremNodes; the next scheduler pass places it",
        ),  # fmt: skip
    ],
)
def test_a_task_waits_for_the_memory_running_tasks_hold(t, held, expected):
    nodes = [mem("node-3", 16), mem("node-4", 16)]
    used = {"node-3": 1, "node-4": 1}
    if t.nodes == 1:
        nodes = nodes if "node-4" in held else nodes[:1]
    assert pending_reason(t, nodes, used, held_mb=held) == expected
