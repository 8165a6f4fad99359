"""The ``forecast`` idle policy (shared/domain/forecastpool.py) and its parts: the rates
blended by EM (rateparts.py) and the widths blended from active users' own (userwidths.py).
Table and property tests of the pure rules, then its name and the node groups' refusal."""

from __future__ import annotations

import json
import random
import subprocess

import pytest

from hpc.localcluster import hpc_command
from shared.domain.forecastpool import ForecastPool
from shared.domain.idlepolicy import group_idle_policy, parse_idle_policy
from shared.domain.rateparts import HOUR_S, WEEK_HOURS, RateMix, WeekProfile
from shared.domain.userwidths import UserWidths

B = 180.0
WEEK_S = WEEK_HOURS * HOUR_S


def test_the_week_part_is_the_same_hour_of_the_past_weeks():
    p = WeekProfile(weeks=4)
    assert p.rate_at(0.0) is None
    for _ in range(36):
        p.observe(100.0)  # 36 submits in hour 0 of week 0
    assert p.rate_at(HOUR_S + 1) is None  # no past week covers hour 1 yet
    assert p.rate_at(WEEK_S + 10) == pytest.approx(36 / HOUR_S)
    assert p.rate_at(WEEK_S + HOUR_S + 10) == 0.0  # hour 1 of last week: nothing came
    for _ in range(12):
        p.observe(WEEK_S + 50)
    assert p.rate_at(2 * WEEK_S + 10) == pytest.approx((36 + 12) / 2 / HOUR_S)
    assert p.next_hour(HOUR_S * 3 + 5) == HOUR_S * 4


def test_the_week_part_forgets_counts_older_than_its_weeks():
    p = WeekProfile(weeks=1)
    for h in range(3 * WEEK_HOURS):
        p.observe(h * HOUR_S)
    assert len(p.counts) <= 2 * WEEK_HOURS + 1
    assert p.rate_at(3 * WEEK_S) == pytest.approx(1 / HOUR_S)


def _weights_after(gaps: list[float]) -> dict[str, float]:
    mix = RateMix(memory=50)
    t = 0.0
    for g in gaps:
        t += g
        mix.observe(t)
    return mix.weights


def test_the_weights_stay_a_mix():
    rng = random.Random(1)
    w = _weights_after([rng.expovariate(1 / 300) for _ in range(500)])
    assert sum(w.values()) == pytest.approx(1.0)
    assert all(v >= 0 for v in w.values())


def test_bursts_raise_the_burst_parts_weight_and_a_steady_stream_lowers_it():
    bursty = _weights_after(([5.0] * 9 + [7200.0]) * 60)  # 10 submits a minute, every 2 h
    steady = _weights_after([360.0] * 600)  # one every 6 min
    assert bursty["burst"] > 0.5 > steady["burst"]


def test_an_active_users_own_widths_weigh_in_the_mix():
    w = UserWidths(memory=50)
    t = 0.0
    for session in range(40):  # sessions of 10 submits: user a asks for 8 nodes, b for 1
        user, width = ("a", 8) if session % 2 == 0 else ("b", 1)
        t += 7200
        for _ in range(10):
            t += 30
            w.submitted(t, width, user)
    assert w.share > 0.7  # the active user named the width better than the global mix
    assert dict(w.shares(t))[1] > 0.8 > dict(w.globe.shares())[1]  # b is the one active
    w.ended(t + 7200, "a")  # a's job ends long after: a is now the active one
    assert dict(w.shares(t + 7200))[8] > 0.5


def test_an_unknown_user_is_the_global_histogram():
    w = UserWidths()
    w.submitted(0.0, 4, None)
    w.submitted(1.0, 2, None)
    assert w.shares(1.0) == w.globe.shares()


def test_no_submits_no_pool_and_a_burst_of_narrow_jobs_starts_one():
    pool = ForecastPool(B, 100)
    assert pool.plan(0.0, 0, 0, 0).min_nodes == 0
    for k in range(20):
        pool.arrived(10.0 * k, 1, "u")
    assert pool.plan(200.0, 0, 0, 0).min_nodes >= 1
    assert pool.plan(200.0, 0, 0, 0).min_nodes <= pool.plan(200.0, 0, 0, 50).min_nodes


def test_nodes_are_kept_at_w_but_started_only_past_each_parts_margin():
    pool = ForecastPool(B, 100)
    for k in range(30):
        pool.arrived(5.0 * k, 1, "u")
    now = 150.0
    assert pool.rate(now, True) < pool.rate(now, False)
    assert pool.start_pool(now) <= pool.pool(now)
    assert pool.margins["burst"] > pool.margins["hour"] > 1.0


@pytest.mark.parametrize("seed", range(8))
def test_the_plan_holds_until_changes_at(seed):
    """The simulator wakes the policy only at changes_at: until then its plan must not
    change (with nothing arriving)."""
    rng = random.Random(seed)
    pool = ForecastPool(B, 64, wait_weight=rng.choice([10.0, 30.0, 60.0]))
    t = 0.0
    for _ in range(rng.randint(1, 300)):
        t += rng.expovariate(1 / rng.choice([5, 60, 600]))
        pool.arrived(t, rng.choice([1, 1, 2, 4, 8]), rng.choice(["a", "b", "c", None]))
        if rng.random() < 0.3:
            pool.ended(t, 1, rng.choice(["a", "b"]))
    idle = rng.randint(0, 20)
    at = pool.changes_at(t)
    assert at > t
    plan = pool.plan(t, 0, 0, idle)
    for f in (0.1, 0.5, 0.9, 0.999):
        probe = t + f * (at - t) if at < float("inf") else t + f * 86_400
        assert pool.plan(probe, 0, 0, idle) == plan


def test_forecast_parses_and_is_named_by_its_weight():
    assert parse_idle_policy("forecast").name == "forecast"
    assert parse_idle_policy("forecast:25").name == "forecast:25"
    assert parse_idle_policy("forecast:30").wait_weight == 30.0
    assert isinstance(parse_idle_policy("forecast:25").build(B, 10), ForecastPool)
    with pytest.raises(ValueError, match="not a number"):
        parse_idle_policy("forecast:x")


def test_a_node_group_takes_forecast_and_still_refuses_the_simulator_only_ones():
    policy = group_idle_policy("forecast:25")
    assert policy is not None and (policy.kind, policy.name) == ("forecast", "forecast:25")
    for text in ("session", "ski:2"):
        with pytest.raises(ValueError, match="simulator only.*idle gaps or per-user keeps"):
            group_idle_policy(text)


def test_the_cli_replays_forecast_with_and_without_jumps(tmp_path):
    trace = tmp_path / "three.swf"
    trace.write_text(
        "1 0 0 20 1 -1 -1 1 20 -1 1 1 1 -1 1 -1 -1 -1\n"
        "2 5 0 10 2 -1 -1 2 10 -1 1 2 1 -1 1 -1 -1 -1\n"
        "3 40 0 10 1 -1 -1 1 10 -1 1 1 1 -1 1 -1 -1 -1\n"
    )
    base = [*hpc_command(), "sim", "replay", str(trace), "--nodes", "4"]
    for extra in ([], ["--no-jumps"]):
        out = subprocess.run(
            [*base, "--elastic", "--boot-delay", "10", "--idle-policy", "forecast:20",
             *extra, "--json"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["policy"]["idle_policy"] == "forecast:20"
    plain = subprocess.run([*base, "--no-jumps"], capture_output=True, text=True, timeout=60)
    assert plain.returncode == 2 and "--no-jumps" in plain.stderr and "--elastic" in plain.stderr
