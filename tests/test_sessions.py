"""The session keep rule (shared/domain/sessions.py): think times learnt online per user,
the keep time ski rental picks from them, and the nodes a user's keep holds."""

from __future__ import annotations

import math

import pytest

from shared.domain.sessions import SessionAware, SessionKeep, ThinkTimes, run_band

# (event, time, user): "end" opens a think time, "submit" closes the user's open ones
QUICK_U = [("end", 0, "u"), ("submit", 5, "u"), ("end", 10, "u"), ("submit", 15, "u")]
QUICK_U += [("end", 20, "u"), ("submit", 25, "u")]  # u: three think times of 5 s
SLOW_V = [("end", 0, "v"), ("submit", 50, "v"), ("end", 60, "v"), ("submit", 110, "v")]
SLOW_V += [("end", 120, "v"), ("submit", 170, "v")]  # v: three of 50 s


@pytest.mark.parametrize(
    ("events", "user", "keep"),
    [
        ([], "u", 0),  # nothing learnt: stop at once
        (QUICK_U, "u", 5),  # u returns 5 s after each end: keeping 5 s saves each boot (20)
        (SLOW_V, "v", 0),  # 50 s > a boot's 20 node-seconds: keeping does not pay
        (QUICK_U[:4], "u", 5),  # two think times only: the group's (the same 5 s)
        # v's own history wins over the group's (u's 5 s and v's 50 s: 5 s)
        (QUICK_U + SLOW_V, "v", 0),
        (QUICK_U + SLOW_V, "new", 5),  # a new user borrows the group's
        (QUICK_U + SLOW_V, None, 5),  # so does an unknown one
        # a submit at the very instant of the end does not close it: the keep is decided
        # after every event of an instant, so the think time is to the next submit (10 s)
        ([("end", 0, "w"), ("submit", 0, "w"), ("submit", 10, "w")], "w", 10),
        # u returns quickly 3 times, then 10 ends with no return within 100 s (recorded as
        # 101 s each once 100 s have passed): 3 x 5 + 10 x 25 = 265 > 13 x 20 = 260
        (
            QUICK_U + [("end", 30 + 200 * k, "u") for k in range(10)] + [("end", 2500, "x")],
            "u",
            0,
        ),
        # ... with 8 such ends keeping 5 s still pays: 15 + 8 x 25 = 215 < 11 x 20 = 220
        (
            QUICK_U + [("end", 30 + 200 * k, "u") for k in range(8)] + [("end", 2500, "x")],
            "u",
            5,
        ),
    ],
)
def test_a_users_keep_time_is_the_ski_rental_of_its_own_think_times(events, user, keep):
    think = ThinkTimes(buy_s=20, max_keep_s=100)
    for kind, t, who in events:
        if kind == "end":
            think.opened(t, who)
        else:
            think.submitted(t, who)
    assert think.keep_s(user) == keep


def test_think_times_are_learnt_per_run_time_band_of_the_ended_job():
    assert [run_band(s) for s in (None, 0, 59, 60, 599, 600, 3599, 3600, 1e9)] == [
        -1,
        0,
        0,
        1,
        1,
        2,
        2,
        3,
        3,
    ]
    # u comes back 5 s after each job of under a minute, 1000 s after each of over an hour
    think = ThinkTimes(buy_s=20, max_keep_s=3600)
    for k in range(3):
        t = 10_000.0 * k
        think.opened(t, "u", run_band(30))
        think.submitted(t + 5, "u")
        think.opened(t + 100, "u", run_band(7200))
        think.submitted(t + 1100, "u")
    assert think.keep_s("u", run_band(30)) == 5
    assert think.keep_s("u", run_band(7200)) == 0
    # a band u has no history in: every user's of that band, else every user's
    think.opened(40_000, "v", run_band(300))
    think.submitted(40_010, "v")
    # band 1 holds one think time (v's 10 s): every user's, 3 x 5, 3 x 1000 and 10 s,
    # where keeping 5 s costs 15 + 4 x 25 = 115 < 7 x 20
    assert think.keep_s("u", run_band(300)) == 5
    assert think.keep_s("new", run_band(30)) == 5  # every user's after short jobs


def test_session_keeps_after_a_short_job_and_not_after_a_long_one():
    policy = SessionKeep(10, 100, headroom=0)
    for k in range(3):
        t = 10_000.0 * k
        policy.ended(t, 1, "u", ran_s=30)
        policy.arrived(t + 5, 1, "u")
        policy.ended(t + 100, 1, "u", ran_s=7200)
        policy.arrived(t + 1100, 1, "u")
    policy.ended(50_000, 2, "u", ran_s=7200)
    assert policy.keep_of("u") is None
    policy.ended(50_010, 2, "u", ran_s=30)
    assert policy.keep_of("u") == (50_015, 2)


def _quick_user(policy: SessionKeep, user: str = "u") -> float:
    """Teach ``policy`` that ``user`` returns 5 s after each end; the time after."""
    for t in (0, 100, 200):
        policy.ended(t, 1, user)
        policy.arrived(t + 5, 1, user)
    return 300.0


def test_a_users_keep_holds_its_ended_jobs_nodes_until_its_keep_time_runs_out():
    # boot 10 s, wait weight 1: buy 20; no aggregate pool (headroom 0)
    policy = SessionKeep(10, 100, headroom=0)
    assert isinstance(policy, SessionAware)
    t = _quick_user(policy)
    policy.ended(t, 4, "u")  # u's 4-node job ends: kept 5 s
    assert policy.keep_of("u") == (t + 5, 4)
    assert policy.plan(t + 1, 0, 0, 4).min_nodes == 4
    assert policy.plan(t + 1, 0, 0, 2).min_nodes == 2  # never more than are up
    assert policy.plan(t + 1, 3, 1, 6).min_nodes == 6  # 3 run, 1 waits, 2 of 4 spare kept
    assert policy.changes_at(t + 1) == t + 5
    assert policy.plan(t + 5, 0, 0, 4).min_nodes == 0  # run out: the nodes stop
    assert policy.keep_of("u") is None and policy.changes_at(t + 5) == math.inf


def test_a_users_submit_uses_its_keep_and_another_users_does_not():
    policy = SessionKeep(10, 100, headroom=0)
    t = _quick_user(policy)
    policy.ended(t, 3, "u")
    policy.arrived(t + 1, 2, "v")  # another user's job: u's nodes stay kept
    assert policy.keep_of("u") == (t + 5, 3)
    policy.arrived(t + 2, 3, "u")  # u's next job takes them
    assert policy.keep_of("u") is None and policy.kept == 0
    assert policy.plan(t + 2, 3, 0, 3).min_nodes == 3


def test_a_later_end_replaces_the_users_keep_and_unknown_users_keep_nothing():
    policy = SessionKeep(10, 100, headroom=0)
    t = _quick_user(policy)
    policy.ended(t, 3, "u")
    policy.ended(t + 2, 1, "u")
    assert policy.keep_of("u") == (t + 7, 1) and policy.kept == 1
    policy.ended(t + 3, 8, None)
    assert policy.kept == 1


def test_the_aggregate_pool_is_kept_beside_the_users_keeps():
    policy = SessionKeep(180, 100, headroom=1)
    for k in range(60):  # a node a minute for an hour: ~1.9 nodes expected per boot delay
        policy.arrived(60.0 * k, 1, None)
    pool = policy.pool.size(policy.forecast.rate_at(3600))
    assert pool >= 1
    assert policy.plan(3600, 0, 0, 10).min_nodes == pool
