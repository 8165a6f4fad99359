"""What the Blob output store does beyond the Output contract (tests/contract/
test_output_contract.py runs that on it too): the control plane, with no agent files,
reads what was published; publish is incremental and repeatable; settings and wiring."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from shared.adapters.blob_output import APPEND_BLOCK_BYTES, BlobOutputStore, blob_name
from shared.ports.output import truncation_marker
from shared.settings import Settings
from shared.wiring import build_output
from tests.emulators import azurite_connection_string


@pytest.fixture
def stores(azurite_blob_endpoint: str, tmp_path: Path) -> tuple[BlobOutputStore, BlobOutputStore]:
    """The agent's store and the control plane's: same container, separate local folders."""
    connection = azurite_connection_string(azurite_blob_endpoint)
    container = f"t{uuid.uuid4().hex[:20]}"
    agent = BlobOutputStore(tmp_path / "agent", connection_string=connection, container=container)
    api = BlobOutputStore(tmp_path / "api", connection_string=connection, container=container)
    return agent, api


@pytest.mark.azurite
def test_the_control_plane_reads_only_what_was_published(
    stores: tuple[BlobOutputStore, BlobOutputStore],
) -> None:
    agent, api = stores
    agent.sink(1, 1, "stdout", attempt=1).write_bytes(b"hello\n")
    assert api.read(1, 1, "stdout", attempt=1) == b""
    assert api.info(1, 1, "stdout").size == 0
    agent.publish(1, 1, attempt=1)
    assert api.read(1, 1, "stdout") == b"hello\n"  # latest attempt found among the blobs
    assert api.read(1, 1, "stdout", attempt=1, offset=2, limit=2) == b"ll"
    assert api.info(1, 1, "stdout", attempt=1).size == 6
    blob = api.container.get_blob_client(blob_name(1, 1, "stdout", 1))
    assert blob.get_blob_properties().blob_type == "AppendBlob"


@pytest.mark.azurite
def test_publish_while_running_appends_only_the_new_tail(
    stores: tuple[BlobOutputStore, BlobOutputStore],
) -> None:
    agent, api = stores
    with agent.sink(2, 1, "stderr").open("wb") as f:
        f.write(b"first ")
        f.flush()
        agent.publish(2, 1)
        assert api.read(2, 1, "stderr") == b"first "
        f.write(b"second")
    agent.publish(2, 1)
    agent.publish(2, 1)  # nothing new: nothing appended
    assert api.read(2, 1, "stderr") == b"first second"


@pytest.mark.azurite
def test_a_large_stream_is_appended_in_blocks_of_at_most_4_mib(
    stores: tuple[BlobOutputStore, BlobOutputStore],
) -> None:
    agent, api = stores
    data = bytes(range(256)) * ((2 * APPEND_BLOCK_BYTES + 1000) // 256)
    agent.sink(3, 1, "stdout").write_bytes(data)
    agent.publish(3, 1)
    blob = api.container.get_blob_client(blob_name(3, 1, "stdout", 0))
    props = blob.get_blob_properties()
    assert props.size == len(data)
    assert props.append_blob_committed_block_count == 3
    assert (
        api.read(3, 1, "stdout", offset=APPEND_BLOCK_BYTES - 3, limit=6)
        == data[APPEND_BLOCK_BYTES - 3 : APPEND_BLOCK_BYTES + 3]
    )


@pytest.mark.azurite
def test_truncation_reaches_the_control_plane_whenever_it_is_marked(
    stores: tuple[BlobOutputStore, BlobOutputStore],
) -> None:
    agent, api = stores
    agent.sink(4, 1, "stdout").write_bytes(b"0123" + truncation_marker(4))
    agent.mark_truncated(4, 1, "stdout", attempt=0, cap=4)
    agent.publish(4, 1)
    assert api.info(4, 1, "stdout").truncated_at == 4
    agent.sink(4, 2, "stdout").write_bytes(b"0123" + truncation_marker(4))
    agent.publish(4, 2)
    assert not api.info(4, 2, "stdout").truncated
    agent.mark_truncated(4, 2, "stdout", attempt=0, cap=4)  # after publish: on the blob at once
    assert api.info(4, 2, "stdout").truncated_at == 4


def test_settings_and_wiring_choose_the_output(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HPC_HOME", str(tmp_path))
    assert Settings().output == "local"
    assert type(build_output(Settings())).__name__ == "LocalOutputStore"
    monkeypatch.setenv("HPC_OUTPUT", "blob")
    with pytest.raises(ValueError, match="HPC_BLOB_CONNECTION_STRING"):
        build_output(Settings())
    monkeypatch.setenv("HPC_BLOB_CONNECTION_STRING", "UseDevelopmentStorage=true")
    monkeypatch.setenv("HPC_BLOB_CONTAINER", "outputs")
    store = build_output(Settings())
    assert isinstance(store, BlobOutputStore)
    assert store.container.container_name == "outputs"
    assert store.local.root == tmp_path / "output"
    monkeypatch.delenv("HPC_BLOB_CONNECTION_STRING")
    monkeypatch.setenv("HPC_BLOB_ACCOUNT_URL", "https://acct.blob.core.windows.net")
    store = build_output(Settings())
    assert isinstance(store, BlobOutputStore)
    assert store.service.account_name == "acct"
