"""The stand-ins start through the project's own script (tests/emulators.py fixtures)."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest


@pytest.mark.azurite
def test_azurite_blob_service_answers(azurite_blob_endpoint: str) -> None:
    # Unauthenticated: Azurite answers (403), which is all this checks.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{azurite_blob_endpoint}?comp=list", timeout=10)
    assert refused.value.code == 403


@pytest.mark.cosmos
def test_cosmos_stand_in_answers(cosmos_endpoint: str) -> None:
    with urllib.request.urlopen(cosmos_endpoint, timeout=10) as response:
        assert response.status == 200
