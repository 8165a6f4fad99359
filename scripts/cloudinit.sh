#!/usr/bin/env bash
# The real cloud-init, to check the node VMs' custom data with cloud-init's own schema
# (tests/test_customdata_tools.py): Debian's cloud-init package, downloaded with apt and
# unpacked (not installed: nothing on this machine runs it) into .venv-cloudinit/pkg, and
# a venv beside it with the Python packages its schema command imports.
#
#   scripts/cloudinit.sh          install once (idempotent); prints where it is
#
# Without apt (not a Debian-like machine) it says so and exits 0: those tests then skip,
# saying why. Debian bookworm ships cloud-init 22.4; the Azure Ubuntu images ship newer ones,
# whose schema is a superset for the keys the custom data uses.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/.venv-cloudinit"
PKG="$DIR/pkg/usr/lib/python3/dist-packages"
STAMP="$DIR/.installed"
PYTHON="${PYTHON:-python3}"

if [ -f "$STAMP" ] && [ -d "$PKG/cloudinit" ]; then
    echo "cloud-init: $(cat "$STAMP") in $DIR"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
    echo "cloud-init: no apt-get/dpkg-deb here: the custom-data schema tests will skip" >&2
    exit 0
fi
rm -rf "$DIR"
mkdir -p "$DIR/deb"
sandbox=()
[ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)  # root: _apt may not write here
if ! (cd "$DIR/deb" && apt-get download -q "${sandbox[@]}" cloud-init >/dev/null); then
    echo "cloud-init: apt-get download cloud-init failed: the custom-data schema tests will skip" >&2
    rm -rf "$DIR"
    exit 0
fi
dpkg-deb -x "$DIR"/deb/cloud-init_*.deb "$DIR/pkg"
"$PYTHON" -m venv "$DIR"
"$DIR/bin/python" -m pip install -q --disable-pip-version-check \
    'configobj>=5,<6' 'jsonschema>=4,<5' 'PyYAML>=6,<7' 'Jinja2>=3,<4' 'jsonpatch>=1.32,<2' \
    'requests>=2,<3'
basename "$DIR"/deb/cloud-init_*.deb .deb > "$STAMP"
echo "cloud-init: $(cat "$STAMP") in $DIR"
