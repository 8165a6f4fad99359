"""infra/: checkov scans the Bicep (its own parser, its Azure checks), and the declarations
Bicep reads (queues, Cosmos containers, app settings) agree with the code.

The Bicep CLI cannot be installed here (it downloads a binary of its own), so checkov's
Bicep parser (pycep) stands in for "it compiles": every file must parse, and every failed
check must be suppressed in the file with a ``//checkov:skip=CKV_...:reason`` comment that
gives a reason. checkov lives in its own venv (``make checkov``: it pins packages older than
this project's, see README.md); this test installs it there once if it is missing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from unittest.mock import MagicMock

import pytest

from shared.adapters import cosmos_docs
from shared.adapters.cosmos_store import CosmosStore
from shared.adapters.servicebus_busadmin import queue_options
from shared.domain.messages import CONNECTION_SETTING
from shared.ports.bus import DEFAULT_LOCK_DURATION_MS, DEFAULT_MAX_DELIVERY_COUNT
from shared.ports.busadmin import BusAdmin
from shared.settings import Settings
from shared.wiring import declare_queues

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
CHECKOV_VENV = ROOT / ".venv-checkov"
NO_REASON = "No comment provided"
"""What checkov reports as the reason of a skip comment that gives none."""

# A resource that fails checks, one skipped without a reason, and a file that does not
# parse: the scan must report all three, or it could not catch them in infra/ either.
CANARY_FAILS = """
resource bad 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'stcanary'
  location: 'westeurope'
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    //checkov:skip=CKV_AZURE_44
    supportsHttpsTrafficOnly: false
    allowBlobPublicAccess: true
  }
}
"""
CANARY_BROKEN = "resource broken 'Microsoft.Storage/storageAccounts@2023-05-01' = {{ name: \n"

PARSE_EACH = """
import json, sys
from pathlib import Path
from pycep import BicepParser  # what checkov.bicep.parser runs, without importing checkov
parser, out = BicepParser(add_line_numbers=True), {}
for name in sys.argv[1:]:
    try:
        template = parser.parse(text=Path(name).read_text())
    except Exception:
        out[name] = None
    else:
        out[name] = len(template.get("resources", {})) + len(template.get("modules", {}))
