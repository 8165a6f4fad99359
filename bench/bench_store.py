"""Store benchmark: the numbers that bound a scheduler pass and a big submit.

    .venv/bin/python bench/bench_store.py [--tasks 100000] [--commits 5000] [--path DIR]

Prints: add_job of a 1,000- and a 100,000-task job (seconds, not counting
building the Task objects); commit() of one task + its job per second (the
events handler's step), and of a full batch; queued_tasks(limit=1000) and
active_tasks(node) latency with 100k tasks queued. Each run uses a fresh
SQLite file (in a temporary folder unless --path is given).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.adapters.sqlite_store import SqliteStore  # noqa: E402
from shared.domain.models import Job, Task  # noqa: E402
from shared.domain.states import JobState, TaskState  # noqa: E402
from shared.ports.store import MAX_BATCH  # noqa: E402


def new_job(store: SqliteStore, n_tasks: int, priority: int = 2000) -> tuple[Job, list[Task]]:
    job = Job(id=store.next_job_id(), state=JobState.QUEUED, priority=priority)
    job.task_count = n_tasks
    job.task_counts = {TaskState.QUEUED: n_tasks}
    tasks = [
        Task(
            job_id=job.id,
            id=i,
            command=f"python sim.py --case {i}",
            sweep_index=i,
            priority=priority,
            submit_time=job.submit_time,
        )
        for i in range(1, n_tasks + 1)
    ]
    return job, tasks


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def latency_ms(fn: Callable[[], object], runs: int = 20) -> tuple[float, float]:
    """Median and worst of ``runs`` calls, in milliseconds."""
    samples = sorted(timed(fn) * 1000 for _ in range(runs))
    return statistics.median(samples), samples[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks of the big job")
    parser.add_argument("--commits", type=int, default=5000, help="task+job commits to time")
    parser.add_argument("--path", type=Path, help="folder for the SQLite file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.path or Path(tmp)
        path = folder / "bench-store.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        store = SqliteStore(path)
        print(f"SQLite store at {path}")

        for n in (1000, args.tasks):
            build_start = time.perf_counter()
            job, tasks = new_job(store, n)
            build = time.perf_counter() - build_start
            add = timed(partial(store.add_job, job, tasks))
            del job, tasks
            gc.collect()  # the 100k Task objects would otherwise bill later timings for GC
            print(
                f"add_job, {n:>7,} tasks: {add:7.3f} s  ({n / add:>9,.0f} tasks/s; "
                f"building the Task objects took {build:.3f} s more)"
            )

        queued = args.tasks + 1000
        median, worst = latency_ms(lambda: store.queued_tasks(limit=1000))
        print(
            f"queued_tasks(limit=1000), {queued:,} queued: "
            f"{median:.1f} ms median, {worst:.1f} ms worst"
        )

        # The events handler's step: one task moves, its job's counters move with it.
        job, tasks = new_job(store, args.commits)
        store.add_job(job, tasks)
        job.move_to(JobState.RUNNING)
        store.commit(job=job)

        def dispatch_each() -> None:
            for i, task in enumerate(tasks):
                task.node = f"node{i % 100:03d}"
                task.move_to(TaskState.DISPATCHING)
                job.count(TaskState.QUEUED, TaskState.DISPATCHING)
                store.commit(job=job, tasks=[task])

        elapsed = timed(dispatch_each)
        print(
            f"commit(job + 1 task): {args.commits / elapsed:,.0f} commits/s "
            f"({args.commits:,} in {elapsed:.2f} s)"
        )

        median, worst = latency_ms(lambda: store.active_tasks(node="node042"))
        active = len(store.active_tasks(node="node042"))
        print(f"active_tasks(node), {active} on it: {median:.2f} ms median, {worst:.2f} ms worst")

        batch = MAX_BATCH - 1

        def finish_in_batches() -> None:
            for start in range(0, len(tasks), batch):
                chunk = tasks[start : start + batch]
                for task in chunk:
                    task.move_to(TaskState.RUNNING)
                    job.count(TaskState.DISPATCHING, TaskState.RUNNING)
                store.commit(job=job, tasks=chunk)

        elapsed = timed(finish_in_batches)
        batches = -(-len(tasks) // batch)
        print(
            f"commit(job + {batch} tasks): {batches / elapsed:,.0f} commits/s, "
            f"{len(tasks) / elapsed:,.0f} tasks/s"
        )

        con = store._con()  # the adapter's connection, to show its query plans
        for label, call in (
            ("queued_tasks", lambda: store.queued_tasks(limit=1000)),
            ("active_tasks(node)", lambda: store.active_tasks(node="node042")),
        ):
            statements: list[str] = []
            con.set_trace_callback(statements.append)
            call()
            con.set_trace_callback(None)
            plan = " | ".join(r[3] for r in con.execute("EXPLAIN QUERY PLAN " + statements[0]))
            print(f"plan of {label}: {plan}")
        store.close()


if __name__ == "__main__":
    main()
