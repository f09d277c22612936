#!/usr/bin/env bash
# Creates .venv and installs wsitui with its dev tools. Idempotent: re-running is cheap.
# torch (needed once SEGMENT_CELLS lands) is pinned to the CPU build only where that
# build is on local disk (this project's dev/CI machines); elsewhere pip picks the
# platform default.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[dev]' 2>&1 | grep -v "is ignored: it is neither" || true
.venv/bin/python -c "import wsitui" # fail loudly if the install did not take
