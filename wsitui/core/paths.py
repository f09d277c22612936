"""Where wsitui keeps its state and results, and the guard that keeps ids inside it."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from wsitui.core.models import check_safe_id


def default_data_dir() -> Path:
    """XDG data dir: $XDG_DATA_HOME/wsitui, else ~/.local/share/wsitui."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "wsitui"


def results_dir(results_root: Path, tenant: str, workflow_id: str, job_key: str) -> Path:
    """`<results>/<tenant>/<workflow>/<job>`; refuses any id that could escape it."""
    for kind, value in (("tenant", tenant), ("workflow id", workflow_id), ("job id", job_key)):
        check_safe_id(kind, value)
    root = results_root.resolve()
    path = (root / tenant / workflow_id / job_key).resolve()
    if not path.is_relative_to(root):  # e.g. a symlinked tenant dir pointing elsewhere
        raise ValueError(f"results path {path} is outside {root}")
    return path


class DataDirInUse(Exception):
    pass


class DataDirLock:
    """One engine per data dir: a second process would mark the first one's jobs interrupted."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "engine.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.path.open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = f.read().strip() or "?"
            f.close()
            raise DataDirInUse(
                f"data dir {self.path.parent} is in use by another wsitui process (pid {owner}); "
                "wait for it or use another --data-dir"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
