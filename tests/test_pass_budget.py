"""A scheduler pass ends within its budget (half the scheduler queue's lock: in Azure no
lock is renewed for the batch trigger) and kicks the next pass to place the rest."""

from shared.domain.messages import SCHEDULER_QUEUE
from shared.usecases.dispatch import CHUNK, PASS_BUDGET
from tests.test_control import Clock, make_cp, register, sweep


class SlowClock(Clock):
    """Every reading of the clock costs a second: a pass on a slow store."""

    ticking = False

    def __call__(self):
        if self.ticking:
            self.advance(1)
        return self.now


def pending_kicks(cp) -> int:
    with cp.deps.bus.get_session_receiver(SCHEDULER_QUEUE, session_id=None, max_wait_ms=10) as r:
        kicks = r.receive(max_messages=1000, max_wait_ms=10)
        for k in kicks:
            r.complete(k)
        return len(kicks)


def test_a_pass_stops_placing_at_its_budget_and_kicks_the_next(tmp_path):
    clock = SlowClock()
    cp = make_cp(tmp_path, clock)
    register(cp, "big", cores=4 * CHUNK)
    total = 4 * CHUNK
    job = cp.submit(sweep(total))
    pending_kicks(cp)
    clock.ticking = True
    first = cp.schedule_pass()
    assert 0 < first < total  # stopped between commits, the first commit always made
    assert first <= CHUNK * (PASS_BUDGET.total_seconds() + 1)
    assert pending_kicks(cp) >= 1  # the next pass is asked for
    clock.ticking = False
    rest = cp.schedule_pass()
    assert first + rest == total
    counts = cp.get_job(job.id).task_counts
    assert counts.get("Dispatching", 0) + counts.get("Running", 0) == total
