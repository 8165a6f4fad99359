"""``GET /api/jobs/{id}/tasks/{taskId}/output`` of the real function_app.py, served by the
local host in this process: attempts, byte ranges, sizes, truncation and refusals.

No agent runs: the node is put in the store Offline (so nothing is dispatched), the
test writes each attempt's streams through the Output port as an agent would, and
sets the task's attempts in the store as the control plane would after retries.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.domain.cluster import Node
from shared.domain.models import Task
from shared.domain.states import TaskState
from shared.ports.output import truncation_marker
from shared.usecases.control_plane import ControlPlane
from shared.usecases.queries import never_placed
from tests.app_fixtures import served_app

MiB = 1 << 20


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, ControlPlane]]:
    with served_app(tmp_path_factory.mktemp("output-api")) as app:
        app.cp.store.put_node(Node(name="n1", groups=["OnPremNodes"], cores=4))
        with app.client(timeout=30) as client:
            yield client, app.cp


def retried_task(
    api: tuple[httpx.Client, ControlPlane], attempt: int, result_attempt: int | None
) -> int:
    """A new job whose task 1 is at ``attempt`` with ``result_attempt``; its job id."""
    client, cp = api
    r = client.post("/api/jobs", json={"command": "true"})
    assert r.status_code == 201, r.text
    job_id = int(r.json()["id"])
    task = cp.store.get_task(job_id, 1)
    task.attempt, task.result_attempt = attempt, result_attempt
    task.node = "n1"  # its current attempt was placed (one never placed has no output: 404)
    cp.store.commit(tasks=[task])
    return job_id


def write(cp: ControlPlane, job_id: int, attempt: int, data: bytes, stream: Any = "stdout") -> None:
    cp.deps.output.sink(job_id, 1, stream, attempt=attempt).write_bytes(data)
    cp.deps.output.publish(job_id, 1, attempt=attempt)


def get(client: httpx.Client, job_id: int, **params: Any) -> httpx.Response:
    return client.get(f"/api/jobs/{job_id}/tasks/1/output", params=params)


def test_a_retried_task_shows_its_result_attempt_by_default_and_any_attempt_on_request(api):
    client, cp = api
    job_id = retried_task(api, attempt=2, result_attempt=1)
    for attempt in range(3):
        write(cp, job_id, attempt, f"attempt {attempt}\n".encode())
    write(cp, job_id, 1, b"errors of 1\n", "stderr")

    r = get(client, job_id)
    assert r.status_code == 200 and r.text == "attempt 1\n"
    assert r.headers["X-Attempt"] == "1" and r.headers["X-Output-Size"] == "10"
    assert r.headers["X-Output-Truncated"] == "false"
    assert r.headers["content-type"].startswith("text/plain")
    for attempt in range(3):
        r = get(client, job_id, attempt=attempt)
        assert (r.text, r.headers["X-Attempt"]) == (f"attempt {attempt}\n", str(attempt))
    r = get(client, job_id, stream="stderr")
    assert (r.text, r.headers["X-Attempt"]) == ("errors of 1\n", "1")


def test_without_a_result_attempt_the_current_attempt_is_shown(api):
    client, cp = api
    job_id = retried_task(api, attempt=1, result_attempt=None)
    write(cp, job_id, 0, b"lost with its node\n")
    write(cp, job_id, 1, b"running again\n")
    r = get(client, job_id)
    assert (r.text, r.headers["X-Attempt"]) == ("running again\n", "1")


def test_byte_ranges_page_an_output_over_1_mib_whole(api):
    client, cp = api
    job_id = retried_task(api, attempt=0, result_attempt=0)
    data = b"".join(b"line %07d\n" % i for i in range(300_000))  # 3.6 MB
    write(cp, job_id, 0, data)

    r = get(client, job_id)  # the default page is 1 MiB, and the size tells there is more
    assert r.status_code == 200 and r.content == data[:MiB]
    assert r.headers["X-Output-Size"] == str(len(data))

    pages, offset = [], 0
    while offset < len(data):
        r = get(client, job_id, offset=offset, limit=MiB)
        assert r.status_code == 200 and r.headers["X-Output-Size"] == str(len(data))
        pages.append(r.content)
        offset += len(r.content)
    assert b"".join(pages) == data and len(pages) == 4

    r = get(client, job_id, offset=len(data) - 26, limit=12)  # lines are 13 bytes
    assert r.content == b"line 0299998"
    r = get(client, job_id, limit=16 * MiB)
    assert r.content == data
    r = get(client, job_id, offset=len(data) + 5)
    assert r.status_code == 200 and r.content == b""
    assert r.headers["X-Output-Size"] == str(len(data))
    r = get(client, job_id, limit=0)  # only the headers: how big, which attempt
    assert r.content == b"" and r.headers["X-Output-Size"] == str(len(data))


def test_a_truncated_output_says_so_in_a_header_and_in_its_last_line(api):
    client, cp = api
    job_id = retried_task(api, attempt=0, result_attempt=0)
    write(cp, job_id, 0, b"x" * 100 + truncation_marker(100))
    cp.deps.output.mark_truncated(job_id, 1, "stdout", attempt=0, cap=100)
    r = get(client, job_id)
    assert r.headers["X-Output-Truncated"] == "true"
    assert r.text.endswith("[hybridhpc: output truncated at 100 bytes (HPC_MAX_OUTPUT_BYTES)]\n")
    assert get(client, job_id, stream="stderr").headers["X-Output-Truncated"] == "false"


def test_a_bad_byte_range_is_400_with_what_to_fix(api):
    client, _ = api
    job_id = retried_task(api, attempt=0, result_attempt=0)
    for params, fragment in [
        ({"limit": str(16 * MiB + 1)}, "limit must be at most 16777216 (16 MiB)"),
        ({"limit": "-5"}, "limit must be at least 0"),
        ({"limit": "1.5"}, "limit must be a whole number"),
        ({"offset": "-1"}, "offset must be at least 0"),
        ({"offset": "ten"}, "offset must be a whole number"),
    ]:
        r = get(client, job_id, **params)
        assert r.status_code == 400 and fragment in r.json()["error"], (params, r.text)


@pytest.mark.parametrize(
    ("attempt", "fragment"),
    [("-1", "attempt must be at least 0"), ("last", "attempt must be a whole number")],
)
def test_a_bad_attempt_is_400_with_what_to_fix(api, attempt, fragment):
    client, _ = api
    job_id = retried_task(api, attempt=1, result_attempt=1)
    r = get(client, job_id, attempt=attempt)
    assert r.status_code == 400 and fragment in r.json()["error"], r.text


def test_an_attempt_the_task_never_had_is_404(api):
    client, _ = api
    job_id = retried_task(api, attempt=2, result_attempt=None)
    r = get(client, job_id, attempt=3)
    assert r.status_code == 404
    assert r.json()["error"] == f"task {job_id}.1 has no attempt 3: it had attempts 0 to 2"
    fresh = retried_task(api, attempt=0, result_attempt=None)
    r = get(client, fresh, attempt=1)
    assert r.status_code == 404 and "it had only attempt 0" in r.json()["error"]
    assert get(client, job_id, attempt=2).status_code == 200


def test_an_attempt_that_never_reached_a_node_is_404_not_an_empty_output(api):
    """Found live: a Queued task that never ran answered 200, X-Attempt 0, size 0."""
    client, cp = api
    job_id = int(client.post("/api/jobs", json={"command": "true"}).json()["id"])
    for params in ({}, {"attempt": 0}, {"stream": "stderr"}):
        r = get(client, job_id, **params)
        assert r.status_code == 404, r.text
        assert r.json()["error"] == f"task {job_id}.1 has not run yet: no output"
    requeued = retried_task(api, attempt=1, result_attempt=None)
    task = cp.store.get_task(requeued, 1)
    task.node = None  # attempt 0 ran; attempt 1 waits in the queue
    cp.store.commit(tasks=[task])
    r = get(client, requeued)
    assert r.status_code == 404
    assert r.json()["error"] == (
        f"task {requeued}.1 has not run yet: no output (its earlier attempts: --attempt 0)"
    )
    assert get(client, requeued, attempt=0).status_code == 200
    sweep = client.post("/api/jobs", json={"tasks": [{"command": "x", "sweep": "1-9"}]})
    r = get_task(client, int(sweep.json()["id"]), 5, attempt=0)  # not created yet
    assert (r.status_code, r.json()["error"]) == (
        404,
        f"task {sweep.json()['id']}.5 has not run yet: no output",
    )


def get_task(client: httpx.Client, job_id: int, task_id: int, **params: Any) -> httpx.Response:
    return client.get(f"/api/jobs/{job_id}/tasks/{task_id}/output", params=params)


@pytest.mark.parametrize(
    ("task", "attempt", "expected"),
    [
        (Task(job_id=1, id=2, command="x"), 0, "task 1.2 has not run yet: no output"),
        (Task(job_id=1, id=2, command="x", node="n1"), 0, None),
        (Task(job_id=1, id=2, command="x", attempt=3), 1, None),  # an earlier attempt
        (Task(job_id=1, id=2, command="x", attempt=3), 3,
         "task 1.2 has not run yet: no output (its earlier attempts: --attempt 0 to 2)"),
        (Task(job_id=1, id=2, command="x", state=TaskState.CANCELED), 0,
         "task 1.2 never ran (it is Canceled): no output"),
        (Task(job_id=1, id=2, command="x", state=TaskState.FAILED, result_attempt=0), 0, None),
    ],
)  # fmt: skip
def test_never_placed(task, attempt, expected):
    assert never_placed(task, attempt) == expected
