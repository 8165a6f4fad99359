"""The parts of ``host.json`` the local host honours, with the Functions defaults.

Both shapes of the Service Bus section are read: the flat one of extension
bundle 4+/Service Bus extension 5 (``serviceBus.maxConcurrentSessions``) and the
older nested one (``serviceBus.sessionHandlerOptions.maxConcurrentSessions``);
the flat one wins when both are present.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLEX_DEFAULT_TIMEOUT_S = 1800.0
"""``functionTimeout`` when host.json has none: 30 minutes on the Flex Consumption plan
(infra/ deploys to it; the older Consumption plan's default is 5 and its maximum 10)."""

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)$")


def parse_timespan(text: str) -> float:
    """Seconds in a .NET TimeSpan string (``[d.]hh:mm:ss[.fffffff]``), as host.json writes durations."""
    match = _TIMESPAN.match(text.strip())
    if match is None:
        raise ValueError(f"not a TimeSpan (expected [d.]hh:mm:ss[.fff]): {text!r}")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@dataclass(frozen=True)
class HostConfig:
    """Host settings; defaults are those of the Functions host (Service Bus extension 5)."""

    route_prefix: str = "api"
    max_concurrent_calls: int = 16
    """Parallel invocations of one single-message, session-less Service Bus trigger."""
    max_concurrent_sessions: int = 8
    """Sessions one session-enabled trigger holds at once."""
    max_message_batch_size: int = 100
    """Most messages handed to one ``cardinality="many"`` invocation."""
    session_idle_timeout_s: float = 0.1
    """A held session is released after receiving nothing for this long."""
    max_auto_lock_renewal_s: float = 300.0
    """Message and session locks are renewed during an invocation for at most this long."""
    auto_complete_messages: bool = True
    function_timeout_s: float | None = FLEX_DEFAULT_TIMEOUT_S
    """``functionTimeout``: an invocation running longer fails (None: ``-1``, unbounded)."""

    @classmethod
    def load(cls, path: Path | None) -> HostConfig:
        """Read ``path``; ``None`` gives the defaults."""
        if path is None:
            return cls()
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> HostConfig:
        extensions = doc.get("extensions") or {}
        http = extensions.get("http") or {}
        bus = extensions.get("serviceBus") or {}
        sessions = bus.get("sessionHandlerOptions") or {}
        messages = bus.get("messageHandlerOptions") or {}
        batches = bus.get("batchOptions") or {}
        defaults = cls()

        def first(*values: Any, default: Any) -> Any:
            return next((v for v in values if v is not None), default)

        renewal = first(
            bus.get("maxAutoLockRenewalDuration"),
            sessions.get("maxAutoRenewDuration"),
            messages.get("maxAutoRenewDuration"),
            default=None,
        )
        idle = first(
            bus.get("sessionIdleTimeout"), sessions.get("messageWaitTimeout"), default=None
        )
        prefix = http.get("routePrefix")
        timeout = doc.get("functionTimeout")
        return cls(
            function_timeout_s=(
                defaults.function_timeout_s
                if timeout is None
                else None
                if str(timeout).strip() == "-1"
                else parse_timespan(str(timeout))
            ),
            route_prefix=defaults.route_prefix if prefix is None else str(prefix).strip("/"),
            max_concurrent_calls=int(
                first(
                    bus.get("maxConcurrentCalls"),
                    messages.get("maxConcurrentCalls"),
                    default=defaults.max_concurrent_calls,
                )
            ),
            max_concurrent_sessions=int(
                first(
                    bus.get("maxConcurrentSessions"),
                    sessions.get("maxConcurrentSessions"),
                    default=defaults.max_concurrent_sessions,
                )
            ),
            max_message_batch_size=int(
                first(
                    bus.get("maxMessageBatchSize"),
                    batches.get("maxMessageCount"),
                    default=defaults.max_message_batch_size,
                )
            ),
            session_idle_timeout_s=(
                defaults.session_idle_timeout_s if idle is None else parse_timespan(idle)
            ),
            max_auto_lock_renewal_s=(
                defaults.max_auto_lock_renewal_s if renewal is None else parse_timespan(renewal)
            ),
            auto_complete_messages=bool(
                first(
                    bus.get("autoCompleteMessages"),
                    messages.get("autoComplete"),
                    sessions.get("autoComplete"),
                    default=defaults.auto_complete_messages,
                )
            ),
        )
