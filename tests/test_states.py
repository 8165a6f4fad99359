"""The transition table is the only way states change."""

import pytest

from shared.domain.cluster import Node
from shared.domain.models import Job, Task
from shared.domain.states import (
    JOB_TERMINAL,
    JOB_TRANSITIONS,
    NODE_TRANSITIONS,
    TASK_TERMINAL,
    TASK_TRANSITIONS,
    IllegalTransition,
    JobState,
    NodeState,
    TaskState,
)


def test_every_state_has_a_row_in_its_table():
    assert set(JOB_TRANSITIONS) == set(JobState)
    assert set(TASK_TRANSITIONS) == set(TaskState)
    assert set(NODE_TRANSITIONS) == set(NodeState)


def test_state_names_are_hpc_packs():
    assert [s.value for s in JobState] == [
        "Configuring",
        "Submitted",
        "Queued",
        "Running",
        "Finishing",
        "Finished",
        "Failed",
        "Canceling",
        "Canceled",
    ]
    assert [s.value for s in TaskState] == [
        "Queued",
        "Dispatching",
        "Running",
        "Finished",
        "Failed",
        "Canceled",
    ]
    assert [s.value for s in NodeState] == [
        "Offline",
        "Starting",
        "Online",
        "Draining",
        "Stopping",
        "Unreachable",
    ]


def test_finished_task_cannot_run_again():
    task = Task(job_id=1, id=1, command="true", state=TaskState.FINISHED)
    with pytest.raises(IllegalTransition, match="task cannot go from Finished to Running"):
        task.move_to(TaskState.RUNNING)
    assert task.state is TaskState.FINISHED


def test_finished_job_is_terminal_and_cannot_be_requeued():
    job = Job(id=1, state=JobState.FINISHED)
    with pytest.raises(IllegalTransition):
        job.move_to(JobState.QUEUED)
    assert JobState.FINISHED in JOB_TERMINAL


def test_terminal_task_states_only_lead_back_to_queued():
    assert {TaskState.FINISHED, TaskState.FAILED, TaskState.CANCELED} == TASK_TERMINAL
    assert {JobState.FINISHED, JobState.FAILED, JobState.CANCELED} == JOB_TERMINAL
    for state in TASK_TERMINAL:
        assert TASK_TRANSITIONS[state] <= {TaskState.QUEUED}


def test_offline_node_cannot_drain():
    node = Node(name="n1")
    with pytest.raises(IllegalTransition):
        node.move_to(NodeState.DRAINING)


def test_requeued_task_forgets_its_node_and_exit_code():
    task = Task(job_id=1, id=1, command="x", state=TaskState.RUNNING, node="n1", exit_code=3)
    task.move_to(TaskState.QUEUED)
    assert task.node is None and task.exit_code is None and task.state is TaskState.QUEUED


def test_job_counts_move_with_tasks():
    job = Job(id=1, task_count=2, task_counts={TaskState.QUEUED: 2})
    job.count(TaskState.QUEUED, TaskState.DISPATCHING)
    assert job.task_counts == {TaskState.QUEUED: 1, TaskState.DISPATCHING: 1}
    job.count(TaskState.QUEUED, TaskState.DISPATCHING)
    assert job.task_counts == {TaskState.DISPATCHING: 2}
