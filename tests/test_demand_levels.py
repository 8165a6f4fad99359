"""The autoscaler's bin-packing of plain parts (cores only) by free-core levels gives the same
count as the first fit decreasing it replaced, whose scan of every node made a run quadratic in
the work left over (a helper measured about 400 ms for 6,000 tasks)."""

from __future__ import annotations

import random

import pytest

from shared.domain.demand import nodes_needed


def first_fit_decreasing(needs: list[int], node_cores: int) -> int:
    """The scan it replaced, as it was."""
    bins: list[int] = []
    for need in sorted(needs, reverse=True):
        for i, free in enumerate(bins):
            if free >= need:
                bins[i] -= need
                break
        else:
            bins.append(node_cores - need)
    return len(bins)


@pytest.mark.parametrize("seed", range(200))
def test_the_same_count_as_a_scan_of_every_node(seed: int) -> None:
    rng = random.Random(seed)
    node_cores = rng.choice([1, 2, 3, 4, 8, 16, 64, 96])
    needs = [rng.randint(1, node_cores + 2) for _ in range(rng.randint(0, 300))]
    parts = [(n, None) for n in needs]
    assert nodes_needed(parts, node_cores) == first_fit_decreasing(needs, node_cores)


@pytest.mark.parametrize(
    ("needs", "node_cores", "expected"),
    [
        ([], 4, 0),
        ([1, 1, 4], 4, 2),
        ([3, 3, 1, 1], 4, 2),
        ([3, 2, 2, 1], 4, 2),  # 3+1, 2+2
        ([5], 4, 1),  # too wide for any node: one of its own, never shared
        ([5, 1], 4, 2),
        ([2] * 1000, 4, 500),
    ],
)
def test_a_table(needs: list[int], node_cores: int, expected: int) -> None:
    assert nodes_needed([(n, None) for n in needs], node_cores) == expected
    assert first_fit_decreasing(needs, node_cores) == expected


def test_parts_with_an_owner_or_memory_still_pack_as_before() -> None:
    """Only plain parts take the levels: a multi-node task's parts go on different nodes."""
    assert nodes_needed([(1, "t1"), (1, "t1"), (1, "t1")], 4) == 3
    assert nodes_needed([(1, None, None, 3000), (1, None, None, 3000)], 4, 4096) == 2
