"""The elastic replay (shared/sim/elastic.py): autoscaled nodes through the real autoscaler
and scheduler, against node-hours and waits worked out by hand."""

from __future__ import annotations

import json
import math
import random
import subprocess
from dataclasses import replace

import pytest

from hpc.localcluster import hpc_command
from shared.domain.skirental import SkiRental
from shared.domain.warmpool import AdaptivePool, DemandForecast, WarmPool
from shared.sim.elastic import IdlePolicy, elastic, parse_idle_policy
from shared.sim.swf import SwfJob

FIXED_5 = IdlePolicy("fixed", 5)


def test_a_node_is_reused_while_idle_and_stopped_after_its_idle_time():
    # boot 10 s, idle 5 s, 2 one-core nodes. A (20 s) at 0: n0 ordered at 0, Online at 10,
    # runs A 10-30. B (10 s) at 22: n0 is busy, n1 ordered at 22 (Online 32); at 30 A ends
    # and B takes n0 at once (wait 8). n1 comes up idle at 32 and stops at 37 (15 s).
    # The replay ends at B's end, 40: n0 was up 0-40. Node-seconds 40 + 15 = 55.
    jobs = [SwfJob(1, 0, 20, 1, 20), SwfJob(2, 22, 10, 1, 10)]
    outcome, starts = elastic(jobs, idle=FIXED_5, nodes=2, boot_delay_s=10)
    assert starts == {1: 10, 2: 30}
    assert outcome.mean_wait_s == pytest.approx((10 + 8) / 2)
    assert outcome.node_hours == pytest.approx(55 / 3600)
    assert outcome.oracle_node_hours == pytest.approx(30 / 3600)
    assert outcome.node_starts == 2


def test_an_idle_node_stops_and_a_later_job_boots_one_again():
    # A 10-30 on n0 (ordered 0), idle from 30, stopped at 35: 35 s. B at 40 waits for a
    # boot (ordered 40, Online 50), runs 50-60: 20 s. Node-seconds 55, waits 10 and 10.
    jobs = [SwfJob(1, 0, 20, 1, 20), SwfJob(2, 40, 10, 1, 10)]
    outcome, starts = elastic(jobs, idle=FIXED_5, nodes=2, boot_delay_s=10)
    assert starts == {1: 10, 2: 50}
    assert outcome.node_hours == pytest.approx(55 / 3600)
    assert outcome.mean_wait_s == 10
    # idle 15 s instead: n0 is still idle at 40 (30 + 15 = 45) and B starts at once
    outcome, starts = elastic(jobs, idle=IdlePolicy("fixed", 15), nodes=2, boot_delay_s=10)
    assert starts == {1: 10, 2: 40}
    assert outcome.node_hours == pytest.approx(50 / 3600)  # n0 up 0-50
    # bounded slowdown (tau 10 s): A (10 + 20) / 20 = 1.5, B 1
    assert outcome.mean_bounded_slowdown == pytest.approx((1.5 + 1) / 2)


def test_a_wide_job_starts_as_many_nodes_as_it_needs():
    jobs = [SwfJob(1, 0, 10, 3, 10)]
    outcome, starts = elastic(jobs, idle=FIXED_5, nodes=4, boot_delay_s=10)
    assert starts == {1: 10} and outcome.node_starts == 3
    assert outcome.node_hours == pytest.approx(3 * 20 / 3600)


