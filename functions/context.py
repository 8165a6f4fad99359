"""The one ControlPlane a function app instance uses, built on first use from settings."""

from __future__ import annotations

import atexit
import threading

from pydantic import ValidationError

from shared.errors import Misconfigured
from shared.settings import Settings
from shared.usecases.control_plane import ControlPlane
from shared.wiring import build_bus, build_compute, build_output, build_store

_lock = threading.Lock()
_control: ControlPlane | None = None


def control() -> ControlPlane:
    """The instance's ControlPlane; :class:`Misconfigured` (503, saying what to set) while
    its settings cannot make one, tried again at the next call."""
    global _control
    if _control is None:
        with _lock:
            if _control is None:
                try:
                    settings = Settings()
                    compute = build_compute(settings)
                except ValidationError as exc:  # one clause a setting, not pydantic's dump
                    said = "; ".join(
                        (f"HPC_{str(e['loc'][0]).upper()}: " if e.get("loc") else "")
                        + str(e["msg"]).removeprefix("Value error, ")
                        for e in exc.errors()
                    )
                    raise Misconfigured(f"the control plane's settings are wrong: {said}") from None
                except ValueError as exc:
                    raise Misconfigured(f"the control plane cannot start: {exc}") from None
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
    """Forget the ControlPlane (tests point HPC_HOME elsewhere between apps), closing its
    store's and bus's connections: forgotten open, a test worker serving one app after
    another reached 1,024 file descriptors, past what select() takes."""
    global _control
    with _lock:
        old, _control = _control, None
    if old is not None:
        old.store.close()
        old.bus.close()
