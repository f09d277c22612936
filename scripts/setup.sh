#!/usr/bin/env bash
# Creates .venv and installs wsitui with its dev tools. Idempotent: re-running is cheap.
#
# torch: a bare `torch` requirement resolves on x86-64 Linux to a multi-GB CUDA build. Unless a
# torch is already installed, this installs torch==$WSITUI_TORCH (default 2.13.0, the CPU build
# on this project's dev and CI machines, where pip takes it from local disk) before the project,
# whose `torch>=2.1` range it satisfies. Set WSITUI_TORCH=skip to let pip choose your platform's
# torch (e.g. a CUDA build on a GPU box).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH=${WSITUI_TORCH:-2.13.0}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
quiet() { grep -v "is ignored: it is neither" || true; }
if [ "$TORCH" != "skip" ] && ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    .venv/bin/python -m pip install -q "torch==$TORCH" 2>&1 | quiet
fi
.venv/bin/python -m pip install -q -e '.[dev,train]' 2>&1 | quiet
.venv/bin/python -c "import wsitui, torch" # fail loudly if the install did not take
