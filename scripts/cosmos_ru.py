"""Request units of one task's life on the Cosmos Store, read from ``x-ms-request-charge``.

    .venv/bin/python scripts/cosmos_ru.py            # on the stand-in (started and stopped here)
    HPC_COSMOS_ENDPOINT=https://ACCOUNT.documents.azure.com:443/ HPC_COSMOS_KEY=... \\
        .venv/bin/python scripts/cosmos_ru.py        # on Cosmos DB (database hpc-ru, deleted after)

It makes the Store calls the use cases make for a one-task job (shared/usecases: submit,
dispatch, events) and prints, per step, the requests sent and the request charge the server
reported. The stand-in (@vercel/cosmosdb-server) reports 1 per request whatever the request
costs, and has no transactional batch, so there its figures count requests; docs/cosmos.md
gives the request units Cosmos DB charges for the same requests.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.adapters import cosmos_docs as docs  # noqa: E402
from shared.adapters.cosmos_store import CosmosStore  # noqa: E402
from shared.domain.cluster import Node  # noqa: E402
from shared.domain.models import Job, Task  # noqa: E402
from shared.domain.states import JobState, TaskState  # noqa: E402

STAND_IN_KEY = (
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
)


class Counted:
    """Counts the HTTP requests the store sends, beside the charges it adds up."""

    def __init__(self, store: CosmosStore) -> None:
        self.store = store
        self.requests = 0
        hook = store._hook

        def counting(headers, result=None):  # type: ignore[no-untyped-def]
            self.requests += 1
            hook(headers, result)

        store._hook = counting  # type: ignore[method-assign]

    def step(self, name: str, run) -> dict:  # type: ignore[no-untyped-def]
        before_ru, before_n = self.store.request_charge, self.requests
        run()
        return {
            "step": name,
            "requests": self.requests - before_n,
            "request_charge": round(self.store.request_charge - before_ru, 2),
        }


def life(store: CosmosStore) -> list[dict]:
    counted = Counted(store)
    store.put_node(Node(name="n1", cores=4, incarnation=1))
    state: dict = {}

    def submit() -> None:
        job = Job(id=store.next_job_id(), name="ru", state=JobState.QUEUED, task_count=1,
                  task_counts={TaskState.QUEUED: 1})  # fmt: skip
        store.add_job(job, [Task(job_id=job.id, id=1, command="echo 1")])
        state["job_id"] = job.id

    def dispatch() -> None:
        store.list_nodes()
        store.active_tasks()
        (task,) = store.queued_tasks(limit=100)
        job = store.get_job(task.job_id)
        task.move_to(TaskState.DISPATCHING)
        task.node = "n1"
        job.count(TaskState.QUEUED, TaskState.DISPATCHING)
        job.move_to(JobState.RUNNING)
        store.commit(job=job, tasks=[task])

    def event(new: TaskState) -> None:
        job = store.get_job(state["job_id"])
        (task,) = store.get_tasks(job.id, {1})
        old = task.state
        task.move_to(new)
        job.count(old, new)
        if new is TaskState.FINISHED:
            job.move_to(JobState.FINISHED)
        store.commit(job=job, tasks=[task])

    steps = [
        counted.step("submit (next_job_id, add_job)", submit),
        counted.step(
            "dispatch (list_nodes, active_tasks, queued_tasks, get_job, commit)", dispatch
        ),
        counted.step("start (get_job, get_tasks, commit)", lambda: event(TaskState.RUNNING)),
        counted.step("finish (get_job, get_tasks, commit)", lambda: event(TaskState.FINISHED)),
    ]
    job = store.get_job(state["job_id"])
    task = store.get_task(job.id, 1)
    sizes = {
        "job_document_bytes": len(json.dumps(docs.job_doc(job))),
        "task_document_bytes": len(json.dumps(docs.task_doc(task))),
    }
    return [*steps, sizes]


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
    database = f"hpc-ru-{uuid.uuid4().hex[:8]}"
    try:
        store = CosmosStore(endpoint, key, database)
        print(f"endpoint {endpoint}  transactional batch: {'yes' if store.batch else 'no'}")
        rows = life(store)
        for row in rows[:-1]:
            print(f"{row['request_charge']:>8} RU  {row['requests']:>3} requests  {row['step']}")
        total = sum(r["request_charge"] for r in rows[:-1])
        print(f"{total:>8} RU  {sum(r['requests'] for r in rows[:-1]):>3} requests  in all")
        print(rows[-1])
        store._client.delete_database(database)
        store.close()
    finally:
        if proc is not None:
            os.killpg(proc.pid, 15)
            proc.wait()


if __name__ == "__main__":
    main()