def test_a_timer_acts_at_its_next_tick_as_the_clusters_timer_does():
    # boot 10 s, idle 5 s, the autoscaler every 60 s. A (20 s) at 5: n0 ordered at the
    # tick 60, Online at 70, A runs 70-90. The run at 120 first sees n0 idle; its 5 s run
    # out at 125, so the run at 180 stops it: up 60-180. B (10 s) at 300, a tick: ordered at
    # once, runs 310-320. Node-seconds 120 + 20; four runs (60, 120, 180, 300), not one
    # per event.
    jobs = [SwfJob(1, 5, 20, 1, 20), SwfJob(2, 300, 10, 1, 10)]
    outcome, starts = elastic(jobs, idle=FIXED_5, nodes=2, boot_delay_s=10, timer_s=60)
    assert starts == {1: 70, 2: 310}
    assert outcome.node_hours == pytest.approx(140 / 3600)
    assert (outcome.autoscaler_runs, outcome.timer_s) == (4, 60)
    every_event, starts = elastic(jobs, idle=FIXED_5, nodes=2, boot_delay_s=10)
    assert starts == {1: 15, 2: 310}
    assert every_event.node_hours == pytest.approx((35 + 20) / 3600)  # n0 up 5-40


def test_the_scale_down_delay_keeps_an_idle_node_until_it_has_passed():
    # boot 10 s, idle 5 s: A (20 s) at 0 runs 10-30 on n0, ordered at 0. Its idle time runs
    # out at 35, but the group grew at 0: with a 100 s delay n0 stops at 100 (a wake-up
    # of its own, no event comes then). B at 200 boots one again: 100 + 20 node-seconds.
    jobs = [SwfJob(1, 0, 20, 1, 20), SwfJob(2, 200, 10, 1, 10)]
    delayed, starts = elastic(jobs, idle=FIXED_5, nodes=2, boot_delay_s=10, scale_down_delay_s=100)
    assert starts == {1: 10, 2: 210}
    assert delayed.node_hours == pytest.approx(120 / 3600)
    assert delayed.scale_down_delay_s == 100
    undelayed, _ = elastic(jobs, idle=FIXED_5, nodes=2, boot_delay_s=10)
    assert undelayed.node_hours == pytest.approx(55 / 3600)


def test_the_warm_pool_follows_the_arrival_rate_and_shrinks_when_arrivals_stop():
    forecast = DemandForecast(tau_s=3600)
    pool = WarmPool(boot_delay_s=180, headroom=2)
    assert pool.size(forecast.rate_at(0)) == 0
    for t in range(0, 3600, 60):  # one node a minute for an hour
        forecast.observe(t, 1)
    size = pool.size(forecast.rate_at(3600))
    assert 2 <= size <= 6  # 2 x ~0.63/60 per s x 180 s ~ 3.8
    later = pool.shrinks_at(forecast, 3600)
    assert later > 3600 and pool.size(forecast.rate_at(later)) == size - 1


def test_adaptive_keeps_a_pool_so_a_burst_waits_less():
    # ten one-node jobs a minute apart, then ten more after 20 quiet minutes
    jobs = [SwfJob(k, k * 60, 30, 1, 30) for k in range(10)]
    jobs += [SwfJob(100 + k, 1800 + k * 60, 30, 1, 30) for k in range(10)]
    fixed, _ = elastic(jobs, idle=IdlePolicy("fixed", 0), nodes=10, boot_delay_s=180)
    adaptive, _ = elastic(jobs, idle=parse_idle_policy("adaptive:0"), nodes=10, boot_delay_s=180)
    assert adaptive.mean_wait_s < fixed.mean_wait_s


def test_keep_holds_the_forecast_pool_of_released_nodes_and_stops_the_rest_at_once():
    # boot 10 s, pool = ceil(2 x rate x 10 s - 0.01) with rate the 1 h weighted node demand.
    # A (3 nodes, 100 s) at 0: 3 nodes ordered, A runs 10-110. At 110 the rate is
    # 3/3600 x e^(-110/3600), the pool ceil(0.0162 - 0.01) = 1: one node stays, two stop at
    # once. B (1 node) at 200 runs on it at once. Node-seconds 2 x 110 + 230 = 450.
    jobs = [SwfJob(1, 0, 100, 3, 100), SwfJob(2, 200, 30, 1, 30)]
    keep, starts = elastic(jobs, idle=parse_idle_policy("keep"), nodes=4, boot_delay_s=10)
    assert starts == {1: 10, 2: 200}
    assert keep.node_hours == pytest.approx(450 / 3600) and keep.node_starts == 3
    # fixed:0 stops all three at 110; B waits for a boot (200-210): 3 x 110 + 40 = 370
    fixed, starts = elastic(jobs, idle=IdlePolicy("fixed", 0), nodes=4, boot_delay_s=10)
    assert starts == {1: 10, 2: 210}
    assert fixed.node_hours == pytest.approx(370 / 3600) and fixed.node_starts == 4


