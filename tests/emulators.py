"""Fixtures that start the local stand-ins of Azure services, through scripts/emulators.sh.

- ``cosmos_endpoint`` (session): ``@vercel/cosmosdb-server`` on a free port, plain HTTP.
- ``azurite_blob_endpoint`` (session): Azurite's Blob service on a free port, in a temp folder.

Each installs the npm packages into ``.emulators/`` the first time (the script does it
once), starts its server as a child process, waits for its "listening" line, and stops it
at the end of the session. Without Node.js the tests that use them are skipped, saying so;
any other failure to start them is an error, never a skip.

Tests that use them carry the markers ``cosmos`` / ``azurite``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "emulators.sh"
COSMOS_KEY = (
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
)
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
START_TIMEOUT_S = 300.0  # the first run installs from npm

_cosmos: dict[str, str] = {}
"""The running stand-in's endpoint (inherited by forked test processes)."""


def _require_node() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js (node and npm) is missing: the Azure stand-ins run on Node.js")


def _start(args: list[str], ready: re.Pattern[str]) -> tuple[subprocess.Popen[str], str]:
    """Start ``scripts/emulators.sh run ...``; return it and the first match of ``ready``."""
    subprocess.run(["bash", str(SCRIPT), "install"], check=True, timeout=START_TIMEOUT_S)
    proc = subprocess.Popen(
        ["bash", str(SCRIPT), "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    found: list[str] = []
    done = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:  # keeps draining the pipe for the whole session
            if not found:
                seen.append(line)
                match = ready.search(line)
                if match:
                    found.append(match.group(1))
                    done.set()
        done.set()

    threading.Thread(target=read, daemon=True).start()
    if not done.wait(60) or not found:
        _stop(proc)
        raise RuntimeError(f"{' '.join(args)} did not start:\n{''.join(seen)}")
    return proc, found[0]


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


@pytest.fixture(scope="session")
def cosmos_endpoint() -> Iterator[str]:
    """The Cosmos stand-in's endpoint (``http://127.0.0.1:PORT``), running for the session."""
    _require_node()
    proc, address = _start(
        ["cosmos", "0"], re.compile(r"Ready to accept HTTP connections at (\S+)")
    )
    _cosmos["endpoint"] = f"http://{address}"
    yield _cosmos["endpoint"]
    _cosmos.clear()
    _stop(proc)


@pytest.fixture(scope="session")
def azurite_blob_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's Blob endpoint (``http://127.0.0.1:PORT/devstoreaccount1``), for the session."""
    _require_node()
    data = tmp_path_factory.mktemp("azurite")
    proc, url = _start(
        ["azurite", str(data), "0"], re.compile(r"Blob service successfully listens on (\S+)")
    )
    yield f"{url}/{AZURITE_ACCOUNT}"
    _stop(proc)


def azurite_connection_string(blob_endpoint: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
        f"AccountKey={AZURITE_KEY};BlobEndpoint={blob_endpoint};"
    )


def cosmos_database_name(storage: Path) -> str:
    """One database per test storage folder: fresh and empty, shared by its Store instances."""
    return "t" + hashlib.sha256(str(storage).encode()).hexdigest()[:24]


def open_cosmos_store(storage: Path):  # -> CosmosStore (imported lazily: azure-cosmos is optional)
    from shared.adapters.cosmos_store import CosmosStore

    if "endpoint" not in _cosmos:
        raise RuntimeError("the cosmos_endpoint fixture is not running")
    return CosmosStore(_cosmos["endpoint"], COSMOS_KEY, cosmos_database_name(storage))


def drop_cosmos_database(storage: Path) -> None:
    from azure.cosmos import CosmosClient

    with CosmosClient(
        _cosmos["endpoint"], credential=COSMOS_KEY, enable_endpoint_discovery=False
    ) as client:
        client.delete_database(cosmos_database_name(storage))
