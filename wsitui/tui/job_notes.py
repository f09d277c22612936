"""How many notes (manifest `warnings`) a finished job left, for its card: a mask that found no
tissue, a segmentation that skipped every tile, a fallback model. Read once per attempt."""

from __future__ import annotations

import json
from pathlib import Path

from wsitui.core.paths import ResultsDirs
from wsitui.core.records import Job, JobState

MANIFEST = "manifest.json"


class JobNotes:
    def __init__(self, results_root: Path) -> None:
        self._dirs = ResultsDirs(results_root)
        self._read: dict[tuple[str, int], int] = {}

    def __call__(self, job: Job) -> int:
        """The number of notes of a SUCCEEDED job (0 for any other, or when its manifest
        cannot be read: the detail screen says why)."""
        if job.state is not JobState.SUCCEEDED:
            return 0
        key = (job.id, job.attempt)
        if key not in self._read:
            self._read[key] = self._count(job)
        return self._read[key]

    def _count(self, job: Job) -> int:
        try:
            out = self._dirs(job.tenant, job.workflow_id, job.key)
            manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return 0
        warnings = manifest.get("warnings") if isinstance(manifest, dict) else None
        return sum(isinstance(w, str) for w in warnings) if isinstance(warnings, list) else 0


def notes_text(n: int) -> str:
    return f"⚠ {n} note" + ("s" if n > 1 else "") if n else ""
