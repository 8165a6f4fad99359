# ruff: noqa: F811 - pytest fixtures imported from other test modules
"""Memory as a node filter, on the agent's side: the machine's memory read at start,
``--memory-mb`` / ``HPC_AGENT_MEMORY_MB`` over it, sent in RegisterNode (left off the wire
when unknown), and a local "VM" reporting its group's memory rather than this host's."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

import agent.cli as agent_cli
from agent import machine
from agent.config import AgentConfig
from shared.domain.messages import RegisterNode
from shared.ports.compute import VmSpec
from shared.settings import Settings
from tests.agent_fixtures import ControlPlane
from tests.test_local_compute import AZ, NOW, bus, home, op, provider, registered  # noqa: F401

# --- reading the machine ----------------------------------------------------------------


def test_the_machines_memory_is_its_pages_times_the_page_size() -> None:
    expected = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20
    assert machine.memory_mb() == expected and expected > 0


@pytest.mark.parametrize("answer", [ValueError("unknown name"), OSError(22, "EINVAL"), 0, -1])
def test_memory_the_system_does_not_say_is_unknown(monkeypatch, answer) -> None:
    def sysconf(name: str) -> int:
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(machine.os, "sysconf", sysconf)
    assert machine.memory_mb() is None


def test_the_config_takes_the_machines_memory_unless_told(monkeypatch) -> None:
    monkeypatch.setattr(machine, "memory_mb", lambda: 1234)
    assert AgentConfig(name="n1").memory_mb == 1234
    assert AgentConfig(name="n1", memory_mb=99).memory_mb == 99
    monkeypatch.setattr(machine, "memory_mb", lambda: None)
    assert AgentConfig(name="n1").memory_mb is None


# --- run_agent: flag, then setting, then the machine -------------------------------------


class _Bus:
    def close(self) -> None:
        pass


@pytest.fixture
def configs(monkeypatch, tmp_path) -> list[AgentConfig]:
    """The configs run_agent would run an agent with (nothing is run)."""
    seen: list[AgentConfig] = []

    class Agent:
        def __init__(self, config: AgentConfig, **_: Any) -> None:
            seen.append(config)

        def run(self) -> None:
            pass

        def stop(self) -> None:
            pass

    monkeypatch.setattr(agent_cli, "Agent", Agent)
    monkeypatch.setattr(agent_cli, "build_bus", lambda _s: _Bus())
    monkeypatch.setattr(agent_cli, "build_output", lambda _s: None)
    monkeypatch.setattr(machine, "memory_mb", lambda: 777)
    return seen


@pytest.mark.parametrize(
    ("flag", "setting", "reported"), [(None, None, 777), (None, 2048, 2048), (512, 2048, 512)]
)
def test_memory_is_the_flags_else_the_settings_else_the_machines(
    configs, tmp_path, flag, setting, reported
) -> None:
    settings = Settings(home=tmp_path, agent_memory_mb=setting)
    assert agent_cli.run_agent("n1", memory_mb=flag, settings=settings) == 0
    assert [c.memory_mb for c in configs] == [reported]


def test_the_setting_is_read_from_hpc_agent_memory_mb(monkeypatch) -> None:
    monkeypatch.setenv("HPC_AGENT_MEMORY_MB", "3000")
    assert Settings().agent_memory_mb == 3000


@pytest.mark.parametrize(("given", "mb"), [("4096", 4096), ("16G", 16384), ("1.5g", 1536)])
def test_the_memory_flag_is_mb_or_a_size(given, mb) -> None:
    assert agent_cli.build_parser().parse_args(["--memory-mb", given]).memory_mb == mb


@pytest.mark.parametrize("bad", ["4X", "0", "65T", "-1", ""])
def test_a_bad_memory_flag_is_one_line(capsys, bad) -> None:
    with pytest.raises(SystemExit) as exited:
        agent_cli.build_parser().parse_args(["--memory-mb", bad])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--memory-mb" in err
    assert "expected MB (16384) or a size (16G, 1.5T), 1 MB to 64 TB" in err


@pytest.mark.parametrize(("given", "mb"), [("3000", 3000), ("16G", 16384), (" 2 GB ", 2048)])
def test_the_setting_is_mb_or_a_size(monkeypatch, configs, tmp_path, given, mb) -> None:
    monkeypatch.setenv("HPC_HOME", str(tmp_path))
    monkeypatch.setenv("HPC_AGENT_MEMORY_MB", given)
    assert Settings().agent_memory_mb == mb
    assert agent_cli.main(["--name", "n1"]) == 0  # python -m agent
    assert [c.memory_mb for c in configs] == [mb]


def test_a_bad_setting_is_one_line_not_a_traceback(monkeypatch, configs, capsys) -> None:
    monkeypatch.setenv("HPC_AGENT_MEMORY_MB", "16X")
    assert agent_cli.main(["--name", "n1"]) == 2 and not configs
    assert capsys.readouterr().err == (
        "agent: error: HPC_AGENT_MEMORY_MB=16X: expected MB (16384) or a size (16G, 1.5T), "
        "1 MB to 64 TB, got '16X'\n"
    )


def test_run_agent_takes_a_size_as_hpc_agent_run_may_give_it(configs, tmp_path, capsys) -> None:
    settings = Settings(home=tmp_path)
    assert agent_cli.run_agent("n1", memory_mb="16G", settings=settings) == 0
    assert [c.memory_mb for c in configs] == [16384]
    assert agent_cli.run_agent("n1", memory_mb="16X", settings=settings) == 2
    assert capsys.readouterr().err.endswith(
        "memory_mb: expected MB (16384) or a size (16G, 1.5T), 1 MB to 64 TB, got '16X'\n"
    )


def test_more_memory_than_any_machine_is_a_usage_error(configs, tmp_path, capsys) -> None:
    settings = Settings(home=tmp_path)
    assert agent_cli.run_agent("n1", memory_mb=2**40, settings=settings) == 2
    assert "memory_mb" in capsys.readouterr().err and not configs


# --- what the agent sends ---------------------------------------------------------------


@pytest.mark.parametrize("memory_mb", [5000, None])
def test_the_registration_carries_the_memory_and_none_is_left_off_the_wire(
    start_agent, bus, memory_mb
) -> None:
    cp = ControlPlane(bus)
    start_agent(memory_mb=memory_mb)
    request = cp.wait_for(RegisterNode)
    assert request.memory_mb == memory_mb
    assert ("memoryMb" in json.loads(request.to_bytes())) is (memory_mb is not None)


def test_a_local_vm_reports_its_groups_memory_not_this_hosts(provider, bus) -> None:
    for name, memory_mb in (("az-1", 12345), ("az-2", None)):
        spec = VmSpec(name=name, group=AZ, cores=1, memory_mb=memory_mb)
        op(provider.create(spec, request_id=f"c-{name}", now=NOW))
        op(provider.start(name, request_id=f"s-{name}", now=NOW))
    cp = ControlPlane(bus)
    assert registered(cp, "az-1").memory_mb == 12345
    host = registered(cp, "az-2").memory_mb
    assert host == machine.memory_mb() and host != 12345
