"""The node VMs' custom data checked by the real tools that will read it on the VM: cloud-init's
own schema (Debian's cloud-init, unpacked by scripts/cloudinit.sh, which `make test` runs),
systemd's unit verifier (systemd-analyze) and the POSIX shell's parser (``sh -n``); and the
installer run for real (python3's venv, pip, flock) with its paths moved under a temporary
folder and a probe wheel for the agent package.

No VM boots here, so what these cannot show is the boot itself (README, "Not done"). Each
check is shown to refuse a broken document, so a pass means something. A tool that is
missing skips its tests, saying how to get it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.azure_customdata import (
    INSTALL_SCRIPT,
    INSTALLER,
    PACKAGE_FILE,
    UNIT,
    VENV,
)
from tests.helpers import ROOT
from tests.test_azure_customdata import custom_data, files, parse

CLOUD_INIT = ROOT / ".venv-cloudinit"
CLOUD_INIT_PKG = CLOUD_INIT / "pkg" / "usr" / "lib" / "python3" / "dist-packages"
UNIT_PATH = f"/etc/systemd/system/{UNIT}"
ON_THE_VM = (INSTALLER, f"{VENV}/bin/hpc")
"""The unit's commands: written by cloud-init and the installer on the VM, absent here."""


@pytest.fixture
def document(tmp_path) -> str:
    return custom_data(tmp_path)


# ------------------------------------------------------------------- cloud-init's schema


