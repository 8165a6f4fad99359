"""A VM an admin took offline while it ran tasks: their next attempts waited for the
heartbeat timeout (90 s in Azure) though the VM was known deallocated, since its agent
might still run them. Once its deallocation is done nothing runs there, so they start then
(the rule as a table, then through the control plane on the local provider, whose "VMs"
run no agent here: an AgentDouble plays its agent)."""

# ruff: noqa: F811 - pytest fixtures imported from tests/test_control.py and tests/test_nodes_admin.py

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain import lifecycle
from shared.domain.models import LostAttempt, Task
from shared.domain.states import TaskState
from shared.ports.compute import PowerState
from tests.agent_double import AgentDouble
from tests.helpers import wait_until
from tests.test_autoscale_faults_usecases import AZ, managed
from tests.test_control import clock, cp, register  # noqa: F401 - fixtures
from tests.test_nodes_admin import provider  # noqa: F401 - fixture

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LATER = T0 + timedelta(seconds=90)


@pytest.mark.parametrize(
    ("lost", "gone", "lifted", "after"),
    [
        ([LostAttempt(attempt=0, node="vm1", until=LATER)], "vm1", True, [None]),
        ([LostAttempt(attempt=0, node="vm1", until=LATER)], "vm2", False, [LATER]),  # elsewhere
        ([LostAttempt(attempt=0, node="vm1", until=None)], "vm1", False, [None]),  # no hold
        (
            [
                LostAttempt(attempt=0, node="vm2", until=LATER),
                LostAttempt(attempt=1, node="vm1", until=LATER),
            ],
            "vm1",
            True,
            [LATER, None],  # only the attempt that ran on the machine that is off
        ),
    ],
)
def test_a_machine_known_off_lifts_the_holds_of_what_ran_there(lost, gone, lifted, after):
    task = Task(job_id=1, id=1, command="x", state=TaskState.QUEUED, lost=lost)
    assert lifecycle.machine_gone(task, gone) is lifted
    assert [x.until for x in task.lost] == after


def test_the_next_attempt_starts_once_the_vm_is_deallocated(cp, provider, clock):
    [vm] = managed(cp, provider, 1)
    cp.node_action("start", [vm])
    agent = AgentDouble(cp, vm, cores=1, groups=(AZ,))
    assert agent.register().accepted
    job = cp.submit({"command": "x", "nodeGroups": [AZ, "OnPremNodes"]})
    assert cp.schedule_pass() == 1
    [run] = agent.runs()
    agent.send(agent.started(run))
    onprem = register(cp, "n2", cores=1)
    cp.node_action("offline", [vm])
    assert cp.store.get_node(vm).given_up == [(job.id, 1)]
    assert cp.schedule_pass() == 0  # it may still run on the VM: held
    wait_until(lambda: provider.power_states()[vm] is PowerState.DEALLOCATED)
    clock.advance(1)  # far from the heartbeat timeout
    cp.autoscale()  # polls the deallocation: done
    assert cp.store.get_node(vm).given_up == []
    assert cp.schedule_pass() == 1
    [again] = onprem.runs()
    assert (again.job_id, again.attempt) == (job.id, 1)