def test_keep_never_starts_a_node_for_its_pool():
    keep = AdaptivePool(boot_delay_s=180, max_nodes=100, idle_s=0, boots=False)
    grow = AdaptivePool(boot_delay_s=180, max_nodes=100, idle_s=0, boots=True)
    for t in range(0, 3600, 60):
        keep.arrived(t, 4)
        grow.arrived(t, 4)
    # 3 nodes run, 1 waits, 4 are up: min_nodes stays at what runs and waits
    assert keep.plan(3600, 3, 1, 4).min_nodes == 4
    assert grow.plan(3600, 3, 1, 4).min_nodes > 4  # adaptive starts nodes ahead of demand
    # with 9 up, keep holds up to its pool of the 5 idle ones
    assert 4 < keep.plan(3600, 3, 1, 9).min_nodes <= 9


def test_anticipate_starts_nodes_ahead_only_while_the_forecast_is_confident():
    busy = AdaptivePool(180, 100, idle_s=0, boots=False, start_headroom=0.5)
    quiet = AdaptivePool(180, 100, idle_s=0, boots=False, start_headroom=0.5)
    for t in range(0, 3600, 60):  # a node a minute: ~1.9 nodes expected per boot delay
        busy.arrived(t, 1)
    for t in range(0, 3600, 600):  # a node every 10 min: ~0.18
        quiet.arrived(t, 1)
    # 3 run, none idle: busy starts ceil(0.5 x 1.9) = 1 ahead, quiet only keeps what runs
    assert busy.plan(3600, 3, 0, 3).min_nodes == 4
    assert quiet.plan(3600, 3, 0, 3).min_nodes == 3
    # with no more arrivals the forecast decays: following changes_at, the start-ahead
    # pool goes when less than one node is expected per boot delay, and not before
    t = 3600.0
    while busy.plan(t, 3, 0, 3).min_nodes == 4:
        assert busy.forecast.rate_at(t) * 180 >= 1
        after = busy.changes_at(t)
        assert t < after < math.inf
        t = after
    assert busy.plan(t, 3, 0, 3).min_nodes == 3
    assert 0.99 < busy.forecast.rate_at(t) * 180 < 1


def test_anticipate_waits_less_than_keep_when_no_node_is_ever_released_in_time():
    # a one-node job every minute for 2 h, each running 3 h: no job ends while they come, so
    # keep boots one node per job and each waits the boot delay; anticipate, once about a
    # node is expected per boot delay, has a node up before the next job comes
    jobs = [SwfJob(k, k * 60, 10800, 1, 10800) for k in range(120)]
    keep, _ = elastic(jobs, idle=parse_idle_policy("keep"), nodes=200, boot_delay_s=180)
    ahead, _ = elastic(jobs, idle=parse_idle_policy("anticipate"), nodes=200, boot_delay_s=180)
    assert keep.mean_wait_s == 180 and keep.node_starts == 120
    assert ahead.mean_wait_s < 120
    # the nodes it started ahead were used: at most the last forecast's one or two are spare
    assert ahead.node_starts <= 122
    assert ahead.node_hours < keep.node_hours * 1.01


def _random_workload(seed: int) -> tuple[list[SwfJob], int, int, float]:
    rng = random.Random(seed)
    t, jobs = 0, []
    for k in range(40):
        t += rng.choice([0, 0, 1, 5, 20, 60, 200, 1000, 3000])
        run = rng.choice([1, 5, 30, 100, 400, 2000])
        limit = run * rng.choice([1, 2, 10])
        width = rng.choice([1, 1, 1, 2, 3, 4, 8, 16])
        jobs.append(SwfJob(k + 1, t, run, width, limit, user=k * 7 % 3))
    return jobs, rng.choice([1, 2, 4]), rng.choice([8, 16, 40]), rng.choice([10, 60, 180])


@pytest.mark.parametrize("seed", range(6))
def test_the_replay_shortcuts_change_no_decision(seed):
    # whole_view: the autoscaler runs at every event and sees every node and queued task
    jobs, cpn, nodes, boot = _random_workload(seed)
    policies = ("fixed:0", "fixed:60", "adaptive:0", "adaptive", "keep", "anticipate", "ski:3")
    for text in (*policies, "session", "session:0", "value", "value:3", "forecast", "forecast:3"):
        idle = parse_idle_policy(text)
        fast, fast_starts = elastic(
            jobs, idle=idle, nodes=nodes, cores_per_node=cpn, boot_delay_s=boot
        )
        ref, ref_starts = elastic(
            jobs, idle=idle, nodes=nodes, cores_per_node=cpn, boot_delay_s=boot, whole_view=True
        )
        assert fast_starts == ref_starts, text
        assert fast.node_hours == pytest.approx(ref.node_hours), text
        assert (fast.node_starts, fast.peak_nodes) == (ref.node_starts, ref.peak_nodes), text


@pytest.mark.parametrize(
    ("gaps", "buy", "keep"),
    [
        ([], 100, 0),  # nothing seen yet: the default, stop at once
        ([10] * 5, 100, 10),  # every gap short: keeping 10 s saves every boot
        ([1000] * 5, 100, 0),  # every gap longer than a boot costs: stop at once
        # 8 x 20 s and 2 x 5000 s, boot 100: keep 20 costs 160 + 2 x 120 = 400 < 10 x 100
        ([20] * 8 + [5000] * 2, 100, 20),
        ([20] * 2 + [5000] * 8, 100, 0),  # 40 + 8 x 120 = 1000 = 10 x 100: not better
        ([30, 60, 90], 100, 90),  # keeping up to the longest gap pays: 180 < 300
    ],
)
def test_ski_rental_keeps_an_idle_node_for_the_gap_of_least_mean_cost(gaps, buy, keep):
    rental = SkiRental(buy)
    for gap in gaps:
        rental.observe(gap)
    assert rental.keep_s() == keep


def test_ski_rental_forgets_gaps_beyond_its_window():
    rental = SkiRental(100, window=4)
    for gap in [10, 10, 10, 10]:
        rental.observe(gap)
    assert rental.keep_s() == 10
    for gap in [1000, 1000, 1000, 1000]:  # the short gaps leave the window
        rental.observe(gap)
    assert rental.keep_s() == 0
    with pytest.raises(ValueError):
        SkiRental(-1)


def test_ski_learns_the_idle_gap_and_keeps_the_node_for_the_next_job():
    # one node, boot 10 s, buy = 10 x (1 + 1) = 20 node-seconds, no warm pool. A runs 10-30;
    # nothing seen yet, so the node stops at 30. B at 45 boots it again (Online 55): the
    # stopped node's gap, 30 to 45 = 15 s < 20, is learnt, so after B (55-75) the node is
    # kept 15 s and C at 88 (13 s later) starts at once. fixed:0 boots a third time for C.
    jobs = [SwfJob(1, 0, 20, 1, 20), SwfJob(2, 45, 20, 1, 20), SwfJob(3, 88, 20, 1, 20)]
    ski, starts = elastic(jobs, idle=IdlePolicy("ski", 0, 0.0), nodes=1, boot_delay_s=10)
    assert starts == {1: 10, 2: 55, 3: 88}
    assert ski.node_starts == 2
    assert ski.node_hours == pytest.approx((30 + 63) / 3600)  # up 0-30 and 45-108
    fixed, starts = elastic(jobs, idle=IdlePolicy("fixed", 0), nodes=1, boot_delay_s=10)
    assert starts[3] == 98 and fixed.node_starts == 3
    # the same gaps with a cheaper wait (buy = 10): keeping 15 s does not pay, C boots
    cheap, starts = elastic(
        jobs, idle=IdlePolicy("ski", 0, 0.0, wait_weight=0.0), nodes=1, boot_delay_s=10
    )
    assert starts[3] == 98 and cheap.node_starts == 3


