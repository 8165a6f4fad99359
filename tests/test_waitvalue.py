"""The ``value`` idle policy (shared/domain/waitvalue.py): a warm pool of the size whose
spared waits (jobs of at most that width expected per second x boot delay x W) most exceed
its idle node-seconds; table tests of the pure rule, then the simulator and the cluster's
timer (fake clock) running it."""

from __future__ import annotations

import math

import pytest

from shared.domain.idlepolicy import group_idle_policy, parse_idle_policy
from shared.domain.states import NodeState
from shared.domain.waitvalue import ValuePool, WidthMix, best_pool, start_margin
from shared.sim.elastic import elastic
from shared.sim.swf import SwfJob
from shared.usecases.autoscale_log import read_log
from shared.usecases.autoscale_memory import STATE_KEY
from shared.usecases.idle_policy import MEMORY_FIELD
from tests.agent_double import AgentDouble
from tests.test_autoscale_policies import AZ, at, control, managed, provider, state  # noqa: F401
from tests.test_control import clock  # noqa: F401 - fixture

B = 180.0
"""The boot delay of these tables."""


@pytest.mark.parametrize(
    ("expected_jobs", "shares", "weight", "max_pool", "pool"),
    [
        # expected_jobs = rate x B: the spared wait of a pool of m is that x P(width <= m) x W
        (0.0, [(1, 1.0)], 30, 100, 0),  # nothing expected: no pool
        (1 / 30, [(1, 1.0)], 30, 100, 0),  # spares 1 node-s/s, costs 1: does not pay
        (0.05, [(1, 1.0)], 30, 100, 1),  # spares 1.5 for 1
        (0.05, [(1, 1.0)], 10, 100, 0),  # a wait worth less: 0.5 for 1
        (0.2, [(1, 0.5), (8, 0.5)], 30, 100, 1),  # 3 - 1 beats 6 - 8: wide jobs not served
        (2.0, [(1, 0.5), (8, 0.5)], 30, 100, 8),  # 60 - 8 beats 30 - 1
        (2.0, [(1, 0.5), (8, 0.5)], 30, 4, 1),  # at most max_pool
        (1.0, [(2, 0.25), (4, 0.75)], 30, 100, 4),  # 30 - 4 beats 7.5 - 2
        (1.0, [], 30, 100, 0),  # no width seen yet
    ],
)
def test_the_pool_is_the_size_of_most_net_value(expected_jobs, shares, weight, max_pool, pool):
    assert best_pool(expected_jobs / B, shares, B, weight, max_pool) == pool


def test_the_width_mix_weighs_recent_submits_more_and_round_trips():
    mix = WidthMix(memory=4)
    for w in (8, 8, 1, 1):
        mix.observe(w)
    shares = dict(mix.shares())
    assert shares[1] > 0.5 > shares[8]  # two of each, the ones more recent
    assert sum(shares.values()) == pytest.approx(1.0)
    again = WidthMix.from_dict(mix.to_dict(), memory=4)
    assert dict(again.shares()) == pytest.approx(dict(mix.shares()))
    for _ in range(200):
        mix.observe(1)
    assert 8 not in dict(mix.shares())  # forgotten: weights under a millionth are dropped


@pytest.mark.parametrize(("boot", "tau"), [(180.0, 3600.0), (60.0, 3600.0), (600.0, 1800.0)])
def test_the_start_margin_is_where_a_started_nodes_net_value_covers_its_boot(boot, tau):
    x = start_margin(boot, tau)
    assert tau * (x - 1 - math.log(x)) == pytest.approx(boot)
    # the same by summing the net value (x e^(-t/tau) - 1 node-s/s) until it reaches 0
    steps = 20000
    life = tau * math.log(x)
    dt = life / steps
    total = sum((x * math.exp(-(k + 0.5) * dt / tau) - 1) * dt for k in range(steps))
    assert total == pytest.approx(boot, rel=1e-4)
    assert start_margin(180.0, 3600.0) == pytest.approx(1.3504, abs=1e-4)
    assert start_margin(0.0, 3600.0) == 1.0  # no boot to pay: start at break-even


