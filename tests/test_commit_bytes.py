"""Every commit of many tasks stays within the store's bytes as well as its count
(MAX_BATCH_BYTES: a Cosmos DB transactional batch is 2 MB), not only the scheduler's.

Found by a probe: 64 tasks of one job with 32 KB commands, their starts and ends reported in
one batch of events, made a 2.1 MB commit; the store refused it, and those tasks' events were
not applied. The same held for cancel, requeue and the other use cases that commit a job's
tasks in parts of MAX_BATCH (``deps.chunks``). On the real control plane use cases and the
embedded store, which refuses what Cosmos refuses.
"""

from __future__ import annotations

import pytest

from shared.domain.models import Task
from shared.domain.states import JobState, TaskState
from shared.domain.taskrange import TaskRange
from shared.ports.store import MAX_BATCH_BYTES, size_bound, stored_size
from shared.usecases.deps import CHUNK, CHUNK_BYTES, chunks
from tests.test_control import Clock, make_cp, register

LONG = "x" * 32_700


@pytest.mark.parametrize(
    "command", ["true", "x" * 32_700, "ж" * 32_700, "🚀" * 16_000, '"\\' * 16_000]
)
def test_the_bound_is_never_below_what_the_store_measures(command):
    task = Task(job_id=1, id=1, command=command, env={"A": "é" * 500}, depends_on=["a"] * 10)
    assert size_bound(task) >= stored_size(task)
    sweep = TaskRange(job_id=1, first_id=1, count=5, start=1, template=task, name_prefix="p")
    assert size_bound(sweep) >= stored_size(sweep)


def test_typical_tasks_go_by_count_long_ones_by_bytes():
    small = [Task(job_id=1, id=i, command="echo hi") for i in range(1, 301)]
    assert [len(c) for c in chunks(small)] == [CHUNK, CHUNK, CHUNK, 3]
    big = [Task(job_id=1, id=i, command=LONG) for i in range(1, 41)]
    parts = list(chunks(big))
    assert sum(len(p) for p in parts) == 40 and len(parts) > 1
    assert all(sum(size_bound(t) for t in p) <= CHUNK_BYTES for p in parts)
    assert CHUNK_BYTES < MAX_BATCH_BYTES
    assert [len(c) for c in chunks(["a", "b", "c"], 2)] == [2, 1]  # other items: by count


def test_sixty_four_long_tasks_started_and_ended_in_one_batch_all_apply(tmp_path):
    cp = make_cp(tmp_path, Clock())
    big = register(cp, "big", cores=64, groups=("BigNodes",))
    job = cp.submit(
        {"name": "long", "nodeGroups": ["BigNodes"], "tasks": [{"command": "sleep 5 # " + LONG, "sweep": "1-64"}]}
    )  # fmt: skip
    cp.schedule_pass()
    runs = big.runs()
    assert len(runs) == 64
    big.send(*[big.started(r) for r in runs], *[big.ended(r, 0) for r in runs])  # one batch
    done = cp.get_job(job.id)
    assert done.task_counts.get(TaskState.FINISHED) == 64 and done.state is JobState.FINISHED


def test_a_job_of_long_tasks_is_canceled_and_requeued_in_parts(tmp_path):
    cp = make_cp(tmp_path, Clock())
    register(cp, "n1", cores=1)
    tasks = [{"name": f"t{i}", "command": "sleep 5 # " + LONG} for i in range(150)]
    job = cp.submit({"name": "long", "tasks": tasks})
    cp.cancel_job(job.id)
    assert cp.get_job(job.id).state is JobState.CANCELED
    cp.requeue_job(job.id)
    requeued = cp.get_job(job.id)
    assert requeued.task_counts.get(TaskState.QUEUED) == 150