print(json.dumps(out))
"""


def checkov_bin() -> Path:
    """The checkov venv's bin folder, installed with ``make checkov`` if missing."""
    bin_dir = CHECKOV_VENV / "bin"
    if not (bin_dir / "checkov").exists():
        done = subprocess.run(["make", "-s", "checkov"], cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(
                f"`make checkov` failed (it installs checkov into {CHECKOV_VENV}):\n{done.stderr}"
            )
    return bin_dir


def bicep_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.bicep"))


def unexplained(report: dict[str, Any]) -> list[str]:
    """Failed checks, and skips without a reason: each one a line saying where."""
    results = report["results"]
    lines = [
        f"FAILED {c['check_id']} {c['file_abs_path']} {c['resource']}: {c['check_name']}"
        for c in results["failed_checks"]
    ]
    for c in results["skipped_checks"]:
        reason = (c["check_result"].get("suppress_comment") or "").strip()
        if not reason or reason == NO_REASON:
            lines.append(f"SKIPPED WITHOUT A REASON {c['check_id']} {c['file_abs_path']}")
    return lines


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One checkov run (about 7-12 s here) over a copy of infra/ beside the canary files."""
    bin_dir = checkov_bin()
    tmp = tmp_path_factory.mktemp("checkov")
    shutil.copytree(INFRA, tmp / "infra")
    canary = tmp / "canary"
    canary.mkdir()
    (canary / "fails.bicep").write_text(CANARY_FAILS)
    (canary / "broken.bicep").write_text(CANARY_BROKEN)
    done = subprocess.run(
        [str(bin_dir / "checkov"), "--framework", "bicep", "--skip-download",
         "-o", "json", "-d", str(tmp)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.stdout.startswith("{"), done.stderr[-2000:]
    report = json.loads(done.stdout)
    return {"report": report, "infra": tmp / "infra", "canary": canary}


def test_every_bicep_file_parses_and_declares_something() -> None:
    files = bicep_files(INFRA)
    assert {f.relative_to(INFRA).as_posix() for f in files} >= {
        "main.bicep",
        "modules/functionapp.bicep",
        "modules/servicebus.bicep",
        "modules/cosmos.bicep",
        "modules/storage.bicep",
        "modules/identity.bicep",
        "modules/roles.bicep",
        "modules/nodes.bicep",
    }
    python = checkov_bin() / "python"
    done = subprocess.run(
        [str(python), "-c", PARSE_EACH, *map(str, files)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    parsed = json.loads(done.stdout)
    assert [name for name, count in parsed.items() if count is None] == []
    assert [name for name, count in parsed.items() if not count] == []


def test_checkov_reports_no_failed_check_that_no_skip_comment_explains(scan) -> None:
    report, infra = scan["report"], str(scan["infra"])
    in_infra = {
        "results": {
            kind: [c for c in checks if c["file_abs_path"].startswith(infra)]
            for kind, checks in report["results"].items()
            if kind != "parsing_errors"
        }
    }
    assert unexplained(in_infra) == []
    assert [p for p in report["results"]["parsing_errors"] if p.startswith(infra)] == []
    assert len(in_infra["results"]["passed_checks"]) >= 20, "checkov checked almost nothing"


def test_the_scan_catches_failures_reasonless_skips_and_parse_errors(scan) -> None:
    """The canary: without it a scan that found no files would pass too."""
    report, canary = scan["report"], str(scan["canary"])
    results = report["results"]
    assert results["parsing_errors"] == [str(Path(canary) / "broken.bicep")]
    found = [line for line in unexplained(report) if canary in line]
    assert any(line.startswith("FAILED CKV_AZURE_3 ") for line in found), found
    assert any(line.startswith("SKIPPED WITHOUT A REASON CKV_AZURE_44") for line in found), found


# --- what Bicep declares agrees with the code ----------------------------------------------


def iso_duration(delta: timedelta) -> str:
    """ISO 8601, as ARM writes Service Bus durations (``PT10S``, ``PT10M``, ``P14D``)."""
    seconds = int(delta.total_seconds())
    if seconds % 86400 == 0:
        return f"P{seconds // 86400}D"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}H" if hours else "",
        f"{minutes}M" if minutes else "",
        f"{secs}S" if secs else "",
    ]
    return "PT" + "".join(parts)


class RecordingAdmin(BusAdmin):
    def __init__(self) -> None:
        self.declared: dict[str, dict[str, Any]] = {}

    def declare_queue(
        self,
        name: str,
        *,
        requires_session: bool = False,
        max_delivery_count: int = DEFAULT_MAX_DELIVERY_COUNT,
        lock_duration_ms: int = DEFAULT_LOCK_DURATION_MS,
    ) -> None:
        self.declared[name] = queue_options(
            requires_session=requires_session,
            max_delivery_count=max_delivery_count,
            lock_duration_ms=lock_duration_ms,
        )

    def purge_session(self, queue: str, session_id: str) -> int:
        raise NotImplementedError

    def count(self, queue: str, *, sub_queue: Literal["deadletter"] | None = None) -> int:
        raise NotImplementedError


def test_bicep_declares_the_queues_the_code_declares_with_the_same_options() -> None:
    admin = RecordingAdmin()
    declare_queues(admin)
    spec = json.loads((INFRA / "queues.json").read_text())
    assert {q["name"] for q in spec["queues"]} == set(admin.declared)
    for q in spec["queues"]:
        options = admin.declared[q["name"]]
        assert q["requiresSession"] == options["requires_session"], q["name"]
        assert q["maxDeliveryCount"] == options["max_delivery_count"], q["name"]
        assert q["lockDuration"] == iso_duration(options["lock_duration"]), q["name"]
    some = next(iter(admin.declared.values()))
    assert spec["common"] == {
        "requiresDuplicateDetection": some["requires_duplicate_detection"],
        "duplicateDetectionHistoryTimeWindow": iso_duration(
            some["duplicate_detection_history_time_window"]
        ),
        "deadLetteringOnMessageExpiration": some["dead_lettering_on_message_expiration"],
        "defaultMessageTimeToLive": iso_duration(some["default_message_time_to_live"]),
    }
    assert "loadJsonContent('../queues.json')" in (INFRA / "modules/servicebus.bicep").read_text()


def test_bicep_creates_the_cosmos_containers_the_store_creates() -> None:
    client = MagicMock()
    CosmosStore("https://infra-test.invalid:443/", client=client)
    database = client.create_database_if_not_exists.return_value
    created = {
        call.args[0]: (
            call.args[1]["paths"][0],
            call.kwargs["indexing_policy"],
            call.kwargs.get("default_ttl"),
        )
        for call in database.create_container_if_not_exists.call_args_list
    }
    spec = json.loads((INFRA / "cosmos-containers.json").read_text())
    declared = {
        c["id"]: (c["partitionKey"], c["indexingPolicy"], c.get("defaultTtl"))
        for c in spec["containers"]
    }
    assert declared == created
    assert set(declared) == {cosmos_docs.JOBS, cosmos_docs.CLUSTER, "index", cosmos_docs.KEYS}
    assert declared[cosmos_docs.KEYS][2] == -1  # time-to-live on: keys expire by their ttl
    bicep = (INFRA / "modules/cosmos.bicep").read_text()
    assert "loadJsonContent('../cosmos-containers.json')" in bicep


def hpc_app_settings() -> dict[str, str]:
    """The ``hpcSettings`` block of main.bicep: name -> Bicep expression."""
    text = (INFRA / "main.bicep").read_text()
    block = re.search(r"^var hpcSettings = \{\n(.*?)^\}", text, re.S | re.M)
    assert block, "main.bicep has no `var hpcSettings = {...}` block"
    return dict(re.findall(r"^\s*(HPC_[A-Z0-9_]+): (.+)$", block.group(1), re.M))


def test_every_hpc_app_setting_is_a_setting_the_code_reads() -> None:
    from functions import autoscaler, reconciler

    settings = hpc_app_settings()
    schedules = {reconciler.SCHEDULE_SETTING, autoscaler.SCHEDULE_SETTING}  # %NAME% in bindings
    unknown = [
        name
        for name in settings
        if name[4:].lower() not in Settings.model_fields and name not in schedules
    ]
    assert unknown == []
    assert {"HPC_STORE", "HPC_BUS", "HPC_OUTPUT", "HPC_COMPUTE"} <= set(settings)
    literals = {
        name[4:].lower(): value.strip("'")
        for name, value in settings.items()
        if re.fullmatch(r"'[^']*'", value) and name not in schedules
    }
    chosen = Settings.model_validate(
        literals
    )  # validates the literal values (store, bus, output...)
    assert (chosen.store, chosen.bus, chosen.output) == ("cosmos", "servicebus", "blob")


def test_the_functions_connections_are_identity_based_and_named_as_the_bindings_say() -> None:
    text = (INFRA / "modules/functionapp.bicep").read_text()
    names = set(re.findall(r"^\s*([A-Za-z_]+__[A-Za-z]+):", text, re.M))
    assert {
        f"{CONNECTION_SETTING}__fullyQualifiedNamespace",
        f"{CONNECTION_SETTING}__credential",
        f"{CONNECTION_SETTING}__clientId",
        "AzureWebJobsStorage__accountName",
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
    } <= names
    assert "AccountKey=" not in text and "SharedAccessKey" not in text
