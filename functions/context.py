"""The one ControlPlane a function app instance uses, built on first use from settings."""

from __future__ import annotations

import atexit
import threading

from shared.settings import Settings
from shared.usecases.control_plane import ControlPlane
from shared.wiring import build_bus, build_compute, build_output, build_store

_lock = threading.Lock()
_control: ControlPlane | None = None


def control() -> ControlPlane:
    global _control
    if _control is None:
        with _lock:
            if _control is None:
                settings = Settings()
                compute = build_compute(settings)
                close = getattr(compute, "close", None)
                if close is not None:
                    atexit.register(close)  # local "VMs" stop with the host that runs them
                _control = ControlPlane(
                    store=build_store(settings),
                    bus=build_bus(settings),
                    output=build_output(settings),
                    settings=settings,
                    compute=compute,
                )
    return _control


def reset() -> None:
    """Forget the ControlPlane (tests point HPC_HOME elsewhere between apps)."""
    global _control
    with _lock:
        _control = None
