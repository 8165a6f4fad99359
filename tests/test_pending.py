"""Why a queued task waits: the pure rule as a table, and ``pendingReason`` in the API."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.domain.cluster import Node
from shared.domain.models import Task
from shared.domain.pending import pending_reason
from shared.domain.states import NodeState, TaskState
from tests.test_control import clock, cp, register, sweep  # noqa: F401 - fixtures


def node(name, cores=4, groups=("OnPremNodes",), state=NodeState.ONLINE, inc=1, held=None):
    return Node(
        name=name, cores=cores, groups=list(groups), state=state, incarnation=inc, held=held
    )


def task(cores=1, groups=("OnPremNodes",), state=TaskState.QUEUED):
    return Task(job_id=1, id=1, command="x", cores=cores, node_groups=list(groups), state=state)


@pytest.mark.parametrize(
    ("t", "nodes", "used", "expected"),
    [
        (task(), [node("a")], {}, "next in line: 1 core(s) free in OnPremNodes"),
        (
            task(cores=2),
            [node("a"), node("b")],
            {"a": 3, "b": 3},
            "waiting for 2 free core(s) on one node in OnPremNodes (6 of 8 cores busy; "
            "at most 1 free on any node)",
        ),
        (
            task(cores=8),
            [node("a")],
            {},
            "needs 8 cores on one node; the largest Online node in OnPremNodes has 4",
        ),
        (
            task(groups=("AzureNodes",)),
            [node("a"), node("z", groups=("AzureNodes",), state=NodeState.OFFLINE)],
            {},
            "no Online node in AzureNodes (1 Offline)",
        ),
        (
            task(groups=()),
            [],
            {},
            "the cluster has no nodes: add some (hpc node add --group G for VMs, hpc agent run "
            "--group G on a machine, or hpc node set NAME --group G)",
        ),
        (  # its group's only node was moved to another group (job-model probe)
            task(groups=("Solo",)),
            [node("a")],
            {},
            "Solo has no nodes: add some (hpc node add --group Solo for VMs, hpc agent run "
            "--group Solo on a machine, or hpc node set NAME --group Solo)",
        ),
        (
            task(groups=("AzureNodes",)),
            [
                node("z1", groups=("AzureNodes",), state=NodeState.STARTING),
                node("z2", groups=("AzureNodes",), state=NodeState.OFFLINE),
            ],
            {},
            "waiting for z1 to start in AzureNodes",
        ),
        (task(state=TaskState.RUNNING), [node("a")], {}, None),
    ],
)
def test_pending_reason(t, nodes, used, expected):
    reason = pending_reason(t, nodes, used)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and reason.startswith(expected), reason


def test_queued_jobs_and_tasks_say_why_they_wait(cp):
    n1 = register(cp, "n1", cores=2)
    job = cp.submit({**sweep(3), "tasks": [{"command": "x", "sweep": "1-3", "cores": 2}]})
    cp.schedule_pass()  # the first task takes both cores
    tasks = cp.list_tasks(job.id)
    reasons = cp.pending_reasons(tasks)
    assert set(reasons) == {(job.id, 2), (job.id, 3)}
    assert reasons[(job.id, 2)].startswith("waiting for 2 free core(s) on one node")
    assert cp.job_pending_reasons([cp.get_job(job.id)]) == {job.id: reasons[(job.id, 2)]}
    n1.send(n1.stopping())  # the node leaves: now nothing can run them
    assert cp.job_pending_reasons([cp.get_job(job.id)])[job.id].startswith(
        "no Online node in the cluster (1 Offline)"
    )


def queued_job(job_id, priority=2000, groups=(), second=0, queued=1, **kw):
    from shared.domain.models import Job

    return Job(
        id=job_id,
        priority=priority,
        node_groups=list(groups),
        submit_time=datetime(2026, 1, 1, 0, 0, second, tzinfo=UTC),
        task_counts={TaskState.QUEUED: queued} if queued else {TaskState.RUNNING: 1},
        **kw,
    )


NOW = datetime(2026, 1, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("others", "expected"),
    [
        ([], "waiting"),
        ([queued_job(2, priority=3000)], "1 job of higher priority ahead; waiting"),
        (
            [queued_job(2, 3000), queued_job(3, 4000), queued_job(4, 2000, second=0)],
            "2 jobs of higher priority ahead; 1 earlier job of the same priority ahead; waiting",
        ),
        ([queued_job(2, 2000, second=9), queued_job(3, 1000)], "waiting"),  # behind it
        ([queued_job(2, 3000, queued=0)], "waiting"),  # nothing queued: not ahead
        ([queued_job(2, 3000, groups=("AzureNodes",))], "waiting"),  # other nodes
        (
            [queued_job(2, 3000, groups=("OnPremNodes", "AzureNodes"))],
            "1 job of higher priority ahead; waiting",
        ),
        # Only jobs that could start now are ahead (found by the job-model probe: a held
        # job was counted); job 7 Finished, job 8 Running.
        ([queued_job(2, 3000, held=True)], "waiting"),
        ([queued_job(2, 3000, hold_until=NOW.replace(hour=2))], "waiting"),
        (
            [queued_job(2, 3000, hold_until=NOW.replace(hour=0))],
            "1 job of higher priority ahead; waiting",
        ),
        ([queued_job(2, 3000, depends_on=[8])], "waiting"),
        ([queued_job(2, 3000, depends_on=[7])], "1 job of higher priority ahead; waiting"),
        ([queued_job(2, 2000, depends_on=[8])], "waiting"),
    ],
)
def test_the_jobs_ahead_lead_a_wait_for_cores(others, expected):
    from shared.domain.pending import behind
    from shared.domain.states import JobState

    mine = queued_job(5, 2000, groups=("OnPremNodes",), second=1)
    states = {7: JobState.FINISHED, 8: JobState.RUNNING}
    assert behind(mine, [mine, *others], "waiting", now=NOW, prerequisites=states) == expected


def test_a_job_behind_higher_priority_work_says_how_many_jobs_are_ahead(cp):
    register(cp, "n1", cores=2)
    first = cp.submit({"name": "a", "priority": "Highest", "command": "x", "cores": 2})
    cp.schedule_pass()
    cp.submit({"name": "b", "priority": "Highest", "command": "x", "cores": 2})
    low = cp.submit({"name": "c", "command": "x", "cores": 2})
    [task] = cp.list_tasks(low.id)
    reason = cp.pending_reasons([task])[(low.id, 1)]
    assert reason.startswith("1 job of higher priority ahead; waiting for 2 free core(s)")
    assert first.id < low.id


def test_held_and_dependent_jobs_are_not_counted_ahead(cp):
    register(cp, "n1", cores=2)
    first = cp.submit({"name": "a", "priority": "Highest", "command": "x", "cores": 2})
    cp.schedule_pass()
    held = cp.submit({"name": "b", "priority": "Highest", "command": "x", "cores": 2})
    cp.hold_job(held.id)
    cp.submit({"name": "d", "priority": "Highest", "command": "x", "dependsOn": [first.id]})
    low = cp.submit({"name": "c", "command": "x", "cores": 2})
    [task] = cp.list_tasks(low.id)
    assert cp.pending_reasons([task])[(low.id, 1)].startswith("waiting for 2 free core(s)")
    cp.release_job(held.id)
    reason = cp.pending_reasons([task])[(low.id, 1)]
    assert reason.startswith("1 job of higher priority ahead; waiting for 2 free core(s)")


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        (  # found by a live probe: the held node was not named
            [node("z1", groups=("AzureNodes",), state=NodeState.OFFLINE, held="offline")],
            "no Online node in AzureNodes (1 Offline); held by an admin: z1 "
            "(hpc node online z1 brings it back)",
        ),
        (  # a VM held off (a cost freeze): release it, or boot it now (a probe)
            [
                node(
                    "z1", groups=("AzureNodes",), state=NodeState.OFFLINE, held="offline"
                ).model_copy(update={"provider": "azure"})
            ],
            "no Online node in AzureNodes (1 Offline); held by an admin: z1 (hpc node release "
            "z1 lets the autoscaler start it as work needs; hpc node online z1 starts it now)",
        ),
        (
            [
                node("z1", groups=("AzureNodes",), cores=2),
                node("z2", groups=("AzureNodes",), state=NodeState.DRAINING, held="drain"),
            ],
            "waiting for 2 free core(s) on one node in AzureNodes (2 of 2 cores busy; at most 0 "
            "free on any node); held by an admin: z2 (hpc node online z2 brings it back)",
        ),
        (  # it can run now: the hold is not why it waits
            [
                node("z1", groups=("AzureNodes",)),
                node("z2", groups=("AzureNodes",), state=NodeState.OFFLINE, held="offline"),
            ],
            "next in line: 2 core(s) free in AzureNodes; the next scheduler pass places it",
        ),
    ],
)
def test_a_wait_names_the_nodes_an_admin_holds(nodes, expected):
    used = {"z1": 2} if "waiting" in expected else {}
    assert pending_reason(task(cores=2, groups=("AzureNodes",)), nodes, used) == expected


def test_a_wait_for_cores_names_the_nodes_still_starting():
    """Found by the autoscaler's fault probe: once one node of the group was Online, a task
    waiting for cores no longer said that more were starting."""
    nodes = [
        node("z1", groups=("AzureNodes",), cores=2),
        node("z3", groups=("AzureNodes",), state=NodeState.STARTING, inc=0),
        node("z4", groups=("AzureNodes",), state=NodeState.STARTING, inc=0),
    ]
    assert pending_reason(task(cores=2, groups=("AzureNodes",)), nodes, {"z1": 2}) == (
        "waiting for 2 free core(s) on one node in AzureNodes (2 of 2 cores busy; at most 0 "
        "free on any node); z3, z4 starting"
    )