def test_session_keeps_a_users_nodes_for_its_next_job_and_no_longer():
    # boot 10 s, wait weight 1 (buy 20 node-seconds), no aggregate pool (headroom 0).
    # User 1: A (0) runs 10-30; nothing learnt, its node stops at 30. B at 34 (think time
    # 4) boots again, runs 44-64; the group's think times ([4]) say keep 4 s, so the node
    # stays to 68 and C at 67 (think 3) starts at once. User 2's D (2 nodes, 200) runs
    # 210-230; user 2 is new and borrows the group's keep ([4, 3]: 4 s), and never
    # returns: its nodes stop at 234, 4 s each and no more. User 1's E (300) finds no node
    # kept (C ended at 87, kept to 91) and boots. Node-seconds: 30 + (34-91) 57 + 2 x 34
    # + (300-330) 30 = 185.
    jobs = [
        SwfJob(1, 0, 20, 1, 20, user=1),
        SwfJob(2, 34, 20, 1, 20, user=1),
        SwfJob(3, 67, 20, 1, 20, user=1),
        SwfJob(4, 200, 20, 2, 20, user=2),
        SwfJob(5, 300, 20, 1, 20, user=1),
    ]
    session = IdlePolicy("session", 0, 0.0)
    outcome, starts = elastic(jobs, idle=session, nodes=3, boot_delay_s=10)
    assert starts == {1: 10, 2: 44, 3: 67, 4: 210, 5: 310}
    assert outcome.node_starts == 5
    assert outcome.node_hours == pytest.approx(185 / 3600)
    # fixed:0 boots C too (it waits 10 s): 6 starts, 30 x 3 + 2 x 30 + 30 = 180
    fixed, starts = elastic(jobs, idle=IdlePolicy("fixed", 0), nodes=3, boot_delay_s=10)
    assert starts[3] == 77 and fixed.node_starts == 6
    assert fixed.node_hours == pytest.approx(180 / 3600)
    # without user ids nothing is learnt: session is fixed:0 here
    anonymous = [replace(j, user=-1) for j in jobs]
    blind, starts = elastic(anonymous, idle=session, nodes=3, boot_delay_s=10)
    assert starts[3] == 77 and blind.node_starts == 6


def test_idle_policies_parse():
    assert parse_idle_policy("fixed:300") == IdlePolicy("fixed", 300)
    assert parse_idle_policy("adaptive").name == "adaptive"
    assert parse_idle_policy("adaptive:30").idle_s == 30
    assert parse_idle_policy("keep").name == "keep"
    assert parse_idle_policy("keep:60").name == "keep:60"
    assert parse_idle_policy("anticipate").name == "anticipate"
    assert parse_idle_policy("anticipate").start_headroom == 0.5
    assert parse_idle_policy("anticipate:30").idle_s == 30
    assert parse_idle_policy("ski").name == "ski"
    assert parse_idle_policy("ski:3").wait_weight == 3
    assert parse_idle_policy("ski:3").name == "ski:3"
    assert parse_idle_policy("session").name == "session"
    assert parse_idle_policy("session").headroom == 1.0
    assert parse_idle_policy("session:3").wait_weight == 3
    assert parse_idle_policy("session:3").name == "session:3"
    assert parse_idle_policy("value").name == "value"
    assert parse_idle_policy("value").wait_weight == 30
    assert parse_idle_policy("value:12.5").wait_weight == 12.5
    assert parse_idle_policy("value:12.5").name == "value:12.5"
    bad_ones = ("fixed", "fixed:x", "lazy", "fixed:-1", "ski:x", "ski:-1", "ski:inf")
    for bad in (*bad_ones, "session:x", "session:-2", "value:x", "value:-1", "value:inf"):
        with pytest.raises(ValueError):
            parse_idle_policy(bad)


