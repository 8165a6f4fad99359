"""Running jobs' likely ends (shared/domain/endchance.py, shared/domain/likelyends.py): the
chance each ends within a boot delay, learnt from ended jobs; no pool node started for the
nodes they likely free; queued work that defers boots for them. Tables of the pure rules,
then the ``forecast`` policy and the replay that use them."""

from __future__ import annotations

import json

import pytest

from shared.domain.endchance import EndChance
from shared.domain.forecastpool import ForecastPool
from shared.domain.likelyends import Release, boots_needed, deferrals, freed_by, sure_nodes
from shared.domain.waitvalue import slopes, spared
from shared.sim.elastic import IdlePolicy, elastic, parse_idle_policy
from shared.sim.swf import SwfJob

B = 180.0
H = 3600.0


def learnt(*runs: tuple[str | None, float, float]) -> EndChance:
    ends = EndChance()
    for user, limit, ran in runs:
        ends.ended(user, limit, ran)
    return ends


@pytest.mark.parametrize(
    ("runs", "user", "limit", "ran", "chance"),
    [
        ([], "a", H, 0, 0.0),  # nothing learnt: nothing known
        ([], "a", H, H - 100, 1.0),  # its limit ends within the horizon: for sure
        ([("a", H, 100)] * 3, "a", H, H + 5, 0.0),  # past its limit: its end is unknown
        ([("a", H, 100)] * 3, "a", H, 50, 1.0),  # its runs like it all ended by 230 s
        ([("a", H, 100)] * 3, "a", H, 150, 0.0),  # it outlived every run like it
        ([("a", H, 100), ("a", H, 1000)], "a", H, 150, 0.0),  # it outlived the short one
    ],
)
def test_a_jobs_chance_comes_from_the_runs_longer_than_its_own(runs, user, limit, ran, chance):
    assert learnt(*runs).chance(user, limit, ran, B) == pytest.approx(chance)


def test_the_users_own_runs_at_the_limit_outweigh_everyone_elses():
    # b's jobs at this limit run 3000 s; everyone else's 100 s. b's job at 50 s is unlikely
    # to end within the boot delay, c's (no history of its own) likely.
    runs = [("a", H, 100.0)] * 20 + [("b", H, 3000.0)] * 5
    ends = learnt(*runs)
    b, c = ends.chance("b", H, 50, B), ends.chance("c", H, 50, B)
    assert b < 0.3 < 0.7 < c
    # the user's runs at other limits count too: as ratios (100 s of 1 h) and run times
    ends = learnt(*[("d", 2 * H, 200.0)] * 10)
    assert ends.chance("d", H, 50, B) == pytest.approx(1.0)  # both end by 230 s


def test_the_users_later_runs_weigh_more():
    # one run of 100 s and one of 1000 s: the later one says more of the next
    short_last = learnt(("a", H, 1000), ("a", H, 100)).chance("a", H, 50, B)
    long_last = learnt(("a", H, 100), ("a", H, 1000)).chance("a", H, 50, B)
    assert long_last < 0.5 < short_last


def test_what_it_learnt_comes_back_from_its_json_and_stays_bounded():
    runs = [(f"u{i % 7}", H * (1 + i % 3), 60.0 * (i % 50)) for i in range(700)]
    ends = learnt(*runs)
    back = EndChance.from_dict(json.loads(json.dumps(ends.to_dict())))
    for user, limit, ran in [("u1", H, 30), ("u3", 2 * H, 600), ("x", 3 * H, 10)]:
        assert back.chance(user, limit, ran, B) == pytest.approx(ends.chance(user, limit, ran, B))
    small = EndChance(pairs_kept=3, users_kept=3, limits_kept=3)
    for i in range(10):
        small.ended(f"u{i}", H * (i + 1), 10.0)
    d = small.to_dict()
    assert [u for u, _, _ in d["same"]] == ["u7", "u8", "u9"]  # the last seen kept
    assert len(d["limit"]) == 3 and len(d["user"]) == 3


@pytest.mark.parametrize(
    ("releases", "sure"),
    [
        ([], 0),
        ([(4, 1.0)], 4),
        ([(4, 0.8)], 4),
        ([(4, 0.6)], 0),  # below the confidence (0.7)
        ([(2, 0.8), (2, 0.8)], 2),  # both: 0.64; at least one: 0.96
        ([(2, 0.9), (2, 0.9)], 4),  # both: 0.81
        ([(1, 0.5)] * 6, 2),  # at least 2 of 6 at 0.5: 0.89; 3: 0.66
        ([(100, 1.0)], 64),  # counted up to the cap
        ([(3, 0.01)] * 50, 0),  # negligible chances move nothing
    ],
)
def test_sure_nodes_is_the_most_nodes_freed_at_the_confidence(releases, sure):
    assert sure_nodes([Release(i, n, p) for i, (n, p) in enumerate(releases)]) == sure


@pytest.mark.parametrize(
    ("releases", "needs", "deferred"),
    [
        ([(1, 0.99)], [("j", 1)], {"j": 1}),  # one boot: deferred at 62/63 = 0.984
        ([(1, 0.98)], [("j", 1)], {}),  # not quite sure enough for one boot
        ([(10, 0.5)], [("j", 62)], {"j": 10}),  # 62 boots: worth it at an even chance
        ([(10, 0.49)], [("j", 62)], {}),
        ([(3, 0.99)], [("j", 2), ("k", 2)], {"j": 2, "k": 1}),  # in queue order
        ([(1, 0.9), (1, 0.999)], [("j", 1)], {"j": 1}),  # the most likely first
        ([(1, 0.9), (4, 0.995)], [("j", 1), ("k", 8)], {"j": 1, "k": 4}),  # k's bar: 0.886
        ([(5, 0.99)], [("j", 0)], {}),
    ],
)
def test_queued_work_defers_a_boot_when_the_release_is_likely_enough(releases, needs, deferred):
    got = deferrals([Release(i, n, p) for i, (n, p) in enumerate(releases)], needs, 31.0)
    assert got == deferred


