"""What the faces show about SEGMENT_CELLS on Dask, without importing dask: the clusters in use
with their workers' tile rates (`SegmentCellsExecutor.dask_status()` returns these), and the
link to Dask's own dashboard for a job."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

_LINK = re.compile(r"https?://\S+")


@dataclass(frozen=True, slots=True)
class WorkerRate:
    address: str
    threads: int
    gpus: int
    tiles: int  # tiles this session's jobs ran on it
    tiles_per_s: float  # over the last RATE_WINDOW seconds


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    address: str  # scheduler address
    local: bool  # the session's own LocalCluster
    dashboard: str  # Dask's dashboard link ("" without bokeh)
    workers: tuple[WorkerRate, ...]
    tiles_per_s: float


def dashboard_link(stage: str, results_dir: Path) -> str:
    """Dask's dashboard for a SEGMENT_CELLS job: from a running job's stage ("segmenting on 4
    Dask workers · http://…/status") or a finished job's manifest; "" for a local-backend job."""
    found = _LINK.search(stage or "")
    if found:
        return found.group(0)
    try:
        manifest = json.loads((Path(results_dir) / "manifest.json").read_text())
    except (OSError, ValueError):
        return ""
    dask = manifest.get("dask") if isinstance(manifest, dict) else None
    link = dask.get("dashboard") if isinstance(dask, dict) else None
    return link if isinstance(link, str) else ""
