"""The Output port's contract, run on every adapter: the local folder and Blob storage
(on Azurite, started for the session by the ``azurite_blob_endpoint`` fixture).

Tests named ``..._local_...`` pin what only the local folder promises (paths,
reading while the task still writes, the old layout); they are skipped for Blob.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from shared.adapters.local_output import LocalOutputStore
from shared.ports.output import (
    DEFAULT_READ_BYTES,
    OutputInfo,
    OutputStore,
    job_stamp,
    truncation_marker,
)


def _blob_store(request: pytest.FixtureRequest, root: Path) -> OutputStore:
    from shared.adapters.blob_output import BlobOutputStore
    from tests.emulators import azurite_connection_string

    if "_local_" in request.node.name:
        pytest.skip("a promise of the local folder only (paths, old layout)")
    endpoint = request.getfixturevalue("azurite_blob_endpoint")
    return BlobOutputStore(
        root / "output",
        connection_string=azurite_connection_string(endpoint),
        container=f"t{uuid.uuid4().hex[:20]}",  # fresh and empty per test
    )


OUTPUT_BACKENDS = {
    "local": lambda request, root: LocalOutputStore(root / "output"),
    "blob": _blob_store,
}


@pytest.fixture(
    params=[
        "local",
        pytest.param("blob", marks=pytest.mark.azurite),
    ]
)
def output(request: pytest.FixtureRequest, tmp_path: Path) -> OutputStore:
    return OUTPUT_BACKENDS[request.param](request, tmp_path)


def test_local_sink_is_a_file_per_task_attempt_and_stream_in_a_created_folder(
    output: OutputStore, tmp_path: Path
) -> None:
    stdout = output.sink(7, 3, "stdout")
    stderr = output.sink(7, 3, "stderr", attempt=2)
    assert stdout == tmp_path / "output" / "7" / "3.0.stdout"
    assert stderr == tmp_path / "output" / "7" / "3.2.stderr"
    assert stdout.parent.is_dir()
    assert not stdout.exists()


def test_local_output_of_before_attempts_were_kept_apart_reads_as_attempt_0(
    output: OutputStore, tmp_path: Path
) -> None:
    (tmp_path / "output" / "7").mkdir(parents=True)
    (tmp_path / "output" / "7" / "3.stdout").write_bytes(b"old layout")
    assert output.read(7, 3, "stdout", attempt=0) == b"old layout"
    assert output.read(7, 3, "stdout") == b"old layout"
    assert output.info(7, 3, "stdout", attempt=0).size == 10
    assert output.read(7, 3, "stdout", attempt=1) == b""


def test_what_the_agent_writes_is_read_back_after_publish(output: OutputStore) -> None:
    output.sink(1, 1, "stdout").write_bytes(b"hello\n")
    output.sink(1, 1, "stderr").write_bytes(b"oops\n")
    output.publish(1, 1)
    assert output.read(1, 1, "stdout") == b"hello\n"
    assert output.read(1, 1, "stderr") == b"oops\n"


def test_local_a_final_publish_keeps_the_files_they_are_the_store(
    output: OutputStore, tmp_path: Path
) -> None:
    output.sink(1, 1, "stdout").write_bytes(b"kept")
    output.mark_truncated(1, 1, "stdout", attempt=0, cap=4)
    output.publish(1, 1, final=True)
    assert sorted(p.name for p in (tmp_path / "output" / "1").iterdir()) == [
        "1.0.stdout",
        "1.0.stdout.truncated",
    ]
    assert output.read(1, 1, "stdout") == b"kept"


def test_local_output_is_readable_while_the_task_runs(output: OutputStore) -> None:
    with output.sink(1, 1, "stdout").open("wb") as f:
        f.write(b"partial")
        f.flush()
        assert output.read(1, 1, "stdout") == b"partial"


def test_read_honours_offset_and_limit(output: OutputStore) -> None:
    output.sink(1, 2, "stdout").write_bytes(b"0123456789")
    assert output.read(1, 2, "stdout", offset=3, limit=4) == b"3456"
    assert output.read(1, 2, "stdout", offset=8) == b"89"
    assert output.read(1, 2, "stdout", offset=10) == b""
    assert output.read(1, 2, "stdout", offset=50, limit=5) == b""
    assert output.read(1, 2, "stdout", limit=0) == b""


def test_read_of_nothing_written_is_empty(output: OutputStore) -> None:
    assert output.read(9, 9, "stdout") == b""
    output.sink(9, 9, "stdout")
    assert output.read(9, 9, "stderr") == b""


def test_publish_without_output_is_harmless(output: OutputStore) -> None:
    output.publish(5, 5)
    assert output.read(5, 5, "stdout") == b""


def test_streams_of_different_tasks_are_kept_apart(output: OutputStore) -> None:
    output.sink(1, 1, "stdout").write_bytes(b"one")
    output.sink(1, 2, "stdout").write_bytes(b"two")
    output.sink(2, 1, "stdout").write_bytes(b"other job")
    assert output.read(1, 1, "stdout") == b"one"
    assert output.read(1, 2, "stdout") == b"two"
    assert output.read(2, 1, "stdout") == b"other job"


def test_unknown_stream_or_negative_offset_is_refused(output: OutputStore) -> None:
    with pytest.raises(ValueError):
        output.sink(1, 1, "stdin")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        output.read(1, 1, "stdout", offset=-1)
    with pytest.raises(ValueError):
        output.read(1, 1, "stdout", limit=-1)
    with pytest.raises(ValueError):
        output.sink(1, 1, "stdout", attempt=-1)
    with pytest.raises(ValueError):
        output.read(1, 1, "stdout", attempt=-1)


# --- attempts, sizes, truncation, paging ---------------------------------------------


def test_each_attempt_keeps_its_own_streams(output: OutputStore) -> None:
    output.sink(1, 1, "stdout", attempt=0).write_bytes(b"first try\n")
    output.sink(1, 1, "stderr", attempt=0).write_bytes(b"node lost\n")
    output.publish(1, 1, attempt=0)
    output.sink(1, 1, "stdout", attempt=1).write_bytes(b"second try\n")
    output.publish(1, 1, attempt=1)
    assert output.read(1, 1, "stdout", attempt=0) == b"first try\n"
    assert output.read(1, 1, "stderr", attempt=0) == b"node lost\n"
    assert output.read(1, 1, "stdout", attempt=1) == b"second try\n"
    assert output.read(1, 1, "stderr", attempt=1) == b""
    assert output.read(1, 1, "stdout", attempt=2) == b""


def test_without_an_attempt_reads_the_latest_one_written(output: OutputStore) -> None:
    assert output.read(1, 1, "stdout") == b""
    output.sink(1, 1, "stdout", attempt=0).write_bytes(b"zero")
    assert output.read(1, 1, "stdout") == b"zero"
    output.sink(1, 1, "stdout", attempt=3).write_bytes(b"three")
    output.sink(1, 11, "stdout", attempt=5).write_bytes(b"another task")
    assert output.read(1, 1, "stdout") == b"three"
    assert output.info(1, 1, "stdout").size == 5


def test_info_tells_the_size_of_each_attempts_stream(output: OutputStore) -> None:
    # not written yet: not stored, which "size 0" alone did not tell from an empty stream
    assert output.info(4, 1, "stdout", attempt=0) == OutputInfo(size=0, stored=False)
    output.sink(4, 1, "stdout", attempt=0).write_bytes(b"x" * 10)
    output.sink(4, 1, "stdout", attempt=1).write_bytes(b"x" * 3)
    output.publish(4, 1, attempt=1)
    assert output.info(4, 1, "stdout", attempt=0) == OutputInfo(size=10)
    assert output.info(4, 1, "stdout", attempt=1) == OutputInfo(size=3)
    assert output.info(4, 1, "stderr", attempt=1) == OutputInfo(size=0, stored=False)
    output.sink(4, 1, "stderr", attempt=1).write_bytes(b"")  # the task printed nothing
    output.publish(4, 1, attempt=1)
    assert output.info(4, 1, "stderr", attempt=1) == OutputInfo(size=0, stored=True)
    assert not output.info(4, 1, "stdout", attempt=1).truncated


def test_a_truncation_is_recorded_per_attempt_and_stream_with_its_cap(
    output: OutputStore,
) -> None:
    cap = 8
    data = b"01234567" + truncation_marker(cap)
    output.sink(2, 1, "stdout", attempt=1).write_bytes(data)
    output.sink(2, 1, "stdout", attempt=0).write_bytes(b"short")
    output.mark_truncated(2, 1, "stdout", attempt=1, cap=cap)
    output.publish(2, 1, attempt=1)
    info = output.info(2, 1, "stdout", attempt=1)
    assert info.truncated and info.truncated_at == cap and info.size == len(data)
    assert not output.info(2, 1, "stdout", attempt=0).truncated
    assert not output.info(2, 1, "stderr", attempt=1).truncated
    assert output.read(2, 1, "stdout", attempt=1).endswith(
        b"[hybridhpc: output truncated at 8 bytes (HPC_MAX_OUTPUT_BYTES)]\n"
    )


def test_an_output_over_1_mib_is_read_whole_in_byte_ranges(output: OutputStore) -> None:
    data = bytes(range(256)) * (5 * 4096 + 7)  # 5 MiB and a bit, every byte value
    output.sink(3, 1, "stdout", attempt=2).write_bytes(data)
    output.publish(3, 1, attempt=2)
    assert output.info(3, 1, "stdout", attempt=2).size == len(data)
    assert len(output.read(3, 1, "stdout", attempt=2)) == DEFAULT_READ_BYTES
    pages, offset = [], 0
    while chunk := output.read(3, 1, "stdout", attempt=2, offset=offset, limit=1_000_000):
        pages.append(chunk)
        offset += len(chunk)
    assert b"".join(pages) == data
    assert len(pages) == 6
    tail = output.read(3, 1, "stdout", attempt=2, offset=len(data) - 100, limit=1000)
    assert tail == data[-100:]


def test_a_stream_stamped_for_another_job_reads_as_empty_and_a_new_attempt_replaces_it(
    output: OutputStore,
) -> None:
    """A store that starts empty beside kept output numbers its jobs from 1 again; the old
    job 1's streams (stamped with its submit time) are not the new job 1's: they read as
    empty, and the new attempt's replace them whole (Blob appended to the old blob before)."""
    old, new = job_stamp(1, "2026-01-01T00:00:00+00:00"), job_stamp(1, "2026-02-02T00:00:00+00:00")
    output.sink(1, 1, "stdout", stamp=old).write_bytes(b"the old job's secret, long\n")
    output.publish(1, 1, final=True)
    assert output.read(1, 1, "stdout", attempt=0, stamp=old) == b"the old job's secret, long\n"
    assert output.read(1, 1, "stdout", attempt=0, stamp=new) == b""
    assert output.info(1, 1, "stdout", attempt=0, stamp=new) == OutputInfo(size=0, stored=False)
    output.sink(1, 1, "stdout", stamp=new).write_bytes(b"new\n")  # the runner truncates
    output.mark_truncated(1, 1, "stdout", attempt=0, cap=3)
    output.publish(1, 1, final=True)
    assert output.read(1, 1, "stdout", attempt=0, stamp=new) == b"new\n"
    assert output.info(1, 1, "stdout", attempt=0, stamp=new) == OutputInfo(size=4, truncated_at=3)
    assert output.read(1, 1, "stdout", attempt=0, stamp=old) == b""


