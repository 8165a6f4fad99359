"""Supply known for sure (shared/domain/releases.py) and what ``forecast`` does with it: no
node started for the pool that a running job's limit frees within a boot delay; and the
start margin of a node that serves only once it is up (waitvalue.served_margin)."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest

from shared.domain.forecastpool import ForecastPool
from shared.domain.idleplan import Load, plan_group
from shared.domain.models import Host, Task
from shared.domain.policymemory import Forecast
from shared.domain.releases import LimitAware, LimitReleases, RunningLimit, running_limits
from shared.domain.states import TaskState
from shared.domain.waitvalue import served_margin, start_margin

B = 180.0


@pytest.mark.parametrize(
    ("limit_s", "now", "freed"),
    [
        (100.0, 0.0, 3),  # ends by 100 s: within the boot delay
        (180.0, 0.0, 3),  # ends by the boot's end: as early as a node started now
        (181.0, 0.0, 0),  # after it: a node started now comes up first
        (100.0, 50.0, 3),
        (100.0, 100.0, 0),  # at its limit and still running: its end is no longer known
        (100.0, 400.0, 0),  # past its limit (a trace that lets jobs overrun)
        (None, 0.0, 0),  # no limit: no known end
        (math.inf, 0.0, 0),
    ],
)
def test_a_job_frees_its_nodes_by_its_limit(limit_s, now, freed):
    r = LimitReleases()
    r.started("j", 0.0, 3, limit_s)
    assert r.within(now, B) == freed


def test_ends_add_up_and_an_ended_job_frees_nothing_more():
    r = LimitReleases()
    r.started(1, 0.0, 2, 60.0)
    r.started(2, 10.0, 4, 60.0)  # ends by 70 s
    r.started(3, 0.0, 8, 1000.0)
    assert r.within(0.0, B) == 6
    assert r.next_end(0.0) == 60.0
    r.ended(1)
    assert r.within(0.0, B) == 4
    assert r.next_end(0.0) == 70.0
    r.ended(1)  # twice, or a job never started: no change
    r.ended("never")
    assert r.within(0.0, B) == 4
    assert r.within(900.0, B) == 8
    r.ended(2)
    r.ended(3)
    assert r.within(0.0, 10_000.0) == 0 and r.next_end(0.0) == math.inf


def test_jobs_with_the_same_limit_end_are_told_apart():
    r = LimitReleases()
    r.started("a", 0.0, 1, 100.0)
    r.started("b", 0.0, 5, 100.0)
    r.ended("b")
    assert r.within(0.0, B) == 1


def _busy_pool() -> ForecastPool:
    pool = ForecastPool(B, 100)
    for k in range(100):
        pool.arrived(3.0 * k, 1 + k % 2, "u")
    return pool


def test_forecast_starts_no_pool_node_a_jobs_limit_frees_within_a_boot_delay():
    now = 300.0
    free = _busy_pool()
    assert isinstance(free, LimitAware)
    wanted = free.start_pool(now)
    assert wanted >= 2
    bare = free.plan(now, 10, 0, 10).min_nodes  # 10 in use, nothing idle
    free.job_started("j", now - 50.0, 1, 100.0)  # frees a node 50 s from now
    assert free.plan(now, 10, 0, 10).min_nodes == bare - 1
    free.job_started("k", now, 2, 500.0)  # only after the boot delay
    assert free.plan(now, 10, 0, 10).min_nodes == bare - 1
    free.job_ended("j")
    assert free.plan(now, 10, 0, 10).min_nodes == bare


def test_nodes_already_up_are_kept_whatever_is_freed():
    now = 300.0
    pool = _busy_pool()
    kept = pool.pool(now)
    pool.job_started("j", now, 50, 60.0)
    plan = pool.plan(now, 50, 0, 50 + kept)  # the pool is up and idle
    assert plan.min_nodes == 50 + kept


def test_the_plan_changes_when_a_job_outlives_its_limit():
    pool = _busy_pool()
    pool.job_started("j", 300.0, 4, 100.0)
    assert pool.changes_at(300.0) <= 400.0
    before = pool.plan(399.0, 10, 0, 10).min_nodes
    assert pool.plan(400.0, 10, 0, 10).min_nodes >= before  # its nodes count no more


@pytest.mark.parametrize("seed", range(6))
def test_the_plan_holds_until_changes_at_with_jobs_running(seed):
    rng = random.Random(seed)
    pool = ForecastPool(B, 64, wait_weight=rng.choice([10.0, 30.0, 60.0]))
    t = 0.0
    for k in range(rng.randint(1, 200)):
        t += rng.expovariate(1 / rng.choice([5, 60, 600]))
        pool.arrived(t, rng.choice([1, 2, 4]), rng.choice(["a", "b", None]))
        pool.job_started(k, t, rng.choice([1, 2, 4]), rng.choice([30.0, 120.0, 900.0, None]))
        if rng.random() < 0.5:
            pool.job_ended(rng.randrange(k + 1))
    idle = rng.randint(0, 20)
    at = pool.changes_at(t)
    assert at > t
    plan = pool.plan(t, 5, 0, 5 + idle)
    for f in (0.1, 0.5, 0.9, 0.999):
        probe = t + f * (at - t) if at < math.inf else t + f * 86_400
        assert pool.plan(probe, 5, 0, 5 + idle) == plan


@pytest.mark.parametrize(("boot", "tau"), [(180.0, 3600.0), (180.0, 900.0), (60.0, 600.0)])
def test_a_started_node_pays_from_its_start_and_serves_from_its_boots_end(boot, tau):
    x = served_margin(boot, tau)
    assert x * math.exp(-boot / tau) == pytest.approx(1.0 + math.log(x), rel=1e-9)
    # its spared waits after the boot, until the rate is back at break-even, less its cost
    # from the start order: zero at the margin, positive above it
    until = tau * math.log(x)
    net = x * tau * (math.exp(-boot / tau) - math.exp(-until / tau)) - until
    assert net == pytest.approx(0.0, abs=1e-6 * tau)
    assert x > start_margin(boot, tau) > 1.0


def test_the_served_margin_for_kth_settings():
    assert served_margin(180.0, 3600.0) == pytest.approx(1.4196, abs=1e-4)
    assert served_margin(180.0, 900.0) == pytest.approx(2.1646, abs=1e-4)
    assert served_margin(0.0, 900.0) == 1.0  # no boot: start at break-even
    assert served_margin(180.0, 0.0) == 1.0


# --- the cluster's timer: the nodes the group's running tasks' limits free ------------------

T = datetime(2026, 1, 1, tzinfo=UTC)


def _task(task_id: int, nodes: list[str], start_s: float | None, limit: int | None) -> Task:
    return Task(
        job_id=1, id=task_id, command="x", state=TaskState.RUNNING,
        hosts=[Host(node=n, cores=1) for n in nodes],
        start_time=None if start_s is None else T + timedelta(seconds=start_s),
        runtime_limit_s=limit,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("tasks", "expected"),
    [
        ([], []),
        ([_task(1, ["a"], 0, 100)], [("1.1", 0.0, 100.0, 1)]),
        ([_task(1, ["a", "b"], 0, 100)], [("1.1", 0.0, 100.0, 2)]),  # a 2-node task
        ([_task(1, ["a"], 0, 100), _task(2, ["a"], 50, 100)], [("1.2", 50.0, 100.0, 1)]),  # last
        ([_task(1, ["a"], 0, 100), _task(2, ["a", "b"], 50, 100)], [("1.2", 50.0, 100.0, 2)]),
        ([_task(1, ["a"], 0, 100), _task(2, ["a"], 0, None)], []),  # one without a limit: unknown
        ([_task(1, ["a"], None, 100)], []),  # not started
        ([_task(1, ["z"], 0, 100)], []),  # not the group's node
    ],
)
def test_a_node_is_freed_when_the_last_limit_of_its_tasks_ends(tasks, expected):
    got = running_limits(tasks, {"a", "b"}, {1: "alice"})
    assert [(r.key, r.start - T.timestamp(), r.limit_s, r.nodes) for r in got] == expected
    assert all(r.user == "alice" for r in got)


def test_the_timer_tells_forecast_the_limits_each_run_and_does_not_store_them():
    now = T.timestamp() + 300.0
    load = Load(in_use=10, waiting=0, up=10)
    pool = ForecastPool(B, 100)
    for k in range(100):
        pool.arrived(T.timestamp() + 3.0 * k, 1 + k % 2, "u")
    memory = Forecast(forecast=pool.to_dict())
    plan = partial(plan_group, memory=memory, events=[], now=now, load=load,
                   policy="forecast", boot_delay_s=180.0)  # fmt: skip
    bare, stored = plan(ForecastPool(180.0, 100))
    freed, kept = plan(ForecastPool(180.0, 100), limits=[RunningLimit("1.1", now - 50.0, 100.0, 1)])
    assert freed.plan.min_nodes == bare.plan.min_nodes - 1
    assert kept.forecast == stored.forecast  # facts of now, not memory
