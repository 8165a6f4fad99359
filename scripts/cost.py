"""What one task costs in Azure: Cosmos DB requests, Service Bus operations and Function
executions, counted by the adapters while tasks run through the control plane.

    .venv/bin/python scripts/cost.py                 # the Cosmos stand-in, started and stopped here
    .venv/bin/python scripts/cost.py --sweep 1000 --jobs 50 --json
    HPC_COSMOS_ENDPOINT=https://ACCOUNT.documents.azure.com:443/ HPC_COSMOS_KEY=... \\
        .venv/bin/python scripts/cost.py            # Cosmos DB itself: real request units

The control plane runs in this process with the use cases the functions call (submit = the
HTTP function, ``schedule_pass`` = the scheduler trigger, ``apply_event_messages`` = the events
trigger), the Cosmos store, and the embedded bus wrapped in a meter (Service Bus cannot run
here; the embedded bus has its semantics). Agents are doubles speaking the real protocol
through the bus: each assignment they receive is answered with TaskStarted and TaskEnded, sent
together as the agent's reporter sends them. Every queue is drained in batches of up to 100,
and each batch counts as one execution of its function, as a Service Bus batch trigger makes.

Counted:
- Cosmos DB: requests by kind (point reads, queries, writes, transactional batches) and the
  request charge each response reported. The stand-in charges 1 per request and has no
  transactional batch (the store's fallback writes one document at a time), so there the
  charge is a request count; docs/cost.md turns kinds into request units.
- Service Bus operations as Service Bus bills them: each message sent, each message received
  (peek-lock) and each settlement (complete, abandon, dead-letter) is one operation.
- Function executions: HTTP calls, scheduler batches, events batches, timer runs.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cost_meters import Meter, MeteredBus  # noqa: E402  (scripts/, beside this file)

from shared.adapters.cosmos_store import CosmosStore  # noqa: E402
from shared.adapters.local_output import LocalOutputStore  # noqa: E402
from shared.adapters.sqlite_bus import SqliteBus  # noqa: E402
from shared.adapters.sqlite_busadmin import SqliteBusAdmin  # noqa: E402
from shared.auth import digest  # noqa: E402
from shared.domain.cluster import Principal  # noqa: E402
from shared.domain.messages import (  # noqa: E402
    ASSIGNMENT,
    EVENTS_QUEUE,
    NODES_QUEUE,
    SCHEDULER_QUEUE,
    SCHEDULER_SESSION,
    RunTask,
)
from shared.ports.bus import OutgoingMessage, ReceivedMessage  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.usecases.control_plane import ControlPlane  # noqa: E402
from shared.wiring import declare_queues  # noqa: E402
from tests.agent_double import AgentDouble  # noqa: E402

STAND_IN_KEY = (
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
)
BATCH = 100
"""Messages per function execution (host.json maxMessageBatchSize)."""


class Cluster:
    """The control plane, its functions as the host would run them, and agent doubles."""

    def __init__(self, store: CosmosStore, home: Path, nodes: int, cores: int) -> None:
        self.meter = Meter(store)
        raw = SqliteBus(home / "bus.db")
        declare_queues(SqliteBusAdmin(raw))
        self.bus = MeteredBus(raw, self.meter.counts)
        self.cp = ControlPlane(
            store=store,
            bus=self.bus,
            output=LocalOutputStore(home / "output"),
            settings=Settings(home=home),
        )
        self.token = uuid.uuid4().hex
        store.add_token(digest(self.token), Principal(name="admin", role="admin"))
        self.agents = [AgentDouble(self.cp, f"node-{i}", cores=cores) for i in range(nodes)]
        for agent in self.agents:
            assert agent.register().accepted, agent.name

    def invoke(self, function: str, run: Callable[[], Any]) -> Any:
        self.meter.counts[f"fn:{function}"] += 1
        start = time.perf_counter()
        try:
            return run()
        finally:
            self.meter.seconds += time.perf_counter() - start

    def http(self, run: Callable[[], Any]) -> Any:
        """An HTTP function: the bearer token is looked up first (a point read)."""
        return self.invoke("http", lambda: (self.cp.store.find_token(digest(self.token)), run())[1])

    def drain(
        self, queue: str, function: str, apply: Callable[[list[ReceivedMessage]], Any]
    ) -> int:
        """Run ``function`` on batches of the queue until it is empty; the batches run."""
        runs = 0
        session = SCHEDULER_SESSION if queue == SCHEDULER_QUEUE else None
        while True:
            if session is not None:
                rx: Any = self.bus.get_session_receiver(queue, session_id=session)
            else:
                rx = self.bus.get_receiver(queue)
            with rx:
                batch = rx.receive(max_messages=BATCH, max_wait_ms=0)
                if not batch:
                    return runs
                self.invoke(function, functools.partial(apply, batch))
                for message in batch:
                    rx.complete(message)
            runs += 1

    def agents_work(self) -> int:
        """Each agent takes its assignments and reports them started and ended."""
        done = 0
        for agent in self.agents:
            with self.bus.get_session_receiver(NODES_QUEUE, session_id=agent.name) as rx:
                runs: list[RunTask] = []
                while batch := rx.receive(max_messages=BATCH, max_wait_ms=0):
                    for m in batch:
                        assignment = ASSIGNMENT.validate_json(m.body)
                        if isinstance(assignment, RunTask):
                            runs.append(assignment)
                        rx.complete(m)
            if runs:
                events = [agent.started(r) for r in runs] + [agent.ended(r) for r in runs]
                self.bus.send(EVENTS_QUEUE, [OutgoingMessage(body=e.to_bytes()) for e in events])
                done += len(runs)
        return done

    def step(self) -> int:
        self.drain(SCHEDULER_QUEUE, "scheduler", lambda _b: self.cp.schedule_pass())
        ran = self.agents_work()
        self.drain(
            EVENTS_QUEUE,
            "events",
            lambda b: self.cp.apply_event_messages([(m.message_id, m.body) for m in b]),
        )
        return ran

    def run_until_done(self, job_ids: list[int]) -> None:
        for _ in range(10_000):
            self.step()
            if all(self.cp.store.get_job(j).state.value == "Finished" for j in job_ids):
                return
        raise RuntimeError(f"jobs {job_ids} did not finish")


def scenario(
    cluster: Cluster, name: str, specs: list[dict[str, Any]], *, one_by_one: bool = False
) -> dict[str, Any]:
    """Submit the jobs (one HTTP call each) and run them to the end: together, so that
    scheduler passes and event batches serve many tasks, or ``one_by_one`` (each job ends
    before the next is submitted: sparse traffic, nothing shared)."""
    before = cluster.meter.snapshot()
    jobs = []
    for spec in specs:
        jobs.append(cluster.http(functools.partial(cluster.cp.submit, spec)).id)
        if one_by_one:
            cluster.run_until_done(jobs[-1:])
    cluster.run_until_done(jobs)
    tasks = sum(cluster.cp.store.get_job(j).task_count for j in jobs)
    return {"scenario": name, "jobs": len(jobs), "tasks": tasks, **cluster.meter.since(before)}


def periodic(cluster: Cluster) -> list[dict[str, Any]]:
    """What runs with the clock, not per task: one heartbeat, one reconcile, one autoscale."""
    rows = []
    before = cluster.meter.snapshot()
    for agent in cluster.agents:
        cluster.bus.send(EVENTS_QUEUE, OutgoingMessage(body=agent.heartbeat().to_bytes()))
        cluster.drain(
            EVENTS_QUEUE,
            "events",
            lambda b: cluster.cp.apply_event_messages([(m.message_id, m.body) for m in b]),
        )
    per = cluster.meter.since(before)
    rows.append({"scenario": "heartbeat (per node)", "per": len(cluster.agents), **per})
    for name, run in (("reconcile", cluster.cp.reconcile), ("autoscale", cluster.cp.autoscale)):
        before = cluster.meter.snapshot()
        cluster.invoke(name, run)
        cluster.drain(SCHEDULER_QUEUE, "scheduler", lambda _b: cluster.cp.schedule_pass())
        rows.append({"scenario": f"{name} timer run", "per": 1, **cluster.meter.since(before)})
    return rows


def summarise(row: dict[str, Any], per: int) -> dict[str, Any]:
    """Per task (or per run): Cosmos by kind, Service Bus operations, function executions."""
    sb_ops = sum(v for k, v in row.items() if k.startswith("sb_"))
    return {
        "scenario": row["scenario"],
        "cosmos_requests": round(row.get("cosmos_requests", 0) / per, 2),
        "cosmos_charge": round(row.get("cosmos_charge", 0) / per, 2),
        **{
            k.removeprefix("cosmos_"): round(v / per, 2)
            for k, v in row.items()
            if k.startswith("cosmos_") and k not in ("cosmos_requests", "cosmos_charge")
        },
        "servicebus_operations": round(sb_ops / per, 2),
        "function_executions": round(
            sum(v for k, v in row.items() if k.startswith("fn:")) / per, 3
        ),
        "function_seconds": round(row.get("fn_seconds", 0) / per, 4),
        "functions": {k[3:]: v for k, v in row.items() if k.startswith("fn:")},
        "queues": {k[3:]: v for k, v in row.items() if k.startswith("sb_")},
    }


def start_stand_in() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "emulators.sh"), "run", "cosmos", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"Ready to accept HTTP connections at (\S+)", line)
        if match:
            return proc, f"http://{match.group(1)}"
    raise RuntimeError("the Cosmos stand-in did not start (scripts/emulators.sh run cosmos 0)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", type=int, default=200, help="tasks of the sweep job")
    parser.add_argument("--jobs", type=int, default=20, help="single-task jobs")
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--cores", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print JSON rows")
    args = parser.parse_args(argv)

    endpoint = os.environ.get("HPC_COSMOS_ENDPOINT", "")
    key = os.environ.get("HPC_COSMOS_KEY", "")
    proc = None
    if not endpoint:
        proc, endpoint = start_stand_in()
        key = STAND_IN_KEY
    database = f"hpc-cost-{uuid.uuid4().hex[:8]}"
    try:
        with tempfile.TemporaryDirectory() as home:
            store = CosmosStore(endpoint, key, database)
            cluster = Cluster(store, Path(home), args.nodes, args.cores)
            rows = []
            sweep = {"name": "sweep", "tasks": [{"command": "true", "sweep": f"1-{args.sweep}"}]}
            row = scenario(cluster, f"sweep of {args.sweep} tasks", [sweep])
            rows.append(summarise(row, row["tasks"]))
            singles = [{"name": "one", "tasks": [{"command": "true"}]}] * args.jobs
            row = scenario(cluster, f"{args.jobs} jobs of 1 task", singles, one_by_one=True)
            rows.append(summarise(row, row["tasks"]))
            rows += [summarise(r, r["per"]) for r in periodic(cluster)]
            batch = "yes" if store.batch else "no (stand-in: one document at a time)"
            store._client.delete_database(database)
            store.close()
    finally:
        if proc is not None:
            os.killpg(proc.pid, 15)
            proc.wait()
    if args.json:
        print(json.dumps({"endpoint": endpoint, "transactional_batch": batch, "rows": rows}))
        return 0
    print(f"Cosmos endpoint {endpoint}; transactional batch: {batch}")
    print("per task (sweep, singles) or per run (heartbeat per node, timers):")
    for r in rows:
        print(
            f"  {r['scenario']:<24} cosmos {r['cosmos_requests']:>6} requests "
            f"(reads {r.get('point_reads', 0)}, queries {r.get('queries', 0)}, "
            f"writes {r.get('writes', 0)}, batches {r.get('batches', 0)}), "
            f"charge {r['cosmos_charge']}; service bus {r['servicebus_operations']} ops; "
            f"functions {r['function_executions']} executions {r['functions']}, "
            f"{r['function_seconds']} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
