"""`show` and `view` both work for one job, task, node or template (Slurm's scontrol says
show, HPC Pack's CLI view; a probe typed `hpc job show` and got "No such command"). The
second name is hidden from --help, which lists each command once."""

from __future__ import annotations

import pytest

from tests.cli_fixtures import hpc


@pytest.mark.parametrize(
    ("noun", "alias", "says"),
    [
        ("job", "show", "Show one job"),
        ("task", "show", "Show one task"),
        ("node", "show", "Show one node"),
        ("template", "view", "Show one job template"),
    ],
)
def test_the_other_name_runs_the_same_command_and_is_not_listed(noun, alias, says):
    out = hpc(noun, alias, "--help")
    assert out.exit_code == 0, out.output
    assert says in out.stdout
    listed = hpc(noun, "--help").stdout
    assert f" {alias} " not in listed
