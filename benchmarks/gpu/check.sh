#!/usr/bin/env bash
# The SEGMENT_CELLS device check (issue #19): one prepared command for a machine with an NVIDIA
# GPU, Python 3.12 and torch with CUDA preinstalled, and no network. Under 8 minutes on one H200.
#
#   benchmarks/gpu/fetch_wheels.sh            # here, once: the missing packages into .whl/
#   benchmarks/gpu/check.sh                   # there: installs .whl/*, runs check.py
#   benchmarks/gpu/check.sh --cpu             # anywhere: the same script on the CPU, small
#
# Prints bare-model tiles/s (batch 1/4/16, fp32/bf16), the job's tiles/s and where its time
# goes, GPU utilisation over the job (nvidia-smi), F1 per precision, peak GPU memory. The JSON
# and the log go to $OUT (the device tool's result folder) or benchmarks/out.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-benchmarks/out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
NEEDED="import pydantic, shapely, openslide, imagecodecs"
if ! "$PY" -c "$NEEDED" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
    SITE=${WSITUI_CHECK_SITE:-/tmp/wsitui-site}
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" .whl/*.whl || { echo "installing .whl/ failed" >&2; exit 3; }
    export PYTHONPATH="$SITE:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
export INSTANSEG_BIOIMAGEIO_PATH=${INSTANSEG_BIOIMAGEIO_PATH:-/tmp/wsitui-models}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
timeout 460 "$PY" benchmarks/gpu/check.py "$@" 2>&1 | tee "$OUT/check.log"
exit "${PIPESTATUS[0]}"
