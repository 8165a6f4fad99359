"""The local provider's fault switches from a file (``HPC_LOCAL_FAULTS``), so a live cluster
can be made to fail like Azure; the file is read again only when it changes."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import pytest

from shared.adapters.local_compute import LocalProvider
from shared.ports.compute import ComputeError, ErrorKind, Operation, PowerState, VmSpec
from shared.settings import Settings
from shared.wiring import build_compute

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def write(path, data, tick: int) -> None:
    path.write_text(json.dumps(data))
    os.utime(path, (tick, tick))  # a new mtime, however fast the writes come


@pytest.fixture
def faults(tmp_path):
    return tmp_path / "faults.json"


@pytest.fixture
def provider(tmp_path, faults):
    settings = Settings(home=tmp_path / "home", compute="local", local_faults=str(faults))
    p = build_compute(settings)
    assert isinstance(p, LocalProvider) and p.faults_file == faults
    yield p
    p.close()


def spec(name: str) -> VmSpec:
    return VmSpec(name=name, group="AzureNodes", cores=1)


def test_the_faults_file_switches_creates_and_starts_in_a_live_provider(provider, faults):
    assert isinstance(provider.create(spec("a-1"), request_id="c1", now=NOW), Operation)
    write(faults, {"fail_create": "AllocationFailed"}, 1)
    refused = provider.create(spec("a-2"), request_id="c2", now=NOW)
    assert isinstance(refused, ComputeError) and refused.kind is ErrorKind.ALLOCATION_FAILED
    write(faults, {"quota_exceeded": True}, 2)
    refused = provider.start("a-1", request_id="s1", now=NOW)
    assert isinstance(refused, ComputeError) and refused.kind is ErrorKind.QUOTA_EXCEEDED
    write(faults, {"never_joins": ["a-1"]}, 3)
    assert isinstance(provider.start("a-1", request_id="s2", now=NOW), Operation)
    assert provider.faults.never_joins == {"a-1"} and not provider.faults.quota_exceeded
    faults.unlink()  # no file: no faults
    assert isinstance(provider.create(spec("a-2"), request_id="c3", now=NOW), Operation)
    assert provider.faults.never_joins == set()


def test_the_faults_file_evicts_the_vms_it_names_once(provider, faults):
    write(faults, {"never_joins": ["a-1"]}, 1)  # a "VM" without an agent: it just runs
    provider.create(spec("a-1"), request_id="c1", now=NOW)
    provider.start("a-1", request_id="s1", now=NOW)
    assert provider.power_states()["a-1"] is PowerState.RUNNING
    write(faults, {"never_joins": ["a-1"], "evict": ["a-1"]}, 2)
    assert provider.power_states()["a-1"] is PowerState.DEALLOCATED
    provider.start("a-1", request_id="s2", now=NOW)  # the same file: not evicted again
    assert provider.power_states()["a-1"] is PowerState.RUNNING


def test_a_bad_faults_file_is_ignored_keeping_the_last_good_switches(provider, faults):
    write(faults, {"quota_exceeded": True}, 1)
    provider.create(spec("a-1"), request_id="c0", now=NOW)
    write(faults, "not an object", 2)
    refused = provider.create(spec("a-2"), request_id="c1", now=NOW)
    assert isinstance(refused, ComputeError) and refused.kind is ErrorKind.QUOTA_EXCEEDED
