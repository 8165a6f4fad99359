"""Owed output's rounds (agent/owedoutput.py) never hold back a new end's publish.

A probe kept Blob down 14 minutes with a sweep running: each owed attempt was tried every
30 s on the same 4 workers as new ends' first publishes, each try taking 20 s, so a new end
waited ever longer for its first try (20 s, then 74 s): its task stayed Running, holding its
cores. Owed output now goes in rounds on a worker of its own, one round at a time, and a
round stops at its first failure (the store is still not answering)."""

from __future__ import annotations

import threading
from pathlib import Path

from agent.owedoutput import OwedOutput
from agent.publisher import Publisher
from shared.adapters.blob_output import BlobOutputStore
from shared.adapters.local_output import LocalOutputStore
from tests.emulators import azurite_connection_string
from tests.helpers import wait_until


def test_a_new_ends_publish_does_not_wait_behind_a_round_of_owed_output():
    publisher = Publisher(inline=False, workers=1)
    release = threading.Event()
    try:
        assert publisher.behind(release.wait)  # a round that hangs (Blob not answering)
        assert not publisher.behind(lambda: None)  # never two rounds at once
        published = threading.Event()
        publisher.publish("1.1.0", published.set, lambda: None)
        assert published.wait(5)  # its own worker: not behind the round
        wait_until(lambda: publisher.settle() == 0, what="the end settled")
    finally:
        release.set()
        publisher.close()


class Counted(BlobOutputStore):
    """A real Blob store on a port nothing listens on (connections refused), counting its
    publishes."""

    def __init__(self, scratch: Path) -> None:
        from azure.storage.blob import BlobServiceClient

        dead = azurite_connection_string("http://127.0.0.1:9/devstoreaccount1")
        client = BlobServiceClient.from_connection_string(dead, retry_total=0)
        super().__init__(scratch, client=client)
        self.tries: list[tuple[int, int, int]] = []

    def publish(self, job_id: int, task_id: int, *, attempt: int = 0, final: bool = False) -> None:
        self.tries.append((job_id, task_id, attempt))
        super().publish(job_id, task_id, attempt=attempt, final=final)


def test_a_round_stops_at_its_first_failure_and_skips_what_is_busy(tmp_path):
    output = Counted(tmp_path / "scratch")
    for key in ("3.1.0", "3.2.0", "3.3.0"):
        LocalOutputStore(tmp_path / "scratch").sink(*map(int, key.split(".")[:2]), "stdout",
                                                    attempt=0).write_text(key)  # fmt: skip
    publisher = Publisher(inline=False)
    owed = OwedOutput(tmp_path / "state", output, publisher)
    for key in ("3.1.0", "3.2.0", "3.3.0", "3.4.0"):
        owed.started(key)
    try:
        owed.retry(busy=lambda: {"3.4.0"})  # 3.4.0 runs still
        wait_until(lambda: output.tries, what="a try")
        wait_until(lambda: publisher.behind(lambda: None), what="the round over")
        assert output.tries == [(3, 1, 0)]  # one try: the store does not answer
        assert owed.owed() == ["3.1.0", "3.2.0", "3.3.0", "3.4.0"]  # all still owed
    finally:
        publisher.close()


def test_an_agent_that_stops_reports_ends_whose_output_is_still_being_published():
    """A review: a stop during a Blob outage waited 60 s for the publishes, then said the
    node stops with the ends not sent: their attempts, lost with the incarnation, ran again
    elsewhere though they had run to their end. The ends now go; the output is owed."""
    publisher = Publisher(inline=False)
    release = threading.Event()
    reported: list[str] = []
    try:
        publisher.publish("4.1.0", release.wait, lambda: reported.append("4.1.0"))
        assert publisher.settle(wait_s=0.1) == 1 and reported == []  # a plain settle waits
        assert publisher.settle(wait_s=0.1, anyway=True) == 0
        assert reported == ["4.1.0"] and publisher.in_flight() == []
    finally:
        release.set()
        publisher.close()


def test_an_end_is_reported_once_its_upload_ran_its_time_whatever_the_store_does():
    """A store that takes connections and never answers holds each try for the SDK's read
    timeouts (minutes): the end goes after REPORT_AFTER_S anyway, its output owed."""
    publisher = Publisher(inline=False, report_after_s=0.2)
    release = threading.Event()
    reported: list[str] = []
    try:
        publisher.publish("5.1.0", release.wait, lambda: reported.append("5.1.0"))
        assert publisher.settle() == 1 and reported == []  # its upload has its time
        wait_until(lambda: publisher.settle() == 0, what="the end reported anyway")
        assert reported == ["5.1.0"]
    finally:
        release.set()
        publisher.close()
