"""The elastic replay (shared/sim/elastic.py): autoscaled nodes through the real autoscaler
and scheduler, against node-hours and waits worked out by hand."""

from __future__ import annotations

import json
import subprocess

import pytest

from hpc.localcluster import hpc_command
from shared.domain.warmpool import DemandForecast, WarmPool
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


def test_idle_policies_parse():
    assert parse_idle_policy("fixed:300") == IdlePolicy("fixed", 300)
    assert parse_idle_policy("adaptive").name == "adaptive"
    assert parse_idle_policy("adaptive:30").idle_s == 30
    for bad in ("fixed", "fixed:x", "lazy", "fixed:-1"):
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
        [*base, "--boot-delay", "10", "--idle-policy", "fixed:5", "--json"],
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
        "fixed:300",
        "fixed:900",
        "fixed:1800",
    ]
    bad = subprocess.run(
        [*base, "--idle-policy", "lazy"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 1 and "--idle-policy" in bad.stderr