@pytest.mark.parametrize("submits", [[(0, 1)], [(0, 1), (5, 4), (9, 1), (30, 16), (31, 1)]])
def test_the_pools_shrink_exactly_when_changes_at_says(submits):
    pool = ValuePool(B, 100, wait_weight=30)
    for t, nodes in submits:
        pool.arrived(t, nodes)

    def both(t: float) -> tuple[int, int]:
        return pool.pool(t), pool.start_pool(t)

    now, sizes = 40.0, []
    while (at := pool.changes_at(now)) < math.inf:
        assert at > now
        before, after = both(at - 1e-3), both(at + 1e-3)
        assert after != before and all(a <= b for a, b in zip(after, before, strict=True))
        assert both((now + at) / 2) == before  # and not before
        sizes.append(before)
        now = at + 1e-3
    assert both(now) == (0, 0) and sizes
    assert all(start <= keep for keep, start in sizes)  # a node is started only to keep it


def test_the_plan_keeps_the_pool_on_top_of_what_runs_and_waits():
    pool = ValuePool(B, 10, wait_weight=30)
    pool.arrived(0, 1)  # 1 job an hour: 0.05 expected within B, spares 1.5 > 1.35 x 1
    plan = pool.plan(0, in_use=3, waiting=2, up=5)
    assert (plan.min_nodes, plan.idle_s) == (6, 0)
    assert pool.plan(0, in_use=9, waiting=5, up=9).min_nodes == 10  # at most max_nodes


def test_a_pool_node_is_started_only_while_it_pays_its_boot_but_kept_to_break_even():
    pool = ValuePool(B, 10, wait_weight=30)
    pool.arrived(0, 1)  # spares 1.5 node-s/s for 1 idle: decays to 1.35 x break-even in
    later = 3600 * math.log(1.5 / pool.margin) + 60  # ~6 min, to break-even in ~24 min
    assert pool.pool(later) == 1 and pool.start_pool(later) == 0
    assert pool.plan(later, in_use=3, waiting=0, up=3).min_nodes == 3  # no node is started
    assert pool.plan(later, in_use=3, waiting=0, up=4).min_nodes == 4  # the idle one is kept
    assert pool.plan(later, in_use=3, waiting=2, up=5).min_nodes == 5  # none idle: none kept
    gone = 3600 * math.log(1.5) + 60
    assert pool.plan(gone, in_use=3, waiting=0, up=4).min_nodes == 3  # past break-even


def test_value_is_a_policy_of_the_simulator_and_of_node_groups():
    assert parse_idle_policy("value").build(B, 5).wait_weight == 30  # type: ignore[attr-defined]
    assert group_idle_policy("value:12").wait_weight == 12  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=r"value\[:WAIT_WEIGHT\]"):
        group_idle_policy("valuable")


@pytest.mark.parametrize(
    "text", ["forecast:", "value: 30", "value:1_000", "forecast:1e3", "value:nan", "adaptive:"]
)
def test_a_policy_text_is_refused_unless_its_number_is_plainly_written(text):
    """A probe: float() took 'forecast:', 1_000, 1e3 and ' 30', and the text was stored as
    typed (`hpc nodegroup list` said 'idle policy forecast:')."""
    with pytest.raises(ValueError, match="idle policy"):
        parse_idle_policy(text)
    assert parse_idle_policy("forecast:27.5").wait_weight == 27.5


def _stream(gap: float, widths: list[int], run: float = 50.0) -> list[SwfJob]:
    """Jobs of the given widths every ``gap`` seconds, each running ``run`` s."""
    return [SwfJob(k + 1, k * gap, run, w, run * 2) for k, w in enumerate(widths)]


