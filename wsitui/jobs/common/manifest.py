"""manifest.json: what a job wrote, from what, with which params and libraries.

Every job type's manifest extends `JobManifest`. It is written last and atomically, so a
results dir with a manifest holds a finished job's outputs.
"""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import openslide
from pydantic import BaseModel

import wsitui
from wsitui.core.digest import sha256_file
from wsitui.jobs.common.files import write_atomic
from wsitui.slides.reader import SlideReader

MANIFEST_FILE = "manifest.json"


class SlideMeta(BaseModel):
    path: str
    vendor: str | None
    backend: str
    dimensions: tuple[int, int]
    level_count: int
    level_dimensions: list[tuple[int, int]]
    level_downsamples: list[float]
    mpp: float | None  # as the file says it (see the job's own record of the mpp it used)
    # The file as the job opened it; a downstream job compares them with the file it opens
    # (wsitui/jobs/common/upstream.py). None in manifests written before they were recorded.
    bytes: int | None = None
    mtime_ns: int | None = None

    @classmethod
    def of(cls, reader: SlideReader) -> SlideMeta:
        size, mtime_ns = reader.file_identity or (None, None)
        return cls(
            path=str(reader.path),
            vendor=reader.vendor,
            backend=reader.backend,
            dimensions=reader.dimensions,
            level_count=reader.level_count,
            level_dimensions=list(reader.level_dimensions),
            level_downsamples=list(reader.level_downsamples),
            mpp=reader.mpp,
            bytes=size,
            mtime_ns=mtime_ns,
        )


class Artifact(BaseModel):
    path: str  # relative to the results dir; a directory ends with '/'
    kind: str
    bytes: int
    sha256: str | None = None  # files only
    count: int | None = None  # directories only: number of files

    @classmethod
    def file(cls, out: Path, name: str, kind: str) -> Artifact:
        path = out / name
        return cls(path=name, kind=kind, bytes=path.stat().st_size, sha256=sha256_file(path))


class JobManifest(BaseModel):
    format: str
    job_id: str
    job_type: str
    created_at: float
    params: dict[str, Any]
    slide: SlideMeta
    artifacts: list[Artifact]
    timings: dict[str, float]
    versions: dict[str, str]
    warnings: list[str] = []  # things the user should know: e.g. an implausible MPP replaced


_DISTS = (
    "numpy",
    "scipy",
    "scikit-image",
    "shapely",
    "pillow",
    "openslide-python",
    "openslide-bin",
    "tifffile",
    "imagecodecs",
    "pydantic",
)
_versions: dict[str, str] | None = None


def library_versions() -> dict[str, str]:
    global _versions
    if _versions is None:
        out = {"wsitui": wsitui.__version__, "python": platform.python_version()}
        for dist in _DISTS:
            try:
                out[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                out[dist] = "not installed"
        out["openslide"] = str(openslide.__library_version__)
        _versions = out
    return dict(_versions)


def write_manifest(out: Path, manifest: JobManifest) -> None:
    write_atomic(out / MANIFEST_FILE, manifest.model_dump_json(indent=2).encode())
