"""Requests and request charge of the Cosmos Store's hot paths (docs/cosmos.md).

    .venv/bin/python scripts/cosmos_hot_paths.py     # on the stand-in (started and stopped here)
    HPC_COSMOS_ENDPOINT=... HPC_COSMOS_KEY=... .venv/bin/python scripts/cosmos_hot_paths.py

With 20 jobs of 5 queued tasks, one sweep and 10 running tasks on two nodes stored, it
measures one scheduler pass's reads (``queued_tasks`` + ``open_ranges`` + ``holdings``), the
same pass again (job visibility is then remembered), one heartbeat's ``active_tasks(node)``,
what the index adds to a dispatch commit (1 and 10 tasks), and one repair of the index.
Every hot-path read goes through one partition of the ``index`` container
(shared/adapters/cosmos_index.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.cosmos_ru import STAND_IN_KEY, Counted  # noqa: E402
from shared.adapters.cosmos_store import CosmosStore  # noqa: E402
from shared.domain.models import Job, Task  # noqa: E402
from shared.domain.states import JobState, TaskState  # noqa: E402
from shared.domain.taskrange import TaskRange  # noqa: E402


def fill(store: CosmosStore) -> None:
    for _ in range(20):
        job = Job(id=store.next_job_id(), state=JobState.QUEUED)
        store.add_job(job, [Task(job_id=job.id, id=i, command="x") for i in range(1, 6)])
    running = [
        Task(job_id=j, id=1, command="x", state=TaskState.RUNNING, node=f"n{j % 2}")
        for j in range(100, 110)
    ]
    for task in running:  # (jobs written by another process: not yet known visible here)
        store.add_job(Job(id=task.job_id, state=JobState.RUNNING), [task])
    sweep = Job(id=store.next_job_id(), state=JobState.QUEUED)
    template = Task(job_id=sweep.id, id=1, command="x")
    store.add_job(
        sweep, [], [TaskRange(job_id=sweep.id, first_id=1, count=50, start=1, template=template)]
    )
    store._visible = type(store._visible)(store._job_doc)  # a fresh process's memory


def main() -> None:
    endpoint = os.environ.get("HPC_COSMOS_ENDPOINT", "")
    key = os.environ.get("HPC_COSMOS_KEY", "")
    proc = None
    if not endpoint:
        proc = subprocess.Popen(
            ["bash", str(ROOT / "scripts" / "emulators.sh"), "run", "cosmos", "0"],
            stdout=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        assert proc.stdout is not None
        for line in proc.stdout:
            match = re.search(r"Ready to accept HTTP connections at (\S+)", line)
            if match:
                endpoint, key = f"http://{match.group(1)}", STAND_IN_KEY
                break
    database = f"hpc-hot-{uuid.uuid4().hex[:8]}"
    try:
        store = CosmosStore(endpoint, key, database)
        fill(store)
        counted = Counted(store)

        def scheduler_pass() -> None:
            store.queued_tasks(limit=100)
            store.open_ranges(limit=100)
            store.holdings()

        def commit_only(n: int) -> dict:
            tasks = [t for t in store.queued_tasks(limit=100)][:n]
            for t in tasks:
                t.move_to(TaskState.DISPATCHING)
                t.node, t.incarnation = "n1", 1
            by_job: dict[int, list[Task]] = {}
            for t in tasks:
                by_job.setdefault(t.job_id, []).append(t)

            def commits() -> None:
                for ts in by_job.values():
                    store.commit(tasks=ts)

            return counted.step(
                f"dispatch commit of {n} task(s) in {len(by_job)} commit(s)", commits
            )

        rows = [
            counted.step("scheduler pass, first (visibility read per job)", scheduler_pass),
            counted.step("scheduler pass, next (visibility remembered)", scheduler_pass),
            counted.step("heartbeat: active_tasks(node)", lambda: store.active_tasks(node="n1")),
            commit_only(1),
            commit_only(5),
            counted.step("repair of the index (nothing to fix)", store.repair_indexes),
        ]
        for row in rows:
            print(f"{row['request_charge']:>8} RU  {row['requests']:>3} requests  {row['step']}")
        store._client.delete_database(database)
        store.close()
    finally:
        if proc is not None:
            os.killpg(proc.pid, 15)
            proc.wait()


if __name__ == "__main__":
    main()
