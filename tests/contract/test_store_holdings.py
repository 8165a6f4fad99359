"""The Store contract for ``holdings()``: what each active task holds and until when, the
same facts ``active_tasks()`` gives, whether an adapter reads them from whole documents
(the port's default, Cosmos) or from a few fields (SQLite's json_extract)."""

from __future__ import annotations

from datetime import timedelta

from shared.domain.hosts import Holding, Seat, holding_of
from shared.domain.memoryfit import held_memory
from shared.domain.models import Host
from shared.domain.states import TaskState
from shared.ports.store import Store
from tests.contract.store_fixtures import T0, add_job


def test_holdings_are_the_active_tasks_hosts_and_projected_ends(store: Store) -> None:
    job, (wide, legacy, timed, queued, done) = add_job(store, 5)
    wide.move_to(TaskState.DISPATCHING, now=T0)
    wide.node, wide.runtime_limit_s = "n1", 600
    wide.hosts = [Host(node="n1", cores=4, incarnation=2), Host(node="n2", cores=4, incarnation=7)]
    wide.move_to(TaskState.RUNNING, now=T0 + timedelta(seconds=5, microseconds=250))
    legacy.move_to(TaskState.DISPATCHING, now=T0)  # dispatched before hosts were recorded
    legacy.node, legacy.cores, legacy.incarnation = "n3", 2, 1
    timed.move_to(TaskState.DISPATCHING, now=T0 + timedelta(seconds=9))
    timed.node, timed.runtime_limit_s = "n2", 60
    timed.hosts = [Host(node="n2", cores=1, incarnation=7)]
    done.move_to(TaskState.DISPATCHING, now=T0)
    done.move_to(TaskState.RUNNING, now=T0)
    done.move_to(TaskState.FINISHED, now=T0)
    store.commit(job=job, tasks=[wide, legacy, timed, done])

    got = sorted(store.holdings(), key=lambda h: h.task_id)
    assert got == sorted((holding_of(t) for t in store.active_tasks()), key=lambda h: h.task_id)
    by_id = {h.task_id: h for h in got}
    assert set(by_id) == {wide.id, legacy.id, timed.id}  # not the queued or the finished one
    assert [(h.node, h.cores) for h in by_id[wide.id].hosts] == [("n1", 4), ("n2", 4)]
    assert by_id[wide.id].until == (T0 + timedelta(seconds=605, microseconds=250)).timestamp()
    assert by_id[legacy.id].hosts == (Seat("n3", 2, 1),)
    assert by_id[legacy.id].until is None  # no runtime limit: no projected end
    assert by_id[timed.id].until == (T0 + timedelta(seconds=69)).timestamp()
    assert queued.state is TaskState.QUEUED


def test_no_active_task_no_holdings(store: Store) -> None:
    add_job(store, 3)
    assert store.holdings() == []
    assert Holding(1, 1, ()).until is None


def test_a_job_exclusive_jobs_flag_travels_to_its_tasks_holdings(store: Store) -> None:
    """The scheduler reads job-level exclusive from holdings (shared.domain.jobexclusive);
    the job keeps its ``exclusive`` and a job without it reads as not exclusive."""
    job, (alone, other) = add_job(store, 2)
    job.exclusive = True
    for task in (alone, other):
        task.job_exclusive = task is alone  # (a job's tasks agree; two cases in one commit)
        task.move_to(TaskState.DISPATCHING, now=T0)
        task.node, task.hosts = "n1", [Host(node="n1", cores=1, incarnation=1)]
    store.commit(job=job, tasks=[alone, other])
    got = {h.task_id: h.job_exclusive for h in store.holdings()}
    assert got == {alone.id: True, other.id: False}
    assert store.get_job(job.id).exclusive is True
    assert store.get_task(job.id, alone.id).job_exclusive is True
    plain, _ = add_job(store, 1)
    assert store.get_job(plain.id).exclusive is False


def test_a_tasks_memory_travels_to_its_holdings_on_every_node(store: Store) -> None:
    """Consumable memory (shared.domain.memoryfit): a pass reads what each active task holds
    of its nodes' memory from its holding; a task that asked for none holds none."""
    job, (big, wide, plain) = add_job(store, 3)
    big.min_memory_mb, wide.min_memory_mb = 8192, 2048
    for task, names in ((big, ["n1"]), (wide, ["n1", "n2"]), (plain, ["n2"])):
        task.move_to(TaskState.DISPATCHING, now=T0)
        task.node, task.hosts = names[0], [Host(node=n, cores=1, incarnation=1) for n in names]
    store.commit(job=job, tasks=[big, wide, plain])
    got = {h.task_id: h.memory_mb for h in store.holdings()}
    assert got == {big.id: 8192, wide.id: 2048, plain.id: None}
    assert held_memory(store.holdings()) == {"n1": 8192 + 2048, "n2": 2048}
    assert held_memory(store.holdings()) == held_memory(store.active_tasks())