@pytest.mark.parametrize(
    ("widths", "cover", "needs"),
    [
        ([(1, 2), (2, 2), (3, 1)], 3, [(2, 1), (3, 1)]),
        ([(1, 2)], 5, []),
        ([(1, 2)], 0, [(1, 2)]),
    ],
)
def test_boots_needed_are_what_idle_and_starting_nodes_do_not_cover(widths, cover, needs):
    assert boots_needed(widths, cover) == needs


def _busy_pool(now: float) -> ForecastPool:
    """A forecast whose burst of 1-node submits wants a started pool node."""
    pool = ForecastPool(B, 100)
    for i in range(40):
        pool.arrived(now - 600 + i * 15, 1, "a")
    assert pool.plan(now, 0, 0, 0).min_nodes >= 1
    return pool


def test_forecast_starts_no_pool_node_that_a_running_job_likely_frees():
    now = 10 * H
    pool = _busy_pool(now)
    started = pool.plan(now, 0, 0, 0).min_nodes
    for _ in range(10):
        pool.ran("b", H, 300.0)  # b's jobs at 1 h run 5 min
    pool.job_started("j", now - 200, started, H, "b")  # has run 200 s: ends within 100 s
    assert pool.plan(now, started, 0, started).min_nodes == started  # no pool node started
    pool.job_ended("j", now)
    pool.job_started("k", now - 200, started, 2 * H, "c")  # no run like it known
    assert pool.plan(now, started, 0, started).min_nodes > started
    # the run times it learns from the jobs it was told of
    pool.job_ended("k", now + 100)
    assert pool.ends.chance("c", 2 * H, 250, B) == pytest.approx(1.0)


def test_the_replay_defers_the_boots_of_nodes_a_running_job_likely_frees():
    # user 1 runs 4-node jobs of 300 s under a 1 h limit, one every 20,000 s (too sparse for
    # a warm pool). User 2's 4-node job comes 200 s into the 30th: the forecast has learnt
    # that user 1's jobs end at 300 s, so it starts no VM for it (a fixed idle time starts
    # 4, which come up surplus): it takes the 30th job's nodes as they come free.
    jobs = [SwfJob(i + 1, i * 20_000.0, 300.0, 4, H, 1) for i in range(30)]
    jobs += [SwfJob(100, 29 * 20_000.0 + B + 200.0, 100.0, 4, H, 2)]
    outcome, starts = elastic(jobs, idle=parse_idle_policy("forecast:31"), nodes=8, boot_delay_s=B)
    assert starts[100] == starts[30] + 300.0
    assert outcome.node_starts == 30 * 4  # each of user 1's jobs boots its own, no more
    assert outcome.node_hours == pytest.approx((30 * 4 * (B + 300) + 4 * 100) / H)
    fixed, fixed_starts = elastic(jobs, idle=IdlePolicy("fixed", 0), nodes=8, boot_delay_s=B)
    assert fixed_starts[100] == starts[100] and fixed.node_starts == 30 * 4 + 4


def _at(times: dict[float, float]):
    """A chance that steps up at the given horizons (the largest horizon not above h)."""
    return lambda h: max((p for t, p in times.items() if t <= h), default=0.0)


@pytest.mark.parametrize(
    ("jobs", "freed"),
    [
        ([], []),
        ([(2, _at({0: 1.0}))], [30.0, 30.0]),  # sure to end at once: both nodes by 30 s
        ([(2, _at({90: 1.0}))], [90.0, 90.0]),  # sure to end between 60 and 90 s
        ([(1, _at({0: 1.0})), (1, _at({150: 1.0}))], [30.0, 150.0]),
        ([(1, _at({0: 0.5})), (1, _at({0: 0.5}))], []),  # 1 expected, less 0.71: none relied on
        ([(3, _at({60: 0.5}))], []),  # 1.5 expected, less 1.5
    ],
)
def test_freed_by_counts_the_nodes_likely_freed_at_each_sixth_of_the_boot(jobs, freed):
    assert freed_by(jobs, B) == freed


def test_a_kept_node_spares_a_job_the_wait_for_a_release_not_a_whole_boot():
    shares = [(1, 0.5), (4, 0.5)]
    assert spared(shares, [30.0, 60.0], B, 1.0) == [(1, 15.0), (4, 15.0 + 90.0)]
    assert spared(shares, [], B, 1.0) == slopes(shares, B, 1.0)


def test_forecast_keeps_fewer_idle_nodes_while_running_jobs_likely_free_theirs():
    now = 10 * H
    pool = ForecastPool(B, 100)
    for i in range(3):  # 3 submits an hour: worth a kept node (a boot's wait spared)
        pool.arrived(now - H + i * H / 3, 1, "a")
    assert pool.plan(now, 0, 0, 8).min_nodes == 1  # 8 idle nodes up: one kept
    for _ in range(10):
        pool.ran("b", H, 230.0)  # b's jobs at 1 h run 230 s
    pool.job_started("j", now - 200, 4, H, "b")  # its 4 nodes come free within 30 s
    # a kept node would spare the next job 30 s, not a boot: none is kept beside them
    assert pool.plan(now, 4, 0, 12).min_nodes == 4