def test_an_unstamped_stream_is_the_jobs_only_if_written_after_its_submit(
    output: OutputStore,
) -> None:
    """Written by an agent from before stamps: it is this job's only if written after the job
    was submitted; an old job of the same id wrote before (a probe saw it served while the
    new job ran, and kept under the new job's stamp, the new job's first bytes lost)."""
    output.sink(2, 1, "stdout").write_bytes(b"legacy\n")
    output.publish(2, 1, final=True)
    before = job_stamp(2, "2020-01-01T00:00:00+00:00")
    after = job_stamp(2, "2099-01-01T00:00:00+00:00")
    assert output.read(2, 1, "stdout", attempt=0, stamp=before) == b"legacy\n"
    assert output.read(2, 1, "stdout", attempt=0, stamp=after) == b""
    assert output.info(2, 1, "stdout", attempt=0, stamp=after).size == 0
    # The later job's attempt replaces it whole, never appends to it.
    output.sink(2, 1, "stdout", stamp=after).write_bytes(b"new\n")
    output.publish(2, 1, final=True)
    assert output.read(2, 1, "stdout", attempt=0, stamp=after) == b"new\n"


def test_a_new_jobs_attempt_drops_the_old_jobs_truncation(output: OutputStore) -> None:
    """A probe: the old job's cut marker made the new job's small output say truncated."""
    old, new = job_stamp(3, "2026-01-01T00:00:00+00:00"), job_stamp(3, "2026-02-02T00:00:00+00:00")
    output.sink(3, 1, "stdout", stamp=old).write_bytes(b"x" * 10)
    output.mark_truncated(3, 1, "stdout", attempt=0, cap=10)
    output.publish(3, 1, final=True)
    output.sink(3, 1, "stdout", stamp=new).write_bytes(b"small\n")
    output.sink(3, 1, "stderr", stamp=new)
    output.publish(3, 1, final=True)
    assert output.info(3, 1, "stdout", attempt=0, stamp=new) == OutputInfo(size=6)
