"""A scheduler pass splits each job's commits by bytes as well as by count: a store commit
(a Cosmos DB transactional batch) holds at most MAX_BATCH_BYTES. Tasks with long commands
used to make every pass fail on the first commit over it, so nothing in the cluster was
scheduled again until that job was canceled."""

from __future__ import annotations

from shared.domain.messages import RunTask
from shared.domain.states import JobState, TaskState
from shared.ports.store import MAX_BATCH_BYTES, stored_size
from shared.usecases import dispatch
from shared.usecases.dispatch import JOB_SLACK, TASK_SLACK, fit
from tests.test_control import Clock, make_cp, register

LONG = "x" * 32_700


def run_in_parts(agent, part: int = 8) -> list[RunTask]:
    """Start and end the agent's assignments a few tasks per batch of events: the event
    path commits each batch's tasks of a job together (kept under the byte limit here)."""
    runs = agent.runs()
    for i in range(0, len(runs), part):
        some = runs[i : i + part]
        agent.send(*[agent.started(r) for r in some], *[agent.ended(r, 0) for r in some])
    return runs


def dispatching(cp, job_id: int) -> int:
    return cp.get_job(job_id).task_counts.get(TaskState.DISPATCHING, 0)


def test_fit_takes_the_longest_prefix_within_the_budget():
    assert fit([], 10) == 0
    assert fit([4, 4, 4], 12) == 3
    assert fit([4, 4, 4], 11) == 2
    assert fit([4, 1, 1], 5) == 2  # a prefix: never skips ahead to smaller ones
    assert fit([11, 1], 10) == 0  # not even the first
    assert fit([0, 0], 0) == 2


def test_fit_reads_costs_lazily():
    read: list[int] = []

    def costs():
        for c in [5, 5, 5, 5]:
            read.append(c)
            yield c

    assert fit(costs(), 10) == 2
    assert len(read) == 3  # the overflowing one, no further


def test_a_sweep_of_long_commands_is_committed_in_parts_and_others_go_on(tmp_path):
    cp = make_cp(tmp_path, Clock())
    big = register(cp, "big", cores=64, groups=("BigNodes",))
    small = register(cp, "small", cores=1)
    job = cp.submit(
        {
            "name": "longascii",
            "nodeGroups": ["BigNodes"],
            "tasks": [{"command": "sleep 5 # " + LONG, "sweep": "1-80"}],
        }
    )
    other = cp.submit({"name": "other", "tasks": [{"command": "true"}]})
    assert cp.schedule_pass() == 65  # 64 on big (over 2 MB: several commits), 1 on small
    assert dispatching(cp, job.id) == 64
    assert dispatching(cp, other.id) == 1
    assert [r.job_id for r in small.runs()] == [other.id]
    first = run_in_parts(big)
    assert len(first) == 64
    assert all(r.command.startswith("sleep 5 # x") for r in first)
    assert cp.schedule_pass() == 16
    rest = run_in_parts(big)
    assert sorted(r.task_id for r in first + rest) == list(range(1, 81))
    assert cp.get_job(job.id).state is JobState.FINISHED


def test_single_tasks_of_long_non_ascii_commands_are_committed_in_parts(tmp_path):
    cp = make_cp(tmp_path, Clock())
    big = register(cp, "big", cores=64, groups=("BigNodes",))
    small = register(cp, "small", cores=1)
    task = {"command": "true # " + "ж" * 32_700}
    job = cp.submit({"name": "cyr", "nodeGroups": ["BigNodes"], "tasks": [task] * 12})
    other = cp.submit(
        {"name": "other", "nodeGroups": ["OnPremNodes"], "tasks": [{"command": "true"}]}
    )
    assert 12 * stored_size(cp.store.get_task(job.id, 1)) > MAX_BATCH_BYTES
    assert cp.schedule_pass() == 13
    assert sorted((r.job_id, r.task_id) for r in big.runs()) == [(job.id, i) for i in range(1, 13)]
    assert [r.job_id for r in small.runs()] == [other.id]


def _bloat(cp, job_id: int, job_bytes: int) -> None:
    """Grow the job's document to ``job_bytes``, straight in the store (a job document
    grows with its steps; submit bounds no such total)."""
    job = cp.store.get_job(job_id)
    job.name = "n" * (job_bytes - stored_size(job) + len(job.name))
    cp.store.commit(job=job)
    assert stored_size(cp.store.get_job(job_id)) == job_bytes


def test_a_task_no_commit_holds_fails_and_others_go_on(tmp_path, monkeypatch):
    cp = make_cp(tmp_path, Clock())
    register(cp, "a", cores=1)
    small = register(cp, "b", cores=1)
    huge = cp.submit({"name": "huge", "tasks": [{"command": "true"}]})
    other = cp.submit({"name": "other", "tasks": [{"command": "true"}]})
    _bloat(cp, huge.id, 1_000_000)
    task = cp.store.get_task(huge.id, 1)
    # Its failure fits one commit, its dispatch (hosts, node) does not.
    limit = 1_000_000 + JOB_SLACK + stored_size(task) + TASK_SLACK
    monkeypatch.setattr(dispatch, "MAX_BATCH_BYTES", limit)
    assert cp.schedule_pass() == 1
    failed = cp.store.get_task(huge.id, 1)
    assert failed.state is TaskState.FAILED
    assert failed.error is not None
    assert f"at most {limit:,} (a Cosmos DB transactional batch" in failed.error
    assert cp.get_job(huge.id).state is JobState.FAILED
    assert [r.job_id for r in small.runs()] == [other.id]


def test_a_job_whose_documents_no_commit_holds_waits_and_others_go_on(tmp_path, caplog):
    cp = make_cp(tmp_path, Clock())
    register(cp, "a", cores=1)
    small = register(cp, "b", cores=1)
    huge = cp.submit({"name": "huge", "tasks": [{"command": "true"}]})
    other = cp.submit({"name": "other", "tasks": [{"command": "true"}]})
    _bloat(cp, huge.id, MAX_BATCH_BYTES - 100)  # a document, but no room for a task beside
    assert cp.schedule_pass() == 1
    assert cp.store.get_task(huge.id, 1).state is TaskState.QUEUED
    assert [r.job_id for r in small.runs()] == [other.id]
    assert "cannot be committed" in caplog.text
    assert cp.schedule_pass() == 0  # no error in later passes either


def test_several_sweeps_of_one_job_count_their_ranges_in_each_commit(tmp_path):
    cp = make_cp(tmp_path, Clock())
    big = register(cp, "big", cores=64, groups=("BigNodes",))
    sweeps = [{"command": f"{c} # " + LONG, "sweep": "1-30"} for c in "abc"]
    job = cp.submit({"name": "three", "nodeGroups": ["BigNodes"], "tasks": sweeps})
    assert cp.schedule_pass() == 64
    assert cp.get_job(job.id).task_counts.get(TaskState.DISPATCHING) == 64
    assert len(run_in_parts(big)) == 64
    assert cp.schedule_pass() == 26
    assert len(run_in_parts(big)) == 26
    assert cp.get_job(job.id).state is JobState.FINISHED
