"""Sweeps stored as a range and a cursor: accepting, canceling, requeueing and reprioritising a
million-task sweep writes a few documents; its tasks come into being as they are dispatched,
each exactly once; the queue a pass reads is never crowded out by work that cannot start."""

from __future__ import annotations

from datetime import datetime

from shared.domain.messages import JOB_SUBMIT_ENV
from shared.domain.states import JobState, TaskState
from shared.ports.output import job_stamp
from shared.usecases.control_plane import ControlPlane
from tests.test_control import clock, cp, register, sweep  # noqa: F401 - fixtures

MILLION = 1_000_000


def stored_tasks(cp: ControlPlane, job_id: int) -> list[int]:
    return [t.id for t in cp.store.list_tasks(job_id, limit=MILLION)]


def test_a_million_task_sweep_is_accepted_as_one_range_and_no_task_records(cp):
    register(cp, "n1")
    job = cp.submit(sweep(MILLION))
    assert job.task_count == MILLION
    assert cp.get_job(job.id).task_counts == {TaskState.QUEUED: MILLION}
    assert stored_tasks(cp, job.id) == []
    (r,) = cp.store.get_ranges(job.id)
    assert (r.count, r.cursor) == (MILLION, 0)


def test_its_tasks_are_listed_and_viewed_before_they_exist(cp):
    register(cp, "n1")
    job = cp.submit(sweep(MILLION))
    page = cp.list_tasks(job.id, offset=0, limit=3)
    assert [(t.id, t.sweep_index, t.state) for t in page] == [
        (1, 1, TaskState.QUEUED),
        (2, 2, TaskState.QUEUED),
        (3, 3, TaskState.QUEUED),
    ]
    assert [t.id for t in cp.list_tasks(job.id, after=999_998, limit=5)] == [999_999, MILLION]
    last = cp.get_task(job.id, MILLION)
    assert (last.sweep_index, last.name, last.command) == (MILLION, "s[1000000]", page[0].command)
    assert cp.list_tasks(job.id, states=[TaskState.FINISHED]) == []


def test_tasks_come_into_being_as_they_are_dispatched_each_once(cp):
    n1 = register(cp, "n1", cores=2)
    job = cp.submit(sweep(MILLION))
    assert cp.schedule_pass() == 2
    assert stored_tasks(cp, job.id) == [1, 2]
    assert cp.store.get_ranges(job.id)[0].cursor == 2
    runs = n1.runs()
    assert [(r.task_id, r.env["HPC_SWEEP_INDEX"]) for r in runs] == [(1, "1"), (2, "2")]
    for run in runs:
        n1.send(n1.started(run), n1.ended(run, 0))
    assert cp.schedule_pass() == 2
    assert stored_tasks(cp, job.id) == [1, 2, 3, 4]
    job_now = cp.get_job(job.id)
    assert job_now.task_counts == {
        TaskState.FINISHED: 2,
        TaskState.DISPATCHING: 2,
        TaskState.QUEUED: MILLION - 4,
    }
    listed = cp.list_tasks(job.id, limit=5)
    assert [t.state for t in listed] == [
        TaskState.FINISHED,
        TaskState.FINISHED,
        TaskState.DISPATCHING,
        TaskState.DISPATCHING,
        TaskState.QUEUED,
    ]


def test_a_small_sweep_runs_to_finished_through_its_range(cp):
    n1 = register(cp, "n1", cores=4)
    job = cp.submit(
        {"name": "s", "tasks": [{"command": "prep"}, {"command": "x *", "sweep": "10-50:10"}]}
    )
    while cp.schedule_pass():
        n1.run_all()
    done = cp.get_job(job.id)
    assert done.state is JobState.FINISHED
    assert done.task_counts == {TaskState.FINISHED: 6}
    tasks = cp.store.list_tasks(job.id)
    assert [(t.id, t.sweep_index) for t in tasks] == [
        (1, None),
        (2, 10),
        (3, 20),
        (4, 30),
        (5, 40),
        (6, 50),
    ]
    assert cp.store.open_ranges(limit=10) == []


def test_canceling_a_million_task_sweep_writes_the_range_not_its_tasks(cp):
    n1 = register(cp, "n1", cores=2)
    job = cp.submit(sweep(MILLION))
    cp.schedule_pass()
    runs = n1.runs()
    cp.cancel_job(job.id)
    assert stored_tasks(cp, job.id) == [1, 2]  # the two running ones, told to stop
    counts = cp.get_job(job.id).task_counts
    assert counts[TaskState.CANCELED] == MILLION - 2
    assert cp.get_task(job.id, 500).state is TaskState.CANCELED
    assert cp.store.open_ranges(limit=10) == []
    assert cp.schedule_pass() == 0
    n1.send(*(n1.ended(run, exit_code=-15, canceled=True) for run in runs))
    assert cp.get_job(job.id).state is JobState.CANCELED


def test_requeue_reopens_the_canceled_tasks_of_the_range(cp):
    register(cp, "n1", cores=2)
    job = cp.submit(sweep(1000))
    cp.cancel_job(job.id)
    assert cp.get_job(job.id).state is JobState.CANCELED
    cp.requeue_job(job.id)
    again = cp.get_job(job.id)
    assert again.state is JobState.QUEUED
    assert again.task_counts == {TaskState.QUEUED: 1000}
    assert cp.schedule_pass() == 2