def schema(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    if not (CLOUD_INIT / "bin" / "python").exists() or not (CLOUD_INIT_PKG / "cloudinit").is_dir():
        pytest.skip("cloud-init is not unpacked: run scripts/cloudinit.sh (needs apt-get)")
    path = tmp_path / "user-data"
    path.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(CLOUD_INIT_PKG)}
    return subprocess.run(
        [str(CLOUD_INIT / "bin" / "python"), "-m", "cloudinit.cmd.main", "schema"]
        + ["--config-file", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_cloud_init_finds_the_custom_data_valid_with_nothing_deprecated(tmp_path, document):
    out = schema(tmp_path, document)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Valid cloud-config" in out.stdout
    assert "deprecat" not in (out.stdout + out.stderr).lower()


def test_cloud_init_names_a_deprecated_key(tmp_path, document):
    assert '"package_update": true' in document
    out = schema(tmp_path, document.replace('"package_update"', '"apt_update"', 1))
    assert "deprecat" in (out.stdout + out.stderr).lower()  # what the test above rules out


@pytest.mark.parametrize(
    ("broken", "complaint"),
    [
        ('"runcmd": [', '"runcmd": 5, "x": ['),  # runcmd must be a list
        ('"lock_passwd": true', '"lock_passwd": "yes"'),  # a boolean
    ],
)
def test_cloud_init_refuses_a_broken_document(tmp_path, document, broken, complaint):
    assert broken in document
    out = schema(tmp_path, document.replace(broken, complaint, 1))
    assert out.returncode != 0
    assert "schema errors" in (out.stdout + out.stderr).lower()


# ------------------------------------------------------------------- systemd's verifier


def verify(tmp_path: Path, unit: str) -> list[str]:
    """What systemd-analyze says of the unit, less the lines about its commands being
    absent (they exist only on the VM)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is missing (Debian package systemd)")
    path = tmp_path / UNIT
    path.write_text(unit)
    out = subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60
    )
    said = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    absent = [f"Command {c} is not executable: No such file or directory" for c in ON_THE_VM]
    return [line for line in said if not any(line.endswith(a) for a in absent)]


def unit_of(document: str) -> str:
    doc: dict[str, Any] = parse(document)
    return files(doc)[UNIT_PATH]["content"]


def test_systemd_reads_every_line_of_the_agents_unit(tmp_path, document):
    assert verify(tmp_path, unit_of(document)) == []


@pytest.mark.parametrize(
    ("line", "mistake"),
    [("User=hpc", "Usr=hpc"), ("TimeoutStartSec=900", "TimeoutStartSec=15 min utes")],
)
def test_systemd_names_a_mistake_in_the_unit(tmp_path, document, line, mistake):
    unit = unit_of(document)
    assert line in unit.splitlines()
    said = verify(tmp_path, unit.replace(line, mistake))
    assert said and any(mistake.split("=")[0] in s for s in said)


# ------------------------------------------------------------------- the installer


def shell_parse(tmp_path: Path, script: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "install.sh"
    path.write_text(script)
    return subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True, timeout=30)


def test_the_installer_parses_as_posix_sh(tmp_path, document):
    script = files(parse(document))[INSTALLER]["content"]
    assert script.startswith("#!/bin/sh\n")
    out = shell_parse(tmp_path, script)
    assert out.returncode == 0, out.stderr
    assert shell_parse(tmp_path, script.replace("fi\n", "\n", 1)).returncode != 0


# ------------------------------------------------------------------- the installer, run


def probe_wheel(where: Path, version: str) -> Path:
    """A wheel whose console script ``hpc`` prints its version: the agent package's stand-in
    (the installer's logic is what is under test, not the agent's dependencies)."""
    name = f"hybridhpc_probe-{version}"
    path = where / f"{name}-py3-none-any.whl"
    members = {
        "hybridhpc_probe/__init__.py": f"def main():\n    print('probe {version}')\n",
        f"{name}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: hybridhpc-probe\nVersion: {version}\n"
        ),
        f"{name}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"{name}.dist-info/entry_points.txt": "[console_scripts]\nhpc = hybridhpc_probe:main\n",
    }
    with zipfile.ZipFile(path, "w") as z:
        for member, text in members.items():
            z.writestr(member, text)
        record = [f"{m},," for m in members] + [f"{name}.dist-info/RECORD,,"]
        z.writestr(f"{name}.dist-info/RECORD", "\n".join(record) + "\n")
    return path


@pytest.fixture
def installer(tmp_path) -> tuple[Path, Path, Path]:
    """The installer with its absolute paths moved under ``tmp_path``: (script, the
    package file, the venv)."""
    if (
        shutil.which("flock") is None
        or subprocess.run(
            ["python3", "-c", "import ensurepip, venv"], capture_output=True
        ).returncode
    ):
        pytest.skip("the installer needs flock and python3 with venv (as the VM image has)")
    venv, package = tmp_path / "opt" / "hybridhpc", tmp_path / "etc" / "package"
    package.parent.mkdir(parents=True)
    script = (
        INSTALL_SCRIPT.replace(VENV, str(venv))
        .replace(PACKAGE_FILE, str(package))
        .replace("/run/hybridhpc-install.lock", str(tmp_path / "install.lock"))
    )
    assert VENV not in script.replace(str(venv), "") and "/run/" not in script
    path = tmp_path / "hybridhpc-install"
    path.write_text(script)
    path.chmod(0o755)
    return path, package, venv


def run_installer(script: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(script)], capture_output=True, text=True, timeout=300)


def test_the_installer_installs_once_finishes_a_cut_short_install_and_follows_the_package(
    tmp_path, installer
):
    script, package, venv = installer
    hpc = venv / "bin" / "hpc"
    package.write_text(str(probe_wheel(tmp_path, "1.0")))
    # the creation boot was deallocated mid-install: the venv is there, the agent is not
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True, timeout=120)
    assert not hpc.exists()
    first = run_installer(script)
    assert first.returncode == 0, first.stderr
    assert subprocess.run([str(hpc)], capture_output=True, text=True).stdout == "probe 1.0\n"
    # installed: the next start does not touch pip (a pip that fails shows it)
    pip = venv / "bin" / "pip"
    real_pip = pip.read_bytes()
    pip.write_text("#!/bin/sh\nexit 3\n")
    again = run_installer(script)
    assert again.returncode == 0, again.stderr
    # a new requirement (HPC_AZURE_AGENT_PACKAGE changed): installed at the next start
    pip.write_bytes(real_pip)
    package.write_text(str(probe_wheel(tmp_path, "2.0")))
    upgraded = run_installer(script)
    assert upgraded.returncode == 0, upgraded.stderr
    assert subprocess.run([str(hpc)], capture_output=True, text=True).stdout == "probe 2.0\n"
    # and a failed install is not recorded as done: the next start tries again
    package.write_text(str(tmp_path / "missing.whl"))
    assert run_installer(script).returncode != 0
    assert (venv / ".package").read_text() == str(probe_wheel(tmp_path, "2.0"))
