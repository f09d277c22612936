"""A cohort's study table: `<results>/<tenant>/<workflow>/cohort/summary.csv` and `.parquet`.

One row per slide, built from that slide's job records and the manifests its jobs wrote (never
from live counters): path, metadata columns, state, tissue area, cells, density, nucleus area
mean / median, model and its hash, device, run seconds, error. What a job contributes comes
from its type's executor (`summary_columns` / `summary_fields`, through the registry): this
module names the columns (VALUE_COLUMNS, the table's schema) and no job type.

Written as slides finish: when a slide's chain ends, its row is appended to summary.csv and
flushed (a crash loses no finished row); summary.parquet is rewritten at most every
`PARQUET_EVERY_S` seconds. When the session ends both are rewritten whole and atomically, one
row per listed slide in cohort order, unfinished slides with their state.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from wsitui.core.engine import Engine
from wsitui.core.events import Event, JobProgress, JobStateChanged
from wsitui.core.paths import results_dir
from wsitui.core.records import Job, JobState
from wsitui.jobs.common.files import write_atomic
from wsitui.jobs.common.manifest import MANIFEST_FILE
from wsitui.jobs.registry import executor_class
from wsitui.session.cohort import Cohort, CohortSlide
from wsitui.session.cohort_rows import chain_finished, chain_state

SUMMARY_DIR = "cohort"
PARQUET_EVERY_S = 5.0

# (column, kind) after `slide_id`, `path` and the metadata columns: those a job type fills
# (its executor's `summary_columns`) must be here; cells_per_mm2 is cells / tissue_area_mm2.
VALUE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("state", "str"),
    ("tissue_area_mm2", "float"),
    ("cells", "int"),
    ("cells_per_mm2", "float"),
    ("nucleus_area_mean_um2", "float"),
    ("nucleus_area_median_um2", "float"),
    ("model", "str"),
    ("model_sha256", "str"),
    ("device", "str"),
    ("run_s", "float"),
    ("error", "str"),
    ("cells_job_id", "str"),
    ("cells_parquet", "str"),
)


def columns(cohort: Cohort) -> list[str]:
    return ["slide_id", "path", *cohort.meta_columns, *(c for c, _ in VALUE_COLUMNS)]


def _manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def slide_row(
    cohort: Cohort, slide: CohortSlide, jobs: list[Job], results_root: Path
) -> dict[str, Any]:
    """The summary row of one slide from its job records and manifests."""
    row: dict[str, Any] = {"slide_id": slide.id, "path": str(slide.path), **slide.meta}
    for c, _ in VALUE_COLUMNS:
        row[c] = None
    row["state"] = str(chain_state(jobs))
    timed = [j.finished_at - j.started_at for j in jobs if j.started_at and j.finished_at]
    row["run_s"] = round(sum(timed), 3) if timed else None
    failed = [j for j in jobs if j.state in (JobState.FAILED, JobState.CANCELED)]
    if failed:
        j = failed[0]
        row["error"] = f"{j.key.removeprefix(slide.id + '-')}: {j.error or j.state}"
    taken: set[str] = set()  # job types whose columns are filled (by the chain's first)
    for job in jobs:
        executor = executor_class(str(job.job_type))
        if job.state is not JobState.SUCCEEDED or executor is None or str(job.job_type) in taken:
            continue
        if not executor.summary_columns:
            continue
        try:
            out = results_dir(results_root, job.tenant, job.workflow_id, job.key)
        except ValueError:
            continue
        fields = executor.summary_fields(_manifest(out), out)
        if not fields:
            continue
        taken.add(str(job.job_type))
        for column in executor.summary_columns:
            if column in fields and column in row:
                row[column] = fields[column]
    tissue, cells = row["tissue_area_mm2"], row["cells"]
    if isinstance(tissue, int | float):
        if tissue > 0 and isinstance(cells, int):
            row["cells_per_mm2"] = round(cells / tissue, 3)
        row["tissue_area_mm2"] = round(tissue, 6)
    return row


def _csv_text(cols: list[str], rows: list[dict[str, Any]], *, header: bool) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row[c] for c in cols})
    return buf.getvalue()


def write_parquet(path: Path, cohort: Cohort, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    kinds = {"float": pa.float64(), "int": pa.int64(), "str": pa.string()}
    schema = pa.schema(
        [("slide_id", pa.string()), ("path", pa.string())]
        + [(c, pa.string()) for c in cohort.meta_columns]
        + [(c, kinds[k]) for c, k in VALUE_COLUMNS]
    )
    clean = [
        {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
        for r in rows
    ]
    table = pa.Table.from_pylist(clean, schema=schema)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        pq.write_table(table, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


class CohortSummaryWriter:
    """An engine listener that keeps one cohort's summary files up to date."""

    def __init__(self, engine: Engine, cohort: Cohort, workflow_id: str) -> None:
        self.engine, self.cohort, self.workflow_id = engine, cohort, workflow_id
        self.dir = results_dir(engine.results_root, cohort.tenant, workflow_id, SUMMARY_DIR)
        self.csv_path = self.dir / "summary.csv"
        self.parquet_path = self.dir / "summary.parquet"
        self.cols = columns(cohort)
        self.slides = cohort.by_id()
        self._jobs: dict[str, dict[str, Job]] = {s: {} for s in self.slides}
        self._rows: dict[str, dict[str, Any]] = {}  # finished slides
        self._parquet_dirty = False
        self._parquet_at = 0.0
        self.error: str | None = None  # a write that failed (disk full): said once, at the end

    def _slide_jobs(self, sid: str) -> list[Job]:
        return list(self._jobs.get(sid, {}).values())

    def start(self) -> None:
        """Take the jobs as they are now; write the rows of slides already finished."""
        for job in self.engine.workflow(self.cohort.tenant, self.workflow_id).jobs:
            if job.branch in self._jobs:
                self._jobs[job.branch][job.key] = job
        for sid in self.slides:
            jobs = self._slide_jobs(sid)
            if chain_finished(jobs):
                self._rows[sid] = self._row(sid)
        self._write_all(finished_only=True)

    def _row(self, sid: str) -> dict[str, Any]:
        return slide_row(
            self.cohort, self.slides[sid], self._slide_jobs(sid), self.engine.results_root
        )

    def __call__(self, event: Event) -> None:
        if not isinstance(event, JobStateChanged | JobProgress):
            return
        try:
            self._take(event)
        except Exception as exc:  # never the engine's problem: said once, at the end
            self.error = f"cohort summary {self.csv_path}: {exc}"

    def _take(self, event: JobStateChanged | JobProgress) -> None:
        job = event.job
        if job.workflow_id != self.workflow_id or job.branch not in self._jobs:
            return
        self._jobs[job.branch][job.key] = job
        if not isinstance(event, JobStateChanged):
            return
        sid = job.branch
        if not chain_finished(self._slide_jobs(sid)):
            self._rows.pop(sid, None)  # retried: its row is written again when it ends
            return
        row = self._row(sid)
        if self._rows.get(sid) == row:
            return
        self._rows[sid] = row
        self._append(row)

    def _append(self, row: dict[str, Any]) -> None:
        try:
            if not self.csv_path.is_file():
                self._write_all(finished_only=True)
                return
            with self.csv_path.open("a", encoding="utf-8", newline="") as f:
                f.write(_csv_text(self.cols, [row], header=False))
                f.flush()
                os.fsync(f.fileno())
            self._parquet_dirty = True
            if time.monotonic() - self._parquet_at >= PARQUET_EVERY_S:
                self._write_parquet(self._ordered(finished_only=True))
        except OSError as exc:
            self.error = f"cohort summary {self.csv_path}: {exc.strerror or exc}"

    def _ordered(self, *, finished_only: bool) -> list[dict[str, Any]]:
        rows = []
        for sid in self.slides:
            if sid in self._rows:
                rows.append(self._rows[sid])
            elif not finished_only:
                rows.append(self._row(sid))
        return rows

    def _write_parquet(self, rows: list[dict[str, Any]]) -> None:
        write_parquet(self.parquet_path, self.cohort, rows)
        self._parquet_at = time.monotonic()
        self._parquet_dirty = False

    def _write_all(self, *, finished_only: bool) -> None:
        rows = self._ordered(finished_only=finished_only)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            write_atomic(self.csv_path, _csv_text(self.cols, rows, header=True).encode())
            self._write_parquet(rows)
        except OSError as exc:
            self.error = f"cohort summary {self.csv_path}: {exc.strerror or exc}"

    def rows(self) -> list[dict[str, Any]]:
        """Every listed slide's row as it is now, in cohort order."""
        return self._ordered(finished_only=False)

    def finish(self) -> None:
        """The complete summary: one row per listed slide, in order."""
        try:
            self._finish()
        except Exception as exc:
            self.error = f"cohort summary {self.csv_path}: {exc}"

    def _finish(self) -> None:
        for job in self.engine.workflow(self.cohort.tenant, self.workflow_id).jobs:
            if job.branch in self._jobs:
                self._jobs[job.branch][job.key] = job
        self._rows = {
            sid: self._row(sid) for sid in self.slides if chain_finished(self._slide_jobs(sid))
        }
        self._write_all(finished_only=False)
