"""The scheduler's policies and the trace simulator, against schedules worked out by hand."""

from __future__ import annotations

import json
import subprocess

import pytest

from hpc.localcluster import hpc_command
from shared.domain.scheduler import Busy, Request, Space, schedule
from shared.sim import replay, swf
from shared.sim.swf import SwfJob

# 3 one-core nodes. A takes 2 nodes for 10 s; B wants all 3; C is short, D is long.
#   FCFS: A 0-10, B 10-15, C 15-19, D 15-35         waits 0, 9, 13, 12
#   EASY: B is reserved at 10; C (limit 4) fits in the hole before 10 and starts at 2;
#         D (limit 20) would delay B, so it waits: A 0-10, C 2-6, B 10-15, D 15-35
#                                                  waits 0, 9, 0, 12
HAND = [
    SwfJob(1, 0, 10, 2, 10),  # A
    SwfJob(2, 1, 5, 3, 5),  # B
    SwfJob(3, 2, 4, 1, 4),  # C
    SwfJob(4, 3, 20, 1, 20),  # D
]


def test_fcfs_by_hand():
    outcome, starts = replay.replay(HAND, nodes=3, policy="fcfs")
    assert starts == {1: 0, 2: 10, 3: 15, 4: 15}
    assert outcome.mean_wait_s == pytest.approx((0 + 9 + 13 + 12) / 4)
    assert outcome.makespan_s == 35


def test_easy_by_hand():
    outcome, starts = replay.replay(HAND, nodes=3, policy="easy")
    assert starts == {1: 0, 2: 10, 3: 2, 4: 15}
    assert outcome.mean_wait_s == pytest.approx((0 + 9 + 0 + 12) / 4)
    # utilization: core-seconds 2*10 + 3*5 + 1*4 + 1*20 = 59 over 3 cores x 35 s
    assert outcome.utilization == pytest.approx(59 / (3 * 35))


def test_a_job_that_overruns_its_limit_runs_in_full_and_delays_the_reservation():
    jobs = [
        SwfJob(1, 0, 30, 2, 10),  # asked for 10 s, ran 30 s
        SwfJob(2, 1, 5, 3, 5),
        SwfJob(3, 2, 4, 1, 4),
    ]
    _, starts = replay.replay(jobs, nodes=3, policy="easy")
    assert starts == {1: 0, 2: 30, 3: 2}


def test_bounded_slowdown_uses_tau_10_seconds():
    jobs = [SwfJob(1, 0, 2, 1, 2), SwfJob(2, 0, 2, 1, 2)]  # one waits 2 s for the only node
    outcome, _ = replay.replay(jobs, nodes=1, policy="fcfs")
    # slowdowns: max(1, 2/10) = 1 and max(1, (2 + 2) / 10) = 1
    assert outcome.mean_bounded_slowdown == 1.0


def test_backfill_may_use_cores_the_reservation_does_not_need():
    # Node a runs X (limit 100) on 2 of its 4 cores; H wants 3 cores of one node: reserved
    # on a at 100 with 1 spare core there. L (no limit) may take that 1 spare core now;
    # a second L may not (it would delay H).
    spaces = [Space("a", (), 2)]
    busy = [Busy("a", 2, 100.0)]
    queue = [Request("H", 3), Request("L1", 1), Request("L2", 1)]
    decision = schedule(queue, spaces, busy, now=0.0, policy="easy")
    assert [s.key for s in decision.starts] == ["L1"]
    assert decision.reservation is not None and decision.reservation.at == 100.0


def test_without_known_limits_easy_still_reserves_nodes_at_an_unknown_time():
    # a runs something with no limit on 2 of its 3 cores: "big" (3 cores) gets no projected
    # time, but node a is reserved for it (HPC Pack: no backfill past a blocked job when
    # runtimes are unknown). "small" may use b; "other" may not take a's free core.
    spaces = [Space("a", (), 1, 3), Space("b", (), 1, 1)]
    busy = [Busy("a", 2, None)]
    queue = [Request("big", 3), Request("small", 1, limit_s=1.0), Request("other", 1)]
    decision = schedule(queue, spaces, busy, now=0.0, policy="easy")
    assert [(s.key, s.nodes) for s in decision.starts] == [("small", ("b",))]
    assert decision.reservation is not None
    assert (decision.reservation.at, decision.reservation.nodes) == (None, ("a",))


def test_fcfs_never_passes_the_first_request_that_does_not_fit():
    spaces = [Space("a", (), 1)]
    decision = schedule(
        [Request("big", 2), Request("small", 1)], spaces, [], now=0.0, policy="fcfs"
    )
    assert decision.starts == []


