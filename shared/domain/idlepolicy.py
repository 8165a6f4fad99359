"""Idle policies as users name them: ``hpc sim replay --idle-policy`` and a node group's
``idlePolicy`` (``hpc nodegroup set --idle-policy``) parse the same text here into the pure
rules of :mod:`shared.domain.warmpool`, :mod:`shared.domain.skirental`,
:mod:`shared.domain.sessions`, :mod:`shared.domain.waitvalue` and
:mod:`shared.domain.forecastpool`, so the simulator and the
cluster's timer mean the same thing."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from shared.domain.forecastpool import ForecastPool
from shared.domain.sessions import SessionKeep
from shared.domain.skirental import SkiKeep
from shared.domain.waitvalue import VALUE_WAIT_WEIGHT, ValuePool
from shared.domain.warmpool import AdaptivePool, FixedIdle, IdleSizing

ADAPTIVE_IDLE_S = 60
KEEP_IDLE_S = 0
KEEP_HEADROOM = 2.0
ANTICIPATE_START_HEADROOM = 0.5
SKI_WAIT_WEIGHT = 1.0
SESSION_HEADROOM = 1.0
"""session: the aggregate pool under the per-user keeps (x1, half of keep's)."""


@dataclass(frozen=True)
class IdlePolicy:
    kind: Literal["fixed", "adaptive", "keep", "anticipate", "ski", "session", "value", "forecast"]
    idle_s: int
    """fixed: the idle time before a stop; adaptive: that of nodes beyond the warm pool."""
    headroom: float = 2.0
    tau_s: float = 3600.0
    start_headroom: float = 0.0
    """anticipate: nodes started ahead, x the demand expected within one boot delay."""
    wait_weight: float = SKI_WAIT_WEIGHT
    """ski, session, value, forecast: a second of a job's wait for a boot, in node-seconds."""

    @property
    def name(self) -> str:
        weight = _DEFAULT_WEIGHT.get(self.kind)
        if weight is not None:
            w = self.wait_weight
            return self.kind if w == weight else f"{self.kind}:{w:g}"
        default = {
            "fixed": None,
            "adaptive": ADAPTIVE_IDLE_S,
            "keep": KEEP_IDLE_S,
            "anticipate": KEEP_IDLE_S,
        }[self.kind]
        return self.kind if self.idle_s == default else f"{self.kind}:{self.idle_s}"

    def build(self, boot_delay_s: float, max_nodes: int) -> IdleSizing:
        """A fresh policy object (it remembers arrivals) for one replay."""
        if self.kind == "fixed":
            return FixedIdle(self.idle_s)
        if self.kind == "ski":
            return SkiKeep(
                boot_delay_s,
                max_nodes,
                headroom=self.headroom,
                tau_s=self.tau_s,
                wait_weight=self.wait_weight,
            )
        if self.kind == "session":
            return SessionKeep(
                boot_delay_s,
                max_nodes,
                headroom=self.headroom,
                tau_s=self.tau_s,
                wait_weight=self.wait_weight,
            )
        if self.kind == "value":
            return ValuePool(boot_delay_s, max_nodes, self.wait_weight, tau_s=self.tau_s)
        if self.kind == "forecast":
            return ForecastPool(boot_delay_s, max_nodes, self.wait_weight)
        return AdaptivePool(
            boot_delay_s,
            max_nodes,
            self.idle_s,
            headroom=self.headroom,
            tau_s=self.tau_s,
            boots=self.kind == "adaptive",
            start_headroom=self.start_headroom,
        )


_DEFAULT_WEIGHT = {
    "ski": SKI_WAIT_WEIGHT,
    "session": SKI_WAIT_WEIGHT,
    "value": VALUE_WAIT_WEIGHT,
    "forecast": VALUE_WAIT_WEIGHT,
}
"""The kinds named by their wait weight, and its default (left out of the name)."""


def parse_idle_policy(text: str) -> IdlePolicy:
    """``fixed:300`` (seconds), ``adaptive[:60]``, ``keep[:0]``, ``anticipate[:0]``,
    ``ski[:W]``, ``session[:W]``, ``value[:W]`` or ``forecast[:W]`` (W: node-seconds a
    second of wait is worth); ValueError otherwise."""
    kind, colon, arg = text.strip().partition(":")
    if colon and not arg:
        raise ValueError(f"idle policy {text!r}: nothing after ':' (leave out ':' for the default)")
    if kind == "fixed" and arg:
        seconds = _seconds(arg, text)
        return IdlePolicy("fixed", seconds)
    if kind == "adaptive":
        return IdlePolicy("adaptive", _seconds(arg, text) if arg else ADAPTIVE_IDLE_S)
    if kind == "keep":
        return IdlePolicy("keep", _seconds(arg, text) if arg else KEEP_IDLE_S, KEEP_HEADROOM)
    if kind == "anticipate":
        seconds = _seconds(arg, text) if arg else KEEP_IDLE_S
        return IdlePolicy(
            "anticipate", seconds, KEEP_HEADROOM, start_headroom=ANTICIPATE_START_HEADROOM
        )
    if kind == "ski":
        return IdlePolicy("ski", 0, KEEP_HEADROOM, wait_weight=_weight(arg, text))
    if kind == "session":
        return IdlePolicy("session", 0, SESSION_HEADROOM, wait_weight=_weight(arg, text))
    if kind == "value":
        return IdlePolicy("value", 0, wait_weight=_weight(arg, text, VALUE_WAIT_WEIGHT))
    if kind == "forecast":
        return IdlePolicy("forecast", 0, wait_weight=_weight(arg, text, VALUE_WAIT_WEIGHT))
    raise ValueError(
        "idle policy must be fixed:SECONDS, adaptive[:SECONDS], keep[:SECONDS], "
        "anticipate[:SECONDS], ski[:WAIT_WEIGHT], session[:WAIT_WEIGHT], "
        f"value[:WAIT_WEIGHT] or forecast[:WAIT_WEIGHT], got {text!r}"
    )


GROUP_FORMS = (
    "fixed, fixed:SECONDS, keep[:SECONDS], anticipate[:SECONDS], adaptive[:SECONDS], "
    "value[:WAIT_WEIGHT] or forecast[:WAIT_WEIGHT]"
)
"""The idle policies a node group takes (``hpc nodegroup set --idle-policy``)."""
GROUP_KINDS = frozenset({"fixed", "keep", "anticipate", "adaptive", "value", "forecast"})
"""Kinds whose memory the cluster's timer keeps (:mod:`shared.domain.policymemory`): a
demand forecast (a rate; for ``value`` a width histogram; for ``forecast`` its rates, users'
widths and the jobs whose ends it is told)."""


def group_idle_policy(text: str) -> IdlePolicy | None:
    """A node group's ``idlePolicy``: the simulator's texts (same parser, same meaning), and
    plain ``fixed`` (None): the group's own ShrinkIdleTimes x ShrinkInterval. ValueError
    naming the accepted forms otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"idlePolicy must be text: {GROUP_FORMS}; got {text!r}")
    if text.strip() == "fixed":
        return None
    try:
        policy = parse_idle_policy(text)
    except ValueError as exc:
        detail = str(exc)
        if detail.startswith("idle policy must be"):  # the simulator's own list of forms
            detail = f"got {text!r}"
        raise ValueError(f"idlePolicy must be {GROUP_FORMS}; {detail}") from None
    if policy.kind not in GROUP_KINDS:
        raise ValueError(
            f"idlePolicy {text!r} runs in the simulator only (the cluster keeps a demand "
            f"forecast per group, not idle gaps or per-user keeps); a node group takes "
            f"{GROUP_FORMS}"
        )
    return policy


MAX_IDLE_S = 7 * 86_400
"""The longest idle time a policy takes (a week): stored in a group, it becomes a timedelta
and a count every autoscaler run computes with, so it must stay in range."""
MAX_WAIT_WEIGHT = 1e6
"""The largest wait weight (node-seconds per second of wait): far beyond any useful one,
and small enough that the pool's arithmetic stays finite."""


_DECIMAL = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9})?")


def _weight(arg: str, text: str, default: float = SKI_WAIT_WEIGHT) -> float:
    if not arg:
        return default
    if not _DECIMAL.fullmatch(arg):  # float() takes 1e3, 1_000, " 30", nan: not a weight
        raise ValueError(f"idle policy {text!r}: {arg!r} is not a number such as 30 or 27.5")
    weight = float(arg)
    if not (0 <= weight <= MAX_WAIT_WEIGHT):
        raise ValueError(
            f"idle policy {text!r}: the wait weight must be from 0 to {MAX_WAIT_WEIGHT:,.0f}"
        )
    return weight


def _seconds(arg: str, text: str) -> int:
    if not (arg.isascii() and arg.isdigit() and len(arg) <= 9):
        raise ValueError(
            f"idle policy {text!r}: {arg!r} is not whole seconds from 0 to {MAX_IDLE_S:,}"
        )
    seconds = int(arg)
    if seconds > MAX_IDLE_S:
        raise ValueError(f"idle policy {text!r}: seconds must be from 0 to {MAX_IDLE_S:,}")
    return seconds
