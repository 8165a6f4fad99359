"""The custom data of a node VM (shared/adapters/azure_customdata.py), as a table: the
``#cloud-config`` document parsed as cloud-init reads it, line by line, and the request
that carries it (to the ARM stand-in tests/arm_double.py: no Azure is reachable here).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from shared.adapters.azure_customdata import (
    AGENT_HOME,
    CUSTOM_DATA_MAX,
    INSTALLER,
    UNIT,
    agent_settings,
    cloud_config,
    encode,
    environment_file,
    systemd_arg,
)
from shared.ports.compute import VmSpec
from tests.arm_double import ArmSimulator
from tests.test_azure_wiring import AZ, AZURE, GALLERY, IDENTITY, azure_settings, built
from tests.test_control import Clock

# ------------------------------------------------------------------- custom data


SPEC = VmSpec(name="azure-7", group=AZ, cores=8)
CLIENT_ID = AZURE["azure_node_identity_client_id"]
PACKAGE = AZURE["azure_agent_package"]


def parse(document: str) -> dict[str, Any]:
    """The document as cloud-init reads it: yaml.safe_load when PyYAML is here (JSON is
    YAML), and always as JSON (how it is written)."""
    header, _, body = document.partition("\n")
    assert header == "#cloud-config"
    parsed: dict[str, Any] = json.loads(body)
    try:
        import yaml
    except ImportError:
        return parsed
    assert yaml.safe_load(document) == parsed
    return parsed


def custom_data(tmp_path) -> str:
    """The ``#cloud-config`` text of SPEC's VM, with the Azure settings of these tests."""
    environment = agent_settings(azure_settings(tmp_path))
    return cloud_config(
        SPEC, package=PACKAGE, identity_client_id=CLIENT_ID, environment=environment
    )


@pytest.fixture
def doc(tmp_path) -> dict[str, Any]:
    return parse(custom_data(tmp_path))


