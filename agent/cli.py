"""``python -m agent`` and :func:`run_agent`, which ``hpc agent run`` calls."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

from pydantic import ValidationError

from agent.agent import Agent
from agent.config import AgentConfig
from agent.identity import NameInUse
from agent.owners import start_error
from agent.registration import RegistrationRefused
from shared.domain.messages import EVENTS_LOCK_MS
from shared.settings import Settings, memory_size
from shared.wiring import build_bus, build_output, bus_env, quiet_azure_sdk_logs

log = logging.getLogger("agent")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
"""The node name is taken (another agent of it runs), or the control plane refused it."""


def run_agent(
    name: str | None = None,
    groups: Sequence[str] | None = None,
    cores: int | None = None,
    *,
    run_as_owner: bool | None = None,
    memory_mb: int | str | None = None,
    settings: Settings | None = None,
    enforce_memory: bool | None = None,
    wait_for_name_s: float | None = None,
) -> int:
    """Run an agent in this process until SIGTERM or SIGINT; returns the exit code
    (0 after a clean stop, 2 for a bad name, group, core count or memory or --run-as-owner
    when not root, 1 if the bus or the output store cannot be opened). ``None`` means the
    default (host name, OnPremNodes, all cores, HPC_AGENT_RUN_AS_OWNER, HPC_AGENT_MEMORY_MB
    else the machine's memory; ``memory_mb`` and the setting: MB or a size, 16G)."""
    _configure_logging()
    try:
        settings = settings or Settings()
    except ValidationError as exc:  # a bad HPC_* setting: one line, as hpc says it
        print(f"agent: error: {_setting_error(exc)}", file=sys.stderr)
        return EXIT_USAGE
    if run_as_owner is None:
        run_as_owner = settings.agent_run_as_owner
    if enforce_memory is None:
        enforce_memory = settings.agent_enforce_memory
    given = {
        "name": name,
        "groups": list(groups) if groups else None,
        "cores": cores,
        "run_as_owner": run_as_owner or None,
        "enforce_memory": enforce_memory or None,
        "memory_mb": memory_mb or settings.agent_memory_mb,
        "name_wait_s": wait_for_name_s,
    }
    try:
        config = AgentConfig.model_validate(
            {
                "heartbeat_interval_s": settings.heartbeat_interval_s,
                "kill_grace_s": settings.task_grace_s,
                "recent_ended_s": settings.heartbeat_timeout_s + EVENTS_LOCK_MS / 1000,
                **{k: v for k, v in given.items() if v is not None},
            }
        )
    except ValidationError as exc:
        print(f"agent: error: {_first_error(exc)}", file=sys.stderr)
        return EXIT_USAGE
    if config.run_as_owner and (error := start_error()) is not None:
        print(f"agent: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        bus = build_bus(settings)
        output = build_output(settings)
    except Exception as exc:
        print(f"agent: error: cannot open the bus or the output store: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if config.state_dir is None:
        config = config.model_copy(update={"state_dir": settings.home_dir / "agents" / config.name})
    config = config.model_copy(update={"lifeline_bus": bus_env(settings)})
    agent = Agent(config, bus=bus, output=output)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        agent.stop()

    previous: dict[signal.Signals, object] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        agent.run()
    except (NameInUse, RegistrationRefused) as exc:
        print(f"agent: error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        bus.close()
    return EXIT_OK


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, not the usage block: ``agent: error: ...`` and exit 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _memory(text: str) -> int:
    """``--memory-mb``: MB or a size (16G), as HPC_AGENT_MEMORY_MB."""
    try:
        mb = memory_size(text)
    except ValueError as exc:  # pydantic's error is a ValueError: its message is the line
        raise argparse.ArgumentTypeError(str(exc)) from None
    assert mb is not None
    return mb


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="agent",
        description="The HybridHPC node agent: runs the tasks the scheduler places on this node.",
    )
    parser.add_argument("--name", help="node name (default: this host's name)")
    parser.add_argument(
        "--group",
        dest="groups",
        action="extend",
        nargs="+",
        metavar="G",
        help="node group; repeat or list several (default: OnPremNodes)",
    )
    parser.add_argument(
        "--cores", type=_positive_int, help="cores this node offers (default: all of them)"
    )
    parser.add_argument(
        "--memory-mb",
        type=_memory,
        metavar="SIZE",
        help="memory this node reports, MB (16384) or a size (16G); tasks asking for more "
        "do not run on it (default: HPC_AGENT_MEMORY_MB, else this machine's memory)",
    )
    parser.add_argument(
        "--run-as-owner",
        action="store_true",
        default=None,
        help="run each task as the OS user named as its job's owner; the agent must be root "
        "(default: HPC_AGENT_RUN_AS_OWNER, else as the agent's own user)",
    )
    parser.add_argument(
        "--enforce-memory",
        action="store_true",
        default=None,
        help="kill a task whose processes use more memory than it asked for (minMemoryMb); "
        "it fails saying so (default: HPC_AGENT_ENFORCE_MEMORY, else off)",
    )
    parser.add_argument(
        "--wait-for-name",
        type=float,
        metavar="SECONDS",
        help="wait this long for an earlier agent of this name (same folder) to exit, as a "
        "service restarted by its manager does (default: refuse at once)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_agent(
        args.name,
        args.groups,
        args.cores,
        run_as_owner=args.run_as_owner,
        memory_mb=args.memory_mb,
        enforce_memory=args.enforce_memory,
        wait_for_name_s=args.wait_for_name,
    )


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    quiet_azure_sdk_logs()


def _setting_error(exc: ValidationError) -> str:
    """``HPC_AGENT_MEMORY_MB=16X: expected ...``: the first bad setting, its variable, its
    value and what it takes."""
    err = exc.errors()[0]
    field = str(err["loc"][0]) if err["loc"] else ""
    msg = err["msg"].removeprefix("Value error, ")
    return f"HPC_{field.upper()}={err.get('input')}: {msg}" if field else msg


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg
