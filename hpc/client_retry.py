"""Retries of the requests that create something (``hpc job submit``, ``hpc node add``).

Each such request carries an ``Idempotency-Key`` (a fresh UUID per command, or the one
``--idempotency-key`` gives), so sending it again cannot create twice: the control plane
answers a retry with the first request's answer. That makes it safe to retry exactly the
failures after which the request may or may not have been done: no answer (a connection
refused, dropped or timed out) and a proxy's 502, 503 or 504. A 409 saying the key's first
request is still in progress is waited out: its retry gets that request's answer.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeVar

from hpc.client_http import ApiError

T = TypeVar("T")

RETRIED_STATUSES = frozenset({502, 503, 504})
"""Answers of a gateway or a host restarting: the request may not have reached the app."""
DELAYS_S = (0.5, 1.0, 2.0, 4.0)
"""Pauses before each retry of a failure with no answer (with jitter): five tries in ~8 s."""
BUSY_WAIT_S = 90.0
"""How long a retry waits in all for the key's first request to finish (the control plane
takes a request that has not answered in 60 s as dead, and lets its retry do the work)."""


def with_retries(
    call: Callable[[], T], key: str, sleep: Callable[[float], None], rng: random.Random
) -> T:
    """``call()``, retried as the module says; the last error names ``key`` so that the user
    can retry the whole command without making a second job or node."""
    tries, waited = 0, 0.0
    reached = False  # a try reached the control plane (or may have): it may have been done
    while True:
        try:
            return call()
        except ApiError as error:
            reached = reached or not error.unsent
            if _busy(error) and waited < BUSY_WAIT_S:
                told = error.body.get("retryAfterS")
                pause = min(float(told) if isinstance(told, int) else 1.0, 2.0**tries, 8.0)
                pause = min(pause, BUSY_WAIT_S - waited)
                sleep(pause)
                waited += pause
                tries += 1
                continue
            if not (_unanswered(error) or _busy(error)):
                raise
            if _unanswered(error) and tries < len(DELAYS_S):
                sleep(DELAYS_S[tries] * rng.uniform(0.5, 1.0))
                tries += 1
                continue
            if not reached:  # every try was refused: nothing was sent, nothing was done
                raise ApiError(
                    error.status,
                    f"{error.message} (tried {tries + 1} times; nothing was sent)",
                    error.body,
                ) from None
            raise ApiError(
                error.status,
                f"{error.message} (tried {tries + 1} times; it may have been done: run the "
                f"same command with --idempotency-key {key} to retry it without doing it twice)",
                error.body,
            ) from None


def _unanswered(error: ApiError) -> bool:
    return error.transient or error.status in RETRIED_STATUSES


def _busy(error: ApiError) -> bool:
    return error.status == 409 and "retryAfterS" in error.body
