"""``hpc agent run``: its options reach the agent.

Against the stand-in control plane of tests/cli_fixtures.py (canned JSON, recorded requests).
"""

from __future__ import annotations

import pytest

from tests.cli_fixtures import hpc

# --- agent --------------------------------------------------------------------


def test_agent_run_passes_its_options_to_run_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def run_agent(name: str, groups: list[str], cores: int) -> int:
        calls.append((name, groups, cores))
        return 3

    import agent

    monkeypatch.setattr(agent, "run_agent", run_agent)
    result = hpc("agent", "run", "--name", "n1", "--group", "A", "--group", "B", "--cores", "4")
    assert result.exit_code == 3
    assert calls == [("n1", ["A", "B"], 4)]