def files(doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {f["path"]: f for f in doc["write_files"]}


def test_the_custom_data_installs_python_and_keeps_the_admin_user(doc):
    assert {"python3", "python3-venv"} <= set(doc["packages"])
    default, agent_user = doc["users"]
    assert default == "default"  # Azure's admin user (osProfile) stays
    assert agent_user == {
        "name": "hpc",
        "system": True,
        "homedir": AGENT_HOME,
        "shell": "/usr/sbin/nologin",
        "lock_passwd": True,
    }


def test_the_custom_data_pip_installs_the_configured_package_from_a_file(doc):
    written = files(doc)
    assert written["/etc/hybridhpc/package"]["content"] == PACKAGE + "\n"
    script = written[INSTALLER]
    assert script["permissions"] == "0755"
    assert 'pip install --disable-pip-version-check --upgrade "$want"' in script["content"]
    assert PACKAGE not in script["content"]  # read from the file, never pasted into sh


def test_the_agents_settings_name_the_node_the_bus_the_output_and_the_identity(doc, tmp_path):
    lines = files(doc)["/etc/hybridhpc/agent.env"]["content"].splitlines()
    assert dict(line.split("=", 1) for line in lines) == {
        "HPC_HOME": AGENT_HOME,
        "HPC_BUS": "servicebus",
        "HPC_SERVICEBUS_NAMESPACE": "hpc-ns.servicebus.windows.net",
        "HPC_OUTPUT": "blob",
        "HPC_BLOB_ACCOUNT_URL": "https://st.blob.core.windows.net",
        "HPC_BLOB_CONTAINER": "output",
        "HPC_HEARTBEAT_INTERVAL_S": "2",
        "HPC_HEARTBEAT_TIMEOUT_S": "10",
        "HPC_MAX_OUTPUT_BYTES": str(100 << 20),
        "HPC_TASK_GRACE_S": "15",  # the cluster's: every VM kills tasks alike
        "HPC_AGENT_ENFORCE_MEMORY": "false",
        "HPC_NODE_NAME": "azure-7",
        "HPC_NODE_GROUP": AZ,
        "AZURE_CLIENT_ID": CLIENT_ID,
    }


@pytest.mark.parametrize(
    "line",
    [
        "User=hpc",
        "EnvironmentFile=/etc/hybridhpc/agent.env",
        "StateDirectory=hybridhpc",
        f"ExecStartPre=+{INSTALLER}",
        "ExecStart=/opt/hybridhpc/bin/hpc agent run --name azure-7 --group AzureNodes --cores 8",
        "KillSignal=SIGTERM",
        "KillMode=process",  # not the whole unit's cgroup: the agent's watchdog ends its tasks
        "Restart=on-failure",
        "WantedBy=multi-user.target",
        "After=network-online.target",
    ],
)
def test_the_systemd_unit_runs_hpc_agent_run_as_the_agent_user(doc, line):
    unit = files(doc)[f"/etc/systemd/system/{UNIT}"]["content"]
    assert line in unit.splitlines()


def test_the_agent_is_enabled_not_started_on_the_creation_boot(doc):
    """The creation boot ends in a deallocation: the agent starts on the next boots."""
    runcmd = doc["runcmd"]
    assert runcmd[:3] == [
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", UNIT],
        [INSTALLER],
    ]
    assert ["systemctl", "enable", "--now", UNIT] not in runcmd
    [last] = runcmd[3:]
    assert last[:2] == ["sh", "-c"] and "-gt 1 ]; then systemctl start --no-block" in last[2]
    assert doc["bootcmd"] == [["sh", "-c", "date -u +%FT%TZ >> /var/lib/hybridhpc-boots"]]


def test_no_secret_reaches_the_custom_data(tmp_path):
    settings = azure_settings(
        tmp_path,
        servicebus_connection_string="Endpoint=sb://x/;SharedAccessKey=SBSECRET",
        blob_connection_string="AccountKey=BLOBSECRET",
        cosmos_key="COSMOSSECRET",
        token="TOKENSECRET",
    )
    arm = ArmSimulator()
    built(settings, arm).create(SPEC, request_id="c", now=Clock().now)
    custom = base64.b64decode(arm.vms["azure-7"].body["properties"]["osProfile"]["customData"])
    assert custom.startswith(b"#cloud-config\n")
    for secret in (b"SBSECRET", b"BLOBSECRET", b"COSMOSSECRET", b"TOKENSECRET"):
        assert secret not in custom


@pytest.mark.parametrize(
    "environment", [{"HPC_SERVICEBUS_CONNECTION_STRING": "x"}, {"HPC_COSMOS_KEY": "k"}]
)
def test_a_secret_passed_to_the_custom_data_is_refused(environment):
    with pytest.raises(ValueError, match="readable on the VM"):
        cloud_config(SPEC, package="p", identity_client_id="c", environment=environment)


@pytest.mark.parametrize("package", ["", "  ", "a\nb"])
def test_the_agent_package_must_be_one_requirement(package):
    with pytest.raises(ValueError, match="one pip requirement"):
        cloud_config(SPEC, package=package, identity_client_id="c", environment={})


@pytest.mark.parametrize(
    ("arg", "written"),
    [
        ("azure-1", "azure-1"),
        ("Azure Nodes", '"Azure Nodes"'),
        ("50%", "50%%"),
        ("$HOME", "$$HOME"),
        ('say "hi"', '"say \\"hi\\""'),
    ],
)
def test_unit_arguments_are_quoted_for_systemd(arg, written):
    assert systemd_arg(arg) == written


@pytest.mark.parametrize(
    ("values", "written"),
    [
        ({"A": "plain-1.2:x/y"}, "A=plain-1.2:x/y\n"),
        ({"A": "two words"}, 'A="two words"\n'),
        ({"A": 'q"uote\\'}, 'A="q\\"uote\\\\"\n'),
        ({"A": ""}, "A=\n"),
    ],
)
def test_environment_file_lines(values, written):
    assert environment_file(values) == written


@pytest.mark.parametrize(
    ("values", "message"), [({"A": "x\ny"}, "one line"), ({"1A": "x"}, "name")]
)
def test_environment_file_refuses_what_systemd_would_misread(values, message):
    with pytest.raises(ValueError, match=message):
        environment_file(values)


def test_custom_data_is_base64_within_arms_limit():
    document = cloud_config(SPEC, package="p", identity_client_id="c", environment={})
    assert base64.b64decode(encode(document), validate=True).decode() == document
    assert len(encode(document)) < CUSTOM_DATA_MAX // 4  # room to spare
    with pytest.raises(ValueError, match="ARM takes 87380"):
        encode("x" * 70_000)


def test_the_create_request_carries_identity_tags_image_and_custom_data(tmp_path):
    arm = ArmSimulator()
    provider = built(azure_settings(tmp_path, azure_image=GALLERY), arm)
    provider.create(
        VmSpec("azure-7", AZ, 8, size="Standard_D8s_v5"), request_id="c", now=Clock().now
    )
    body = arm.vms["azure-7"].body
    assert body["identity"] == {"type": "UserAssigned", "userAssignedIdentities": {IDENTITY: {}}}
    assert body["tags"] == {
        "costCenter": "hpc",
        "cluster": "hybridhpc",
        "group": AZ,
        "node": "azure-7",
    }
    props = body["properties"]
    assert props["storageProfile"]["imageReference"] == {"id": GALLERY}
    assert props["hardwareProfile"] == {"vmSize": "Standard_D8s_v5"}
    assert props["osProfile"]["adminUsername"] == "hpcadmin"
    keys = props["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"]
    assert keys == [
        {"path": "/home/hpcadmin/.ssh/authorized_keys", "keyData": AZURE["azure_ssh_public_key"]}
    ]
    custom = base64.b64decode(props["osProfile"]["customData"], validate=True).decode()
    assert custom == cloud_config(
        VmSpec("azure-7", AZ, 8, size="Standard_D8s_v5"),
        package=PACKAGE,
        identity_client_id=CLIENT_ID,
        environment=provider.agent_environment,
    )


def test_the_admin_user_cannot_be_the_agents_user(tmp_path):
    with pytest.raises(ValueError, match="must not be 'hpc'"):
        built(azure_settings(tmp_path, azure_admin_username="hpc"), ArmSimulator())