def test_in_the_simulator_narrow_jobs_find_the_pool_and_wide_ones_do_not_grow_it():
    # a narrow job every 2 min, a 16-node job every 10th: the pool serves the narrow ones
    jobs = _stream(120.0, [16 if k % 10 == 9 else 1 for k in range(200)])
    value, starts = elastic(jobs, idle=parse_idle_policy("value"), nodes=40, boot_delay_s=B)
    fixed, _ = elastic(jobs, idle=parse_idle_policy("fixed:0"), nodes=40, boot_delay_s=B)
    narrow = [starts[j.id] - j.submit for j in jobs if j.procs == 1]
    wide = [starts[j.id] - j.submit for j in jobs if j.procs == 16]
    assert sum(w > 0 for w in narrow[5:]) <= 1  # after the first few, no narrow job waits
    assert min(wide) == B  # a 16-node job always boots: no pool of 16 is kept for it
    assert value.mean_wait_s < fixed.mean_wait_s / 2
    # the pool is about one node: node-hours above fixed:0's by at most ~1 node all along
    span_h = (jobs[-1].submit + 50 + B) / 3600
    assert value.node_hours - fixed.node_hours < 1.5 * span_h


# --------------------------------------------------- the cluster's timer (fake clock)

POOL_GONE_S = 3600 * math.log(1.5)
"""When one 1-node submit's pool stops paying: 1/3600 jobs/s x 180 s x W 30 = 1.5 node-s
spared per second for 1 idle, falling under 1 after ln(1.5) h (~1,460 s)."""


def test_the_timer_starts_the_pool_beside_the_jobs_node_keeps_one_and_stops_it_later(
    tmp_path,
    clock,  # noqa: F811
    provider,  # noqa: F811
):
    cp = control(tmp_path, clock, provider)
    names = managed(cp, provider, "value")
    cp.submit({"command": "x", "nodeGroups": [AZ]})
    clock.advance(1)
    cp.autoscale()
    assert {state(cp, n) for n in names} == {NodeState.STARTING}  # the job's node and the pool's
    [pool_start] = [
        e
        for e in read_log(cp.deps, group=AZ)
        if e["reason"].startswith("started for the warm pool")
    ]
    assert (
        "(value: 0 in use + 1 for queued work + a warm pool of 1 for the 0.05 jobs expected"
        in (pool_start["reason"])
    )
    clock.advance(30)
    agents = [AgentDouble(cp, n, cores=1, groups=(AZ,)) for n in names]
    assert all(a.register().accepted for a in agents)
    assert cp.schedule_pass() == 1
    assert sum(len(a.run_all()) for a in agents) == 1
    at(cp, clock, 600)  # the job ended: the floor is the pool, 1; the other idle node stops
    assert sorted(state(cp, n).value for n in names) == ["Online", "Stopping"]
    [kept] = [e for e in read_log(cp.deps, group=AZ) if e["action"] == "keep"]
    assert (
        kept["reason"]
        == "kept 1 idle node: warm pool for the 0.042 jobs expected within 180 s (value)"
    )
    memory = cp.store.get_meta(STATE_KEY).data[MEMORY_FIELD]["groups"][AZ]
    assert memory["widths"] == {"1": 1.0} and memory["rate"] == pytest.approx(1 / 3600)
    at(cp, clock, POOL_GONE_S - 60)
    assert NodeState.ONLINE in {state(cp, n) for n in names}
    at(cp, clock, POOL_GONE_S + 60)
    assert NodeState.ONLINE not in {state(cp, n) for n in names}


def test_the_width_mix_survives_a_restart_of_the_control_plane(
    tmp_path,
    clock,  # noqa: F811
    provider,  # noqa: F811
):
    cp = control(tmp_path, clock, provider)
    managed(cp, provider, "value")
    cp.submit({"command": "x", "nodeGroups": [AZ]})
    clock.advance(1)
    cp.autoscale()
    again = control(tmp_path, clock, provider)  # a new Deps over the same store
    at(again, clock, 120)
    memory = again.store.get_meta(STATE_KEY).data[MEMORY_FIELD]["groups"][AZ]
    assert memory["widths"] == {"1": 1.0}  # not forgotten, and the job not counted twice
    assert memory["rate"] == pytest.approx(1 / 3600)
