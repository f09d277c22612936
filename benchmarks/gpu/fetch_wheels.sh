#!/usr/bin/env bash
# Download, here, the wheels the GPU check needs that the GPU image lacks (see check.sh), for
# Python 3.12 manylinux x86-64, into the repository's ignored .whl/ folder. Versions are the
# ones the project's venv runs. torch, numpy, scipy, scikit-image, tifffile, pillow, anyio, rich,
# prometheus-client are preinstalled there and not carried; textual and dask are not needed by
# the check. instanseg-torch is carried (127 kB, no dependencies installed) because resolving an
# InstanSeg model checks that it is installed; the job path itself never imports it.
#
#   benchmarks/gpu/fetch_wheels.sh [python]      # then: du -sh .whl (must stay well under 60 MiB)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${1:-/work/main/.venv/bin/python}
WHEELS=(
    pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
    typing_extensions==4.16.0
    shapely==2.2.0
    imagecodecs==2026.3.6
    openslide-python==1.4.7 openslide-bin==4.0.1.2
    instanseg-torch==0.1.2
)
mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 \
    -d .whl "${WHEELS[@]}"
du -sh .whl
