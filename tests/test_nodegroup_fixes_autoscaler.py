"""The autoscaler's grow notes (pure): "wants 1 node", not "wants 1 nodes", and a group with no
nodes, or too few Offline ones, says what to add."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.domain.autoscaler import AutoscalerState, GroupMemory
from tests.test_autoscaler import AZ, MIN, OFF, ON, T0, azure_vms, node, policy, run, tasks


def grow_notes(decision) -> list[str]:
    return [str(n) for n in decision.notes if n.grows]


@pytest.mark.parametrize(
    ("nodes", "kw", "expected"),
    [
        (
            [],
            {"min_nodes": 1, "max_nodes": 3},
            "AzureNodes: wants 1 node, starts 0: the group has no nodes to start; add them "
            "with hpc node add --group AzureNodes --count N",
        ),
        (
            [],
            {"max_nodes": 0},
            "AzureNodes: wants 1 node, starts 0: the group has no nodes to start; raise its "
            "maxNodes (hpc nodegroup set AzureNodes --max N) and add them with hpc node add "
            "--group AzureNodes --count N",
        ),
        (
            [node("az-1", ON)],
            {"min_nodes": 3, "max_nodes": 5},
            "AzureNodes: wants 2 nodes, starts 0 (maxNodes 5, 0 Offline, 10 starts left this "
            "run): it has no more Offline nodes to start; add some with hpc node add --group "
            "AzureNodes --count 2",
        ),
        (
            azure_vms(2),
            {"min_nodes": 3, "max_nodes": 3},
            "AzureNodes: wants 3 nodes, starts 2 (maxNodes 3, 2 Offline, 10 starts left this "
            "run): it has no more Offline nodes to start; add some with hpc node add --group "
            "AzureNodes --count 1",
        ),
        (
            azure_vms(3),
            {"min_nodes": 3, "max_nodes": 2},  # max is what holds it: nothing to add
            "AzureNodes: wants 3 nodes, starts 2 (maxNodes 2, 3 Offline, 10 starts left this run)",
        ),
    ],
)
def test_a_group_short_of_nodes_says_what_to_add(nodes, kw, expected):
    queued = tasks(1, groups=(AZ,)) if not kw.get("min_nodes") else ()
    pol = policy(**kw)
    pol = replace(pol, max_starts_per_run=10)
    assert grow_notes(run(nodes, queued, pol=pol)) == [expected]


def test_a_backoff_note_says_node_in_the_singular():
    state = AutoscalerState(
        groups={AZ: GroupMemory(backoff_until=T0 + MIN, last_failure="az-1: QuotaExceeded")}
    )
    decision = run([node("az-1", OFF)], tasks(1), state=state)
    assert grow_notes(decision) == [
        "AzureNodes: wants 1 node but backs off until 12:01:00 after: az-1: QuotaExceeded"
    ]
