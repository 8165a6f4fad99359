"""The Output port's contract, run on every adapter (today: the local folder).

Tests named ``..._local_...`` pin what only the local folder promises (paths,
reading while the task still writes); the rest holds for any adapter.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.adapters.local_output import LocalOutputStore
from shared.ports.output import OutputStore

OUTPUT_BACKENDS = {"local": lambda root: LocalOutputStore(root / "output")}


@pytest.fixture(params=sorted(OUTPUT_BACKENDS))
def output(request: pytest.FixtureRequest, tmp_path: Path) -> OutputStore:
    return OUTPUT_BACKENDS[request.param](tmp_path)


def test_local_sink_is_a_file_per_task_and_stream_in_a_created_folder(
    output: OutputStore, tmp_path: Path
) -> None:
    stdout = output.sink(7, 3, "stdout")
    stderr = output.sink(7, 3, "stderr")
    assert stdout == tmp_path / "output" / "7" / "3.stdout"
    assert stderr == tmp_path / "output" / "7" / "3.stderr"
    assert stdout.parent.is_dir()
    assert not stdout.exists()


def test_what_the_agent_writes_is_read_back_after_publish(output: OutputStore) -> None:
    output.sink(1, 1, "stdout").write_bytes(b"hello\n")
    output.sink(1, 1, "stderr").write_bytes(b"oops\n")
    output.publish(1, 1)
    assert output.read(1, 1, "stdout") == b"hello\n"
    assert output.read(1, 1, "stderr") == b"oops\n"


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
