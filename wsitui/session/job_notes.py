"""The notes (manifest `warnings`) a finished job left: a mask that found no tissue, a
segmentation that skipped every tile, an assumed pixel size, the classical fallback where
InstanSeg could not run (not the classical model asked for or chosen as the default: the
manifest's `model` names it, without a note). Read once per attempt. Both faces say them:
the TUI's card counts them (`⚠ 2 notes`), `wsitui run`'s closing summary prints each once
with the jobs that left it."""

from __future__ import annotations

import json
from pathlib import Path

from wsitui.core.paths import ResultsDirs
from wsitui.core.records import Job, JobState

MANIFEST = "manifest.json"


class JobNotes:
    def __init__(self, results_root: Path) -> None:
        self._dirs = ResultsDirs(results_root)
        self._read: dict[tuple[str, int], tuple[str, ...]] = {}

    def __call__(self, job: Job) -> int:
        """The number of notes of a SUCCEEDED job (0 for any other, or when its manifest
        cannot be read: the detail screen says why)."""
        return len(self.texts(job))

    def texts(self, job: Job) -> tuple[str, ...]:
        """The notes of a SUCCEEDED job, as its manifest words them (none for any other)."""
        if job.state is not JobState.SUCCEEDED:
            return ()
        key = (job.id, job.attempt)
        if key not in self._read:
            self._read[key] = self._texts(job)
        return self._read[key]

    def _texts(self, job: Job) -> tuple[str, ...]:
        try:
            out = self._dirs(job.tenant, job.workflow_id, job.key)
            manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return ()
        warnings = manifest.get("warnings") if isinstance(manifest, dict) else None
        if not isinstance(warnings, list):
            return ()
        return tuple(w for w in warnings if isinstance(w, str))


def notes_text(n: int) -> str:
    return f"⚠ {n} note" + ("s" if n > 1 else "") if n else ""