def test_multi_node_requests_take_all_their_nodes_or_none():
    spaces = [Space("a", ("G",), 1), Space("b", ("G",), 1), Space("c", ("H",), 4)]
    decision = schedule(
        [Request("mpi", 1, nodes=3, groups=frozenset({"G"})), Request("one", 1)],
        spaces,
        [],
        now=0.0,
        policy="easy",
    )
    assert [s.key for s in decision.starts] == ["one"]
    decision = schedule([Request("mpi", 1, nodes=2, groups=frozenset({"G"}))], spaces, [], now=0.0)
    assert decision.starts[0].nodes == ("a", "b") and decision.starts[0].group == "G"


def test_swf_lines_are_parsed_and_unknowns_fall_back():
    text = [
        "; Version: 2.2",
        "1 0 5 100 4 -1 -1 8 3600 -1 1 1 1 -1 1 -1 -1 -1",  # requested 8 procs, 1 h
        "2 10 0 50 2 -1 -1 -1 -1 -1 1 7 1 -1 1 -1 -1 -1",  # requested unknown: allocated, run
        "3 20 0 0 2 -1 -1 2 60 -1 0 1 1 -1 1 -1 -1 -1",  # never ran: skipped
        "4 30 0 50 2 -1 -1 2 60",  # 9 fields: user unknown
    ]
    assert list(swf.parse(text)) == [  # field 12: the user id
        SwfJob(1, 0, 100, 8, 3600, 1),
        SwfJob(2, 10, 50, 2, 50, 7),
        SwfJob(4, 30, 50, 2, 60, -1),
    ]
    with pytest.raises(swf.SwfError, match="line 2"):
        list(swf.parse(["; x", "1 2 3"]))


@pytest.mark.parametrize("field", [1, 3, 8])  # submit, run, requested time
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e300", "1000000000000"])
def test_a_trace_with_a_time_that_is_not_finite_is_refused_not_replayed_forever(field, value):
    fields = ["1", "0", "0", "100", "1", "-1", "-1", "1", "100"] + ["1"] * 9
    fields[field] = value
    with pytest.raises(swf.SwfError, match="line 1: times must be finite numbers of seconds"):
        list(swf.parse([" ".join(fields)]))


def test_cli_replays_a_trace_as_json(tmp_path):
    trace = tmp_path / "hand.swf"
    trace.write_text(
        "\n".join(
            f"{j.id} {j.submit:g} 0 {j.run:g} {j.procs} -1 -1 {j.procs} {j.limit:g} -1 1 1 1 -1 1 -1 -1 -1"
            for j in HAND
        )
    )
    out = subprocess.run(
        [*hpc_command(), "sim", "replay", str(trace), "--nodes", "3", "--policy", "easy", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["mean_wait_s"] == pytest.approx(5.25) and doc["jobs"] == 4
    bad = subprocess.run(
        [*hpc_command(), "sim", "replay", str(trace), "--policy", "lifo"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1 and "--policy must be one of fcfs, easy" in bad.stderr


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "no job that ran"),
        (["; only a comment"], "no job that ran"),
        (["1 0 0 100 8 -1 -1 8 100"], "every job asks for more than 3 x 1 cores"),
    ],
)
def test_cli_refuses_a_trace_with_nothing_to_replay_in_one_line(tmp_path, lines, message):
    trace = tmp_path / "odd.swf"
    trace.write_text("\n".join(lines))
    out = subprocess.run(
        [*hpc_command(), "sim", "replay", str(trace), "--nodes", "3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and message in out.stderr
    assert "Traceback" not in out.stderr and out.stderr.strip().count("\n") == 0


def test_cli_says_how_many_jobs_are_too_wide_to_replay(tmp_path):
    trace = tmp_path / "mixed.swf"
    trace.write_text("1 0 0 100 8 -1 -1 8 100\n2 5 0 100 1 -1 -1 1 100\n")
    out = subprocess.run(
        [*hpc_command(), "sim", "replay", str(trace), "--nodes", "3", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "1 of 2 jobs ask for more than 3 x 1 cores and are left out" in out.stderr
    assert json.loads(out.stdout)["jobs"] == 1


@pytest.mark.parametrize(
    "flags",
    [
        ["--boot-delay", "1e300"],
        ["--timer", "1e300"],
        ["--scale-down-delay", "1e300"],
        ["--idle-policy", "keep:99999999999999999999"],
        ["--idle-policy", "value:1e307"],
    ],
)
def test_cli_refuses_elastic_settings_out_of_range_in_one_line(tmp_path, flags):
    trace = tmp_path / "one.swf"
    trace.write_text("1 0 0 100 1 -1 -1 1 100\n")
    out = subprocess.run(
        [*hpc_command(), "sim", "replay", str(trace), "--nodes", "3", "--elastic", *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "unexpected" not in out.stderr and "Traceback" not in out.stderr
    assert flags[0] in out.stderr or "idle policy" in out.stderr
