"""The ``forecast`` policy's memory as the cluster's timer keeps it: its state to JSON and
back (rateparts.py, userwidths.py, forecastpool.py), what the timer tells it
(jobevents.py), and the stored memory (policymemory.py). A policy restored from its JSON
plans exactly as the one object the simulator keeps, and the JSON of a busy group stays
small (Cosmos DB's items hold 2 MB; bench/bench_forecast_memory.py measures a KTH-SP2 year:
48 KB at most)."""

from __future__ import annotations

import json
import random

import pytest

from shared.domain.forecastpool import ForecastPool
from shared.domain.policymemory import WATCH_KEPT, Forecast, PolicyMemory
from shared.domain.rateparts import HOUR_S, WEEK_HOURS, RateMix, WeekProfile
from shared.domain.userwidths import USERS_KEPT, UserWidths

B = 180.0
WEEK_S = WEEK_HOURS * HOUR_S


def _through_json(data: dict) -> dict:
    return json.loads(json.dumps(data))


def _restored(pool: ForecastPool) -> ForecastPool:
    twin = ForecastPool(pool.boot_delay_s, pool.max_nodes, pool.wait_weight)
    twin.restore(_through_json(pool.to_dict()))
    return twin


def _same_plans(a: ForecastPool, b: ForecastPool, now: float) -> None:
    for in_use, waiting, up in ((0, 0, 0), (0, 0, 7), (3, 1, 9)):
        assert a.plan(now, in_use, waiting, up) == b.plan(now, in_use, waiting, up)
    assert (a.rate(now, True), a.rate(now, False)) == (b.rate(now, True), b.rate(now, False))
    assert a.changes_at(now) == b.changes_at(now)


# ------------------------------------------------------------------- the parts


def test_the_week_profile_and_the_rate_mix_come_back_as_they_were():
    week = WeekProfile(weeks=2)
    for t in (10.0, 20.0, HOUR_S * 5, WEEK_S + 30):
        week.observe(t)
    back = WeekProfile.from_dict(_through_json(week.to_dict()), weeks=2)
    assert back == week
    mix = RateMix(burst_s=600.0, memory=40)
    for t in (0.0, 5.0, 9.0, 4000.0, WEEK_S + 1):
        mix.observe(t)
    again = RateMix.from_dict(_through_json(mix.to_dict()), burst_s=600.0, memory=40)
    assert again.to_dict() == mix.to_dict()
    assert again.rates(WEEK_S + 99) == mix.rates(WEEK_S + 99)
    assert RateMix.from_dict(None).to_dict() == RateMix().to_dict()


def test_the_users_widths_come_back_with_their_activity_and_blend():
    w = UserWidths()
    for k, (user, nodes) in enumerate([("a", 8), ("b", 1), ("a", 8), (None, 2), ("c", 4)]):
        w.submitted(60.0 * k, nodes, user)
    w.ended(400.0, "b")
    w.shares(400.0)  # the blend is cached as of this call
    back = UserWidths.from_dict(_through_json(w.to_dict()))
    assert back.to_dict() == w.to_dict()
    assert back.shares(9_000.0) == w.shares(9_000.0)  # the cached blend, not one of later
    assert UserWidths.from_dict(None).to_dict() == UserWidths().to_dict()


def test_only_the_active_and_latest_users_histograms_are_kept():
    w = UserWidths()
    for k in range(USERS_KEPT + 40):
        w.submitted(10_000.0 * k, 1 + k % 5, f"u{k}")  # each inactive before the next
    stored = w.to_dict()
    assert len(stored["users"]) == USERS_KEPT
    assert f"u{USERS_KEPT + 39}" in stored["users"] and "u0" not in stored["users"]
    assert set(stored["activity"]) <= set(stored["users"])
    again = UserWidths()
    for k in range(USERS_KEPT + 40):  # u0 submits again last: it is the latest, kept
        again.submitted(10_000.0 * k, 1, f"u{(k + 1) % (USERS_KEPT + 40)}")
    assert "u0" in again.to_dict()["users"]


# ---------------------------------------------------------------- the policy


@pytest.mark.parametrize("seed", range(12))
def test_a_policy_restored_at_every_run_plans_as_the_one_object_kept(seed):
    """The timer rebuilds the policy from the JSON the last run stored; the simulator keeps
    one object. Told the same events, they plan the same at every run, bit for bit."""
    rng = random.Random(seed)
    users = [f"u{k}" for k in range(rng.randint(1, 30))] + [None]
    kept = ForecastPool(B, rng.choice([8, 64, 500]), wait_weight=rng.choice([10.0, 30.0]))
    timer = _restored(kept)
    t = 0.0
    for _ in range(rng.randint(20, 120)):  # timer runs
        run_at = t + rng.choice([5.0, 60.0, 600.0, 7200.0, WEEK_S / 3])
        while t < run_at - 1:  # the events since the last run
            t += min(rng.expovariate(1 / rng.choice([5, 60, 900])), run_at - t - 1)
            user = rng.choice(users)
            if rng.random() < 0.35:
                for pool in (kept, timer):
                    pool.ended(t, 1, user)
            else:
                nodes = rng.choice([1, 1, 2, 3, 8, 64])
                for pool in (kept, timer):
                    pool.arrived(t, nodes, user)
        _same_plans(kept, timer, run_at)
        timer = _restored(timer)
        t = run_at
    _same_plans(kept, timer, t + 3600)


def test_a_fresh_memory_is_a_fresh_policy():
    pool = ForecastPool(B, 10)
    pool.restore(None)
    assert pool.to_dict() == ForecastPool(B, 10).to_dict()
    assert pool.plan(0.0, 0, 0, 0).min_nodes == 0


def test_the_memory_of_a_busy_group_stays_small():
    """Five weeks of a submit every 2 min by 400 users of 12 widths and 40 runtime limits,
    every job ending: the stored JSON (weeks of hourly counts, the kept users' histograms,
    the run times kept for the end forecast, a full watch list with its owners)."""
    rng = random.Random(7)
    pool = ForecastPool(B, 1000)
    t = 0.0
    while t < 5 * WEEK_S:
        t += rng.expovariate(1 / 120)
        user = f"user-{rng.randrange(400):03d}"
        pool.arrived(t, rng.choice([1, 2, 3, 4, 6, 8, 12, 16, 32, 64, 128, 256]), user)
        pool.ended(t + 1, 1, user)
        limit = 600.0 * rng.randrange(1, 41)
        pool.ran(user, limit, rng.uniform(0, limit))
    watch = tuple(range(10**9, 10**9 + WATCH_KEPT))
    owners = {i: f"user-{i % 400:03d}" for i in watch}
    forecast = Forecast(forecast=pool.to_dict(), watch=watch, owners=owners)
    memory = PolicyMemory(10**9, {"AzureNodes": forecast})
    size = len(json.dumps(memory.to_dict()))
    print(f"stored memory of a busy group: {size:,} bytes")
    assert len(pool.to_dict()["widths"]["users"]) == USERS_KEPT
    assert size < 250_000  # Cosmos DB's item limit is 2 MB
    assert PolicyMemory.from_dict(_through_json(memory.to_dict())) == memory
