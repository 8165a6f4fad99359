#!/usr/bin/env bash
# The venv of Azure's own Python worker (PyPI azure-functions-runtime, Python >= 3.13),
# beside the project's .venv, for tests/test_worker_indexing.py: the worker's indexing code
# applied to function_app.py, as Azure applies it at start-up.
#
# Created once and reused; rebuilt only when requirements.txt or the pinned runtime change
# (the stamp holds their hash). Prints the venv's python on stdout.
# Exit 3 (and a reason on stderr) when no Python >= 3.13 exists here.
#
#   bash scripts/worker_venv.sh            # create if needed, print the python
#   HPC_WORKER_VENV=/tmp/w bash scripts/worker_venv.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HPC_WORKER_VENV:-$ROOT/.venv-worker}"
RUNTIME="azure-functions-runtime==1.3.0"  # the worker Azure runs for Python 3.13+
STAMP="$VENV/.installed"

find_python() {
    local candidate
    for candidate in python3.14 python3.13 \
        "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[3-9]*/bin/python3 \
        /root/.pyenv/versions/3.1[3-9]*/bin/python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys, venv; sys.exit(sys.version_info < (3, 13))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

wanted="$( (echo "$RUNTIME"; cat "$ROOT/requirements.txt") | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$wanted" && -x "$VENV/bin/python" ]]; then
    echo "$VENV/bin/python"
    exit 0
fi

if ! python="$(find_python)"; then
    echo "no Python >= 3.13 found (PATH, \$PYENV_ROOT/versions, /root/.pyenv/versions):" \
        "azure-functions-runtime needs one (e.g. pyenv install 3.13)" >&2
    exit 3
fi

# One builder at a time (two pytest runs may start together).
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$wanted" ]]; then
    echo "creating $VENV with $python ($RUNTIME + requirements.txt)" >&2
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q "$RUNTIME" -r "$ROOT/requirements.txt" >&2
    echo "$wanted" >"$STAMP"
fi
echo "$VENV/bin/python"
