"""The elastic replay's idle policies as the CLI names them (``--idle-policy``): parsed
text to the pure rules of :mod:`shared.domain.warmpool` and :mod:`shared.domain.skirental`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from shared.domain.skirental import SkiKeep
from shared.domain.warmpool import AdaptivePool, FixedIdle, IdleSizing

ADAPTIVE_IDLE_S = 60
KEEP_IDLE_S = 0
KEEP_HEADROOM = 2.0
ANTICIPATE_START_HEADROOM = 0.5
SKI_WAIT_WEIGHT = 1.0


@dataclass(frozen=True)
class IdlePolicy:
    kind: Literal["fixed", "adaptive", "keep", "anticipate", "ski"]
    idle_s: int
    """fixed: the idle time before a stop; adaptive: that of nodes beyond the warm pool."""
    headroom: float = 2.0
    tau_s: float = 3600.0
    start_headroom: float = 0.0
    """anticipate: nodes started ahead, x the demand expected within one boot delay."""
    wait_weight: float = SKI_WAIT_WEIGHT
    """ski: a second of a job's wait for a boot, in node-seconds."""

    @property
    def name(self) -> str:
        if self.kind == "ski":
            w = self.wait_weight
            return "ski" if w == SKI_WAIT_WEIGHT else f"ski:{w:g}"
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
        return AdaptivePool(
            boot_delay_s,
            max_nodes,
            self.idle_s,
            headroom=self.headroom,
            tau_s=self.tau_s,
            boots=self.kind == "adaptive",
            start_headroom=self.start_headroom,
        )


def parse_idle_policy(text: str) -> IdlePolicy:
    """``fixed:300`` (seconds), ``adaptive[:60]``, ``keep[:0]`` or ``anticipate[:0]``;
    ValueError otherwise."""
    kind, _, arg = text.strip().partition(":")
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
    raise ValueError(
        "idle policy must be fixed:SECONDS, adaptive[:SECONDS], keep[:SECONDS], "
        f"anticipate[:SECONDS] or ski[:WAIT_WEIGHT], got {text!r}"
    )


def _weight(arg: str, text: str) -> float:
    if not arg:
        return SKI_WAIT_WEIGHT
    try:
        weight = float(arg)
    except ValueError:
        raise ValueError(f"idle policy {text!r}: {arg!r} is not a number") from None
    if not (0 <= weight < math.inf):
        raise ValueError(f"idle policy {text!r}: the wait weight must be >= 0")
    return weight


def _seconds(arg: str, text: str) -> int:
    try:
        seconds = int(arg)
    except ValueError:
        raise ValueError(f"idle policy {text!r}: {arg!r} is not whole seconds") from None
    if seconds < 0:
        raise ValueError(f"idle policy {text!r}: seconds must be >= 0")
    return seconds
