"""The API cases of the bad-input probe's findings that run through the function app: hold's
until, a holdUntil in the past at submit, a node group name that is not text."""

from __future__ import annotations

import pytest

from tests.helpers import error, new_job, submit
from tests.test_input_messages import http  # noqa: F401 - fixture (the function app, one node)


def test_hold_until_beyond_9999_is_out_of_range_not_unreadable(http):
    job_id = new_job(http)
    r = http.post(f"/api/jobs/{job_id}/hold", json={"until": "10000-01-01T00:00:00Z"})
    assert r.status_code == 422, r.text
    assert "is out of range" in error(r) and "not an ISO 8601" not in error(r)
    assert http.get(f"/api/jobs/{job_id}").json()["holdUntil"] is None


def test_a_hold_until_in_the_past_at_submit_is_refused_and_takes_no_id(http):
    first = new_job(http)
    r = submit(http, holdUntil="2000-01-01T00:00:00Z")
    assert r.status_code == 422, r.text
    assert "holdUntil 2000-01-01 00:00:00 UTC is in the past" in error(r)
    assert new_job(http) == first + 1


@pytest.mark.parametrize(("value", "shown"), [(5, "5"), (None, "null")])
def test_a_node_group_name_that_is_not_text_says_so(http, value, shown):
    r = http.post("/api/nodegroups", json={"name": value})
    assert r.status_code == 422, r.text
    assert error(r).startswith('"name" must be a string') and error(r).endswith(f"got {shown}")
    r = http.post("/api/nodegroups", json={"maxNodes": 1})
    assert r.status_code == 422 and error(r).startswith('the body needs "name"')
