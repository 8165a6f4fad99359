"""Warnings an admin gets (a probe's admin got none): a node add whose VM size's name states
other vCPUs than its nodes' cores (shared/domain/vmsizes.py; `--size Standard_D4s_v5` made
2-core nodes of 4-vCPU VMs), and a maxNodes set below the group's nodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.domain.vmsizes import named_cores
from tests.app_fixtures import served_app
from tests.cli_fixtures import hpc


@pytest.mark.parametrize(
    ("size", "cores"),
    [
        ("Standard_D4s_v5", 4),
        ("Standard_HB120rs_v3", 120),
        ("Standard_NC24ads_A100_v4", 24),
        ("Standard_E64-16s_v5", 16),  # constrained: 16 active vCPUs
        ("Standard_B2ms", 2),
        ("Basic_A1", 1),
        ("Standard_F72s_v2", 72),
        ("local-small", None),
        ("", None),
        (None, None),
    ],
)
def test_the_cores_a_size_name_states(size: str | None, cores: int | None) -> None:
    assert named_cores(size) == cores


def test_a_node_add_warns_when_its_cores_are_not_its_sizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with served_app(tmp_path / "home", {"HPC_COMPUTE": "local"}) as app, app.client() as client:
        monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
        monkeypatch.setenv("HPC_TOKEN", app.token)
        made = client.patch("/api/nodegroups/AzureNodes", json={"provider": "local", "maxNodes": 4})
        assert made.status_code == 200, made.text
        out = hpc(
            "node", "add", "--group", "AzureNodes", "--count", "2", "--size", "Standard_D4s_v5"
        )
        assert out.exit_code == 0, out.output
        [warning] = out.stderr.strip().splitlines()
        assert warning.startswith("warning: Standard_D4s_v5 has 4 vCPUs by its name, but these")
        assert "--cores 4" in warning
        right = hpc(
            "node", "add", "--group", "AzureNodes", "--size", "Standard_D4s_v5", "--cores", "4"
        )
        assert right.exit_code == 0 and right.stderr == ""


def test_a_max_below_the_groups_nodes_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe's `hpc nodegroup set azurenodes --max 2` beside 5 nodes said nothing, and its
    node adds were refused later."""
    with served_app(tmp_path / "home", {"HPC_COMPUTE": "local"}) as app, app.client() as client:
        monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
        monkeypatch.setenv("HPC_TOKEN", app.token)
        made = client.patch("/api/nodegroups/AzureNodes", json={"provider": "local", "maxNodes": 5})
        assert made.status_code == 200 and "warnings" not in made.json()
        assert (
            client.post("/api/nodes", json={"group": "AzureNodes", "count": 5}).status_code == 201
        )
        out = hpc("nodegroup", "set", "azurenodes", "--max", "2")
        assert out.exit_code == 0, out.output
        [warning] = out.stderr.strip().splitlines()
        assert warning.startswith("warning: AzureNodes has 5 nodes, 3 more than its maxNodes 2")
        assert "at most 2 are up at once (the autoscaler stops the rest once idle)" in warning
        assert hpc("nodegroup", "set", "azurenodes", "--max", "5").stderr == ""
        # autoscale off: maxNodes does not cap an admin's starts (an admin probe was told so)
        off = hpc("nodegroup", "set", "azurenodes", "--no-autoscale", "--max", "2")
        assert off.exit_code == 0, off.output
        assert "its autoscale is off, so an admin may still start them all" in off.stderr
        assert "at most 2 are up" not in off.stderr