def test_a_new_priority_reaches_the_tasks_a_range_creates_later(cp):
    register(cp, "n1", cores=1)
    low = cp.submit(sweep(100, priority="Lowest"))
    normal = cp.submit(sweep(100))
    cp.set_priority(low.id, "Highest")
    assert cp.schedule_pass() == 1
    (task,) = cp.store.active_tasks()
    assert (task.job_id, task.priority) == (low.id, 4000)
    assert normal.id != low.id


def test_a_held_job_does_not_crowd_runnable_work_out_of_the_window(cp):
    register(cp, "n1", cores=2)
    cp.settings.scheduler_window = 50
    held = cp.submit(
        {"name": "h", "priority": "Highest", "tasks": [{"command": "x"} for _ in range(200)]}
    )
    cp.hold_job(held.id)
    behind = cp.submit(sweep(10))
    assert cp.schedule_pass() == 2
    assert {t.job_id for t in cp.store.active_tasks()} == {behind.id}


def test_a_capped_sweep_takes_only_its_slots_of_the_window(cp):
    register(cp, "n1", cores=4)
    cp.settings.scheduler_window = 100
    capped = cp.submit(sweep(MILLION, priority="Highest", maxConcurrent=1))
    other = cp.submit(sweep(10))
    assert cp.schedule_pass() == 4
    running = sorted(t.job_id for t in cp.store.active_tasks())
    assert running == [capped.id, other.id, other.id, other.id]


def test_a_steps_paths_and_working_directory_get_its_index_as_its_command_does(cp):
    """A probe: `--stdout 'out*.txt'` had every step of a sweep write (and truncate) one
    file named out*.txt, and `--workdir 'runs/*'` failed every step. As in HPC Pack, each
    `*` of a sweep step's paths is its index (`**` a literal `*`); other tasks keep theirs."""
    agent = register(cp, "n1", cores=4)
    cp.submit(
        {
            "tasks": [
                {
                    "command": "echo *",
                    "sweep": "4-6",
                    "workDir": "/data/runs/*",
                    "stdout": "/data/out*-**.txt",
                    "stderr": "/data/err_%a_*.txt",
                }
            ]
        }
    )
    assert cp.schedule_pass() == 3
    runs = sorted(agent.runs(), key=lambda r: r.task_id)
    assert [(r.command, r.work_dir, r.stdout, r.stderr) for r in runs] == [
        (f"echo {i}", f"/data/runs/{i}", f"/data/out{i}-*.txt", f"/data/err_{i}_{i}.txt")
        for i in (4, 5, 6)
    ]
    single = cp.submit({"command": "x", "workDir": "/data/a*b", "stdout": "/data/o*.txt"})
    assert cp.schedule_pass() == 1
    [run] = [r for r in agent.runs() if r.job_id == single.id]
    assert (run.work_dir, run.stdout) == ("/data/a*b", "/data/o*.txt")  # not a sweep step


def test_a_task_is_told_its_attempt(cp):
    """HPC_TASK_ATTEMPT (Slurm's SLURM_RESTART_COUNT): 0 at first, one more per new run, so a
    requeued task's restart logic can tell it runs again."""
    agent = register(cp, "n1")
    job = cp.submit({"command": "x"})
    assert cp.schedule_pass() == 1
    [first] = agent.runs()
    assert first.env["HPC_TASK_ATTEMPT"] == "0"
    agent.send(agent.started(first), agent.ended(first, exit_code=1))
    cp.requeue_task(job.id, 1)
    assert cp.schedule_pass() == 1
    [again] = agent.runs()
    assert again.env["HPC_TASK_ATTEMPT"] == str(again.attempt) == "1"


def test_a_task_is_told_its_jobs_submit_time_which_stamps_its_output(cp):
    """HPC_JOB_SUBMIT_TIME: the agent stamps the task's output with it and the job id, and the
    control plane reads the output under that stamp (shared.ports.output.job_stamp)."""
    agent = register(cp, "n1")
    job = cp.submit({"command": "x"})
    assert cp.schedule_pass() == 1
    [run] = agent.runs()
    stored = cp.store.get_job(job.id).submit_time
    assert run.env[JOB_SUBMIT_ENV] == stored.isoformat()
    assert datetime.fromisoformat(run.env[JOB_SUBMIT_ENV]) == stored
    # An old job 1's stream (another submit time) is not served as this job's output; this
    # job's is.
    old = job_stamp(job.id, "2020-01-01T00:00:00+00:00")
    cp.deps.output.sink(job.id, 1, "stdout", stamp=old).write_bytes(b"an old job's secret")
    assert cp.read_output(job.id, 1, "stdout").data == b""
    mine = job_stamp(job.id, run.env[JOB_SUBMIT_ENV])
    cp.deps.output.sink(job.id, 1, "stdout", stamp=mine).write_bytes(b"mine")
    assert cp.read_output(job.id, 1, "stdout").data == b"mine"
