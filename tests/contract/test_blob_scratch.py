"""With Blob output the agent's local files are scratch: an ended attempt's final publish
removes them (and its job's folder once empty), never before its upload succeeded.

Found by a live probe: after a 5,000-task sweep on Blob output, ``HPC_HOME/output/6`` held
10,004 files that nothing would ever remove (up to twice the cap per attempt, on nodes whose
disk nothing else frees). On Azurite, started for the session by ``azurite_blob_endpoint``.
"""

# ruff: noqa: F811 - the stores fixture is imported from tests/contract/test_blob_output.py

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from shared.adapters.blob_output import BlobOutputStore, blob_name
from shared.domain.messages import RunTask
from tests.contract.test_blob_output import stores  # noqa: F401 - a fixture
from tests.test_output_runner import run, runner

pytestmark = pytest.mark.azurite


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_a_final_publish_removes_the_attempts_files_then_its_empty_job_folder(
    stores: tuple[BlobOutputStore, BlobOutputStore],
) -> None:
    agent, api = stores
    root = agent.local.root
    agent.sink(6, 1, "stdout", attempt=2).write_bytes(b"0123" + b"\n[cut]\n")
    agent.sink(6, 1, "stderr", attempt=2).write_bytes(b"oops\n")
    agent.mark_truncated(6, 1, "stdout", attempt=2, cap=4)
    agent.sink(6, 2, "stdout").write_bytes(b"still running")
    agent.publish(6, 1, attempt=2)  # while it runs: the files stay
    assert len(_files(root)) == 5
    agent.publish(6, 1, attempt=2, final=True)
    assert _files(root) == ["6", "6/2.0.stdout"]  # another task's file keeps the folder
    assert api.read(6, 1, "stdout") == b"0123\n[cut]\n"
    assert api.info(6, 1, "stdout", attempt=2).truncated_at == 4
    assert agent.read(6, 1, "stderr", attempt=2) == b"oops\n"  # the agent's host reads the blob
    agent.publish(6, 2, final=True)
    assert _files(root) == []
    assert root.is_dir()  # the store's own folder stays
    assert api.read(6, 2, "stdout") == b"still running"


def test_a_failed_upload_keeps_the_files_for_the_next_publish(
    stores: tuple[BlobOutputStore, BlobOutputStore],
) -> None:
    agent, api = stores
    agent.sink(7, 1, "stdout").write_bytes(b"out")
    agent.sink(7, 1, "stderr").write_bytes(b"err")
    # A block blob where stderr's append blob goes: appending to it is refused (409)
    # after stdout was uploaded.
    agent._ensure_container()
    api.container.upload_blob(blob_name(7, 1, "stderr", 0), b"")
    with pytest.raises(HttpResponseError):
        agent.publish(7, 1, final=True)
    assert _files(agent.local.root) == ["7", "7/1.0.stderr", "7/1.0.stdout"]
    api.container.delete_blob(blob_name(7, 1, "stderr", 0))
    agent.publish(7, 1, final=True)
    assert _files(agent.local.root) == []
    assert (api.read(7, 1, "stdout"), api.read(7, 1, "stderr")) == (b"out", b"err")


def test_a_file_written_to_after_its_upload_is_kept(
    stores: tuple[BlobOutputStore, BlobOutputStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, _ = stores
    path = agent.sink(8, 1, "stdout")
    path.write_bytes(b"first")
    append = agent._append

    def append_then_write(*args: Any) -> int:
        uploaded = append(*args)
        with path.open("ab") as f:  # a leftover process writing on
            f.write(b" late")
        return uploaded

    monkeypatch.setattr(agent, "_append", append_then_write)
    agent.publish(8, 1, final=True)
    assert path.read_bytes() == b"first late"


def test_sink_creates_its_folder_again_when_a_final_publish_just_removed_it(
    stores: tuple[BlobOutputStore, BlobOutputStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, _ = stores
    sink = agent.local.sink
    removed: list[Path] = []

    def sink_then_removed(*args: Any, **kw: Any) -> Path:
        path = sink(*args, **kw)
        if not removed:  # the publisher's thread empties the folder right after the mkdir
            path.parent.rmdir()
            removed.append(path.parent)
        return path

    monkeypatch.setattr(agent.local, "sink", sink_then_removed)
    path = agent.sink(9, 1, "stdout")
    assert removed == [path.parent]
    assert path.is_file() and path.stat().st_size == 0


def test_the_agent_leaves_no_scratch_once_an_ended_task_is_published(
    stores: tuple[BlobOutputStore, BlobOutputStore], tmp_path: Path
) -> None:
    agent, api = stores
    task = RunTask(
        job_id=5, task_id=1, attempt=0, incarnation=1, command="echo hello; echo oops >&2"
    )
    assert run(runner(task, agent))[1] == "hello\n"  # (run asserts the start had no error)
    assert _files(agent.local.root) == []  # the tail was read before the files went
    assert (api.read(5, 1, "stdout"), api.read(5, 1, "stderr")) == (b"hello\n", b"oops\n")
    missing = str(tmp_path / "missing")
    task = RunTask(job_id=5, task_id=2, attempt=0, incarnation=1, command="true", work_dir=missing)
    error = runner(task, agent).start()
    assert error is not None and "does not exist" in error
    assert _files(agent.local.root) == []  # its reason was published, then removed
    assert api.read(5, 2, "stderr") == (error + "\n").encode()


def test_the_agents_host_reads_a_running_attempts_output_beside_another_jobs_blob(
    stores: tuple[BlobOutputStore, BlobOutputStore],
) -> None:
    """A probe: while a new job 1 ran beside the old job 1's kept blob, its output read as
    nothing (the blob was not its own); the local file is read instead, as with no blob."""
    agent, _api = stores
    old, new = "1@2026-01-01T00:00:00+00:00", "1@2026-02-02T00:00:00+00:00"
    agent.sink(1, 1, "stdout", stamp=old).write_bytes(b"the old job's\n")
    agent.publish(1, 1, final=True)
    agent.sink(1, 1, "stdout", stamp=new).write_bytes(b"live\n")  # running: not published
    assert agent.read(1, 1, "stdout", attempt=0, stamp=new) == b"live\n"
    assert agent.info(1, 1, "stdout", attempt=0, stamp=new).size == 5