def test_cli_replays_elastic_as_json_with_the_frontier(tmp_path):
    trace = tmp_path / "two.swf"
    trace.write_text(
        "1 0 0 20 1 -1 -1 1 20 -1 1 1 1 -1 1 -1 -1 -1\n"
        "2 40 0 10 1 -1 -1 1 10 -1 1 1 1 -1 1 -1 -1 -1\n"
    )
    base = [*hpc_command(), "sim", "replay", str(trace), "--nodes", "2", "--elastic"]
    out = subprocess.run(
        [*base, "--boot-delay", "10", "--idle-policy", "fixed:5", "--frontier", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["policy"]["idle_policy"] == "fixed:5"
    assert doc["policy"]["node_hours"] == pytest.approx(55 / 3600)
    assert doc["policy"]["mean_wait_s"] == 10
    assert [o["idle_policy"] for o in doc["frontier"]] == [
        "fixed:60",
        "fixed:120",
        "fixed:300",
        "fixed:600",
        "fixed:900",
        "fixed:1800",
    ]
    quick = subprocess.run(
        [*base, "--boot-delay", "10", "--json"], capture_output=True, text=True, timeout=60
    )
    assert quick.returncode == 0, quick.stderr
    doc = json.loads(quick.stdout)
    assert doc["policy"]["idle_policy"] == "value" and doc["frontier"] == []  # the default
    timed = subprocess.run(
        [*base, "--boot-delay", "10", "--idle-policy", "fixed:5", "--timer", "60",
         "--scale-down-delay", "100", "--frontier", "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert timed.returncode == 0, timed.stderr
    doc = json.loads(timed.stdout)
    for o in (doc["policy"], *doc["frontier"]):  # the frontier runs on the same timer
        assert (o["timer_s"], o["scale_down_delay_s"]) == (60, 100)
    # n0 idle from 30 is stopped by no run before B takes it at 40 (every event: at 35)
    assert doc["policy"]["node_hours"] == pytest.approx(50 / 3600)
    table = subprocess.run(
        [*base, "--boot-delay", "10", "--timer", "60", "--scale-down-delay", "100"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "autoscaler every 60 s, scale-down delay 100 s" in " ".join(table.stdout.split())
    users = subprocess.run(
        [*base, "--boot-delay", "10", "--idle-policy", "session:3", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert users.returncode == 0, users.stderr
    assert json.loads(users.stdout)["policy"]["idle_policy"] == "session:3"
    bad = subprocess.run(
        [*base, "--idle-policy", "lazy"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 1 and "--idle-policy" in bad.stderr


def test_no_node_is_kept_for_a_job_that_cannot_fit_under_the_ceiling():
    # boot 10 s, idle 0 s, 4 one-core nodes. A (3 nodes, 1000 s) and B (1 node, 200 s) at
    # 0 run 10-1010 and 10-210. C (2 nodes) at 100 cannot fit beside them (3 + 2 > 4) until
    # A ends: B's node, idle from 210, is stopped at once (kept for C it would idle until
    # 1010). At 1010 A's nodes take C at once. Node-seconds: A's 3 x 1010 (C runs 1010-1020
    # on two of them, the third stops at 1010) + 20, B's 210. The cluster's rule
    # (shared.domain.ceiling, tests/test_ceiling.py).
    jobs = [SwfJob(1, 0, 1000, 3, 1000), SwfJob(2, 0, 200, 1, 200), SwfJob(3, 100, 10, 2, 10)]
    outcome, starts = elastic(jobs, idle=IdlePolicy("fixed", 0), nodes=4, boot_delay_s=10)
    assert starts == {1: 10, 2: 10, 3: 1010}
    assert outcome.node_hours == pytest.approx((3 * 1010 + 20 + 210) / 3600)
