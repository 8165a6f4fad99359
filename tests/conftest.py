"""Keep every test away from the user's real ~/.hybridhpc and a real HPC_TOKEN, and register
the fixtures several test files share (tests/*_fixtures.py; a module's own fixture of the
same name wins). The stand-ins' session fixtures are registered here only: a module that
imported one had a session instance of its own, a second server that took over
``tests.emulators``' endpoint from under the first one's tests."""

from __future__ import annotations

import pytest

from tests.agent_fixtures import agent, bus, cp, output, start_agent  # noqa: F401 - fixtures
from tests.azure_compute_fixtures import arm, azure  # noqa: F401 - fixtures
from tests.cli_fixtures import api, server  # noqa: F401 - fixtures
from tests.emulators import azurite_blob_endpoint, cosmos_endpoint  # noqa: F401 - fixtures


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HPC_HOME", str(tmp_path_factory.mktemp("hpc-home")))
    monkeypatch.delenv("HPC_TOKEN", raising=False)
    monkeypatch.delenv("HPC_API_URL", raising=False)
