#!/usr/bin/env bash
# The environment of the benchmark's baseline only: instanseg-torch's own whole-slide path
# (`eval_whole_slide_image`) needs tiffslide, zarr<3, geojson and rasterio, which wsitui does
# not. Kept apart from .venv so none of them leaks into the project's dependencies.
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv-baseline
if [ ! -x "$VENV/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$VENV"
fi
quiet() { grep -v "is ignored: it is neither" || true; }
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
"$VENV/bin/python" -c "import torch" 2>/dev/null || "$VENV/bin/python" -m pip install -q "torch==${WSITUI_TORCH:-2.13.0}" 2>&1 | quiet
"$VENV/bin/python" -m pip install -q "instanseg-torch==0.1.2" tiffslide "zarr<3" geojson rasterio 2>&1 | quiet
"$VENV/bin/python" -c "import instanseg, tiffslide, zarr, geojson, rasterio; print('baseline env ready')"
