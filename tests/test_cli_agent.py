"""``hpc agent run``: its options reach the agent.

Against the stand-in control plane of tests/cli_fixtures.py (canned JSON, recorded requests).
"""

from __future__ import annotations

import pytest

from tests.cli_fixtures import hpc

# --- agent --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "run_as_owner", "memory", "enforce"),
    [
        ([], None, None, None),
        (["--run-as-owner"], True, None, None),
        (["--memory-mb", "16G"], None, "16G", None),  # a size: the agent reads it (parse_mb)
        (["--memory-mb", "16384"], None, "16384", None),
        (["--enforce-memory"], None, None, True),
    ],
)
def test_agent_run_passes_its_options_to_run_agent(
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    run_as_owner: bool | None,
    memory,
    enforce: bool | None,
) -> None:
    calls = []

    def run_agent(
        name: str,
        groups: list[str],
        cores: int,
        *,
        run_as_owner: bool | None = None,
        memory_mb: int | str | None = None,
        enforce_memory: bool | None = None,
    ) -> int:
        calls.append((name, groups, cores, run_as_owner, memory_mb, enforce_memory))
        return 3

    import agent

    monkeypatch.setattr(agent, "run_agent", run_agent)
    args = ["--name", "n1", "--group", "A", "--group", "B", "--cores", "4", *flags]
    result = hpc("agent", "run", *args)
    assert result.exit_code == 3
    # None: the agent's setting decides (HPC_AGENT_RUN_AS_OWNER, off by default)
    assert calls == [("n1", ["A", "B"], 4, run_as_owner, memory, enforce)]
