"""Where wsitui keeps its state and results, and the guard that keeps ids inside it."""

from __future__ import annotations

import os
from pathlib import Path

from wsitui.core.models import check_safe_id


def default_data_dir() -> Path:
    """XDG data dir: $XDG_DATA_HOME/wsitui, else ~/.local/share/wsitui."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "wsitui"


def results_dir(data_dir: Path, tenant: str, workflow_id: str, job_key: str) -> Path:
    """`<data>/results/<tenant>/<workflow>/<job>`; refuses any id that could escape it."""
    for kind, value in (("tenant", tenant), ("workflow id", workflow_id), ("job id", job_key)):
        check_safe_id(kind, value)
    root = (data_dir / "results").resolve()
    path = (root / tenant / workflow_id / job_key).resolve()
    if not path.is_relative_to(root):  # e.g. a symlinked tenant dir pointing elsewhere
        raise ValueError(f"results path {path} is outside {root}")
    return path
