"""`wsitui status`: read-only view of a data dir (safe while another process runs it).

It opens `state.db` read-only (never creating or migrating anything) and prints the same
workflow and job summary as `wsitui run --json`, phases included.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Row, Table
from rich.text import Text

from wsitui.core.paths import default_data_dir
from wsitui.core.phase import resources_in_use
from wsitui.core.records import SAFE_ID, SAFE_ID_HINT, Job
from wsitui.core.store import Store, StoreError
from wsitui.core.text import one_line, skipped_tiles, tiles_text
from wsitui.session.cohort_rows import CohortSummary, cohort_of
from wsitui.session.errors import EXIT_INPUT, EXIT_OK
from wsitui.session.summary import JobSummary, WorkflowSummary, summarize


def _error(message: str) -> int:
    print(f"wsitui status: {one_line(message)}", file=sys.stderr)
    return EXIT_INPUT


def status(
    data_dir: Path | None,
    *,
    tenant: str | None = None,
    as_json: bool = False,
    out: Path | None = None,
    verbose: bool = False,
) -> int:
    if tenant is not None and not SAFE_ID.match(tenant):
        return _error(f"tenant {tenant!r} is not allowed: {SAFE_ID_HINT}")
    data_dir = data_dir or default_data_dir()
    try:
        data_dir.stat()
    except FileNotFoundError:
        pass  # said below: no state there
    except OSError as exc:  # a symlink loop, a dir we may not enter: not "no state"
        return _error(f"data dir {data_dir} cannot be checked ({exc.strerror}); fix the path")
    if data_dir.exists() and not data_dir.is_dir():
        return _error(f"data dir {data_dir} is not a directory; give the data dir of a run")
    db = data_dir / "state.db"
    if not db.exists():
        return _error(f"no wsitui state in {data_dir}; run a config first")
    if not db.is_file():  # SQLite would block forever opening a FIFO
        return _error(f"{db} is not a regular file; give the data dir of a run")
    try:
        store = Store(db, readonly=True)
        try:
            stored = store.workflows()
            workflows = [w for w in stored if tenant is None or w.tenant == tenant]
            jobs = store.jobs()
            _, waiting = store.tenant_state()
            resources = resources_in_use(jobs, store.capacity())  # R9: what a ready job awaits
            written_to = store.results_root()  # the last run's --out / [paths] results
        finally:
            store.close()
    except StoreError as exc:
        return _error(str(exc))
    if tenant is not None and not workflows:
        # A typo is not an empty answer; but never name the tenants there are (nor say
        # whether there are any): a tenant must not learn that another exists.
        return _error(
            f"no workflows for tenant {tenant!r} in {data_dir}; check the tenant id "
            "(or run its config first)"
        )
    jobs_by_wf: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        jobs_by_wf[job.workflow_id].append(job)
    results_root = out or written_to or data_dir / "results"
    summaries = [
        summarize(
            w, jobs_by_wf[w.id], waiting=waiting, results_root=results_root, resources=resources
        )
        for w in sorted(workflows, key=lambda w: (w.tenant, w.created_at))
    ]
    for s in summaries:  # a cohort workflow: its per-slide rows
        s.cohort = cohort_of(data_dir, results_root, s.tenant, s.id, jobs_by_wf[s.id])
    if as_json:
        print(json.dumps([s.model_dump(mode="json") for s in summaries], indent=2))
        return EXIT_OK
    _print_table(data_dir, summaries, verbose=verbose, live=run_is_live(data_dir))
    return EXIT_OK


NOT_RUNNING = "not running: no wsitui process has this data dir; run its config to resume"


def run_is_live(data_dir: Path) -> bool:
    """Whether a wsitui process (run or TUI) may have this data dir open now: the pid its
    lock file names is alive. Read without locking (a lock taken here, however briefly,
    could make a `wsitui run` starting that instant refuse the data dir as busy)."""
    try:
        pid = int((data_dir / "engine.lock").read_text(encoding="utf-8").strip() or "0")
    except (OSError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True  # alive, another user's
    except OSError:
        return False
    return True


def cohort_line(cohort: CohortSummary) -> str:
    """'12/200 slides done, 1 failed, 3 running', as `wsitui run`'s cohort line counts them
    (a slide is done when its chain ended, or waits behind a failure); then its first failure."""
    listed = [r for r in cohort.rows if r.listed]
    done = sum(r.finished for r in listed)
    text = f"{done}/{cohort.slides} slides done, {cohort.failed} failed, {cohort.running} running"
    failed = next((r for r in listed if r.state in ("FAILED", "CANCELED")), None)
    if failed is not None:
        text += f" · {failed.slide_id}: {one_line(failed.error or failed.state)}"
    return text


def _cohort_row(
    w: WorkflowSummary, cohort: CohortSummary, live: bool = True
) -> tuple[Text | str, ...]:
    """One row for a whole cohort: its slides counted, its tiles and cells summed."""
    cells = [r.cells for r in cohort.rows if r.listed and r.cells is not None]
    removed = sum(not r.listed for r in cohort.rows)
    what = f"cohort: {cohort.slides} slides"
    if removed:
        what += f" (+{removed} no longer listed)"
    return (
        Text(f"{w.tenant}/{one_line(w.name)} ({w.id})"),
        Text(what),
        Text(w.state),
        "",
        tiles_text(
            sum(j.tiles_done for j in w.jobs),
            sum(j.tiles_total for j in w.jobs),
            succeeded=w.state == "SUCCEEDED",
            skipped=sum(skipped_tiles(j.counters) for j in w.jobs),
        ),
        f"{sum(cells):,}" if cells else "",
        Text(cohort_line(cohort) + ("" if live or _settled(cohort) else f" · {NOT_RUNNING}")),
    )


FOLD_ROWS = 200  # job rows past which every workflow is one line (--verbose lists them all)


def _workflow_row(w: WorkflowSummary, live: bool = True) -> tuple[Text | str, ...]:
    """One row for a whole workflow (a big table folded): its jobs counted by state, its
    tiles and cells summed, its first failure."""
    counts: dict[str, int] = {}
    for j in w.jobs:
        counts[j.state] = counts.get(j.state, 0) + 1
    text = ", ".join(
        f"{counts[s]} {s.lower()}"
        for s in ("SUCCEEDED", "FAILED", "CANCELED", "RUNNING", "PENDING")
        if counts.get(s)
    )
    failed = next((j for j in w.jobs if j.state in ("FAILED", "CANCELED")), None)
    if failed is not None:
        text += f" · {failed.key}: {one_line(failed.error or failed.reason or failed.state)}"
    if live and w.reason:  # its tenant waits for a slot: its place in line first
        text = f"{w.reason} · {text}"
    if not live and (counts.get("RUNNING") or any(j.phase in ("ready", "waiting") for j in w.jobs)):
        text += f" · {NOT_RUNNING}"
    cells = [j.counters["cells"] for j in w.jobs if "cells" in j.counters]
    return (
        Text(f"{w.tenant}/{one_line(w.name)} ({w.id})"),
        Text(f"{len(w.jobs):,} jobs"),
        Text(w.state),
        "",
        tiles_text(
            sum(j.tiles_done for j in w.jobs),
            sum(j.tiles_total for j in w.jobs),
            succeeded=w.state == "SUCCEEDED",
            skipped=sum(skipped_tiles(j.counters) for j in w.jobs),
        ),
        f"{sum(cells):,}" if cells else "",
        Text(text),
    )


def _settled(cohort: CohortSummary) -> bool:
    return all(r.finished for r in cohort.rows if r.listed)


def _why(j: JobSummary, live: bool) -> str:
    """A job's reason; with no process on the data dir, a job that would run says it waits
    for a run of its config (not "waiting for a free worker", which no process will free)."""
    if not live and (j.state == "RUNNING" or j.phase in ("ready", "waiting")):
        return NOT_RUNNING
    return one_line(j.error or j.reason or j.stage)


def status_table(
    data_dir: Path, summaries: list[WorkflowSummary], *, verbose: bool = False, live: bool = True
) -> Table:
    """Readable at 80 columns: workflow, job and reason fold onto more lines rather than
    shrinking to nothing, no header is cut, and a cells job shows its cell count. Progress is
    what the running process last committed (it commits progress every few seconds). A cohort
    is one line (its slides counted, like `wsitui run`'s progress line), not a line per job of
    every slide; `verbose` lists its jobs like any other workflow's. Past FOLD_ROWS job rows
    every workflow is one line too (thousands of lines are not read, and took seconds to lay
    out)."""
    rows = sum(len(w.jobs) for w in summaries if w.cohort is None)
    fold_all = not verbose and rows > FOLD_ROWS
    folded = not verbose and (fold_all or any(w.cohort is not None for w in summaries))
    caption = (
        f"{rows:,} jobs: a workflow is one line; `wsitui status --verbose` lists its jobs"
        if fold_all
        else "a cohort is one line; `wsitui status --verbose` lists its jobs"
    )
    table = Table(
        title=Text(f"wsitui status: {one_line(data_dir)}"),
        title_justify="left",
        caption=caption if folded else None,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("workflow", overflow="fold", ratio=2, min_width=10)
    table.add_column("job", overflow="fold", ratio=2, min_width=8)
    for col in ("state", "try", "tiles", "cells"):
        table.add_column(col, no_wrap=True, min_width=len(col))
    table.add_column("why / error", overflow="fold", ratio=3, min_width=14)
    for w in summaries:
        if w.cohort is not None and not verbose:
            table.add_row(*_cohort_row(w, w.cohort, live))
            continue
        if fold_all:
            table.add_row(*_workflow_row(w, live))
            continue
        for j in w.jobs:
            state = j.state if j.state != "PENDING" else f"{j.state} ({j.phase})"
            table.add_row(
                Text(f"{w.tenant}/{one_line(w.name)} ({w.id})"),
                Text(f"{j.key} ({j.type}, {j.branch})"),
                Text(state),
                str(j.attempt),
                tiles_text(
                    j.tiles_done,
                    j.tiles_total,
                    succeeded=j.state == "SUCCEEDED",
                    skipped=skipped_tiles(j.counters),
                ),
                f"{j.counters['cells']:,}" if "cells" in j.counters else "",
                Text(_why(j, live)),
            )
    return table


def _print_table(
    data_dir: Path, summaries: list[WorkflowSummary], *, verbose: bool = False, live: bool = True
) -> None:
    console = Console()
    if not console.is_terminal:  # pipes and logs: don't fold the table into 80 columns
        console = Console(width=160)
    table = status_table(data_dir, summaries, verbose=verbose, live=live)
    lines = plain_lines(console, table) if console.color_system is None else None
    if lines is None:
        console.print(table)
    else:
        console.file.write("".join(f"{line}\n" for line in lines))
        console.file.flush()


def plain_lines(console: Console, table: Table) -> list[str] | None:
    """The table as `console.print` writes it without colours, laid out row by row in plain
    Python when every row fits on one line; None when rich must fold (then print it).

    rich lays out every cell of every row: 2.4 s for `--verbose` on 3,000 jobs. Here rich
    renders the title, header and caption with one probe row made of each column's longest
    cell (so the column widths are the same), and the probe row's own line, which must come
    out exactly as this function writes rows, shows the layout is the one rich would draw.
    """
    columns = table.columns
    if not table.rows or any(c.style or c.justify != "left" for c in columns) or table.row_styles:
        return None
    texts: list[list[str]] = []
    for column in columns:
        cells = []
        for cell in column._cells:
            if (
                isinstance(cell, Text)
                and not cell.spans
                and not cell.style
                and cell.justify in (None, "default", "left")
            ):
                plain = cell.plain
            elif isinstance(cell, str) and "[" not in cell:
                plain = cell  # no markup in it
            else:
                return None
            if "\n" in plain or "\t" in plain:
                return None
            cells.append(plain)
        texts.append(cells)
    widths = [
        max([cell_len(str(c.header)), c.min_width or 0, *map(cell_len, cells)])
        for c, cells in zip(columns, texts, strict=True)
    ]
    longest = [max(cells, key=cell_len, default="") for cells in texts]

    def line(cells: Sequence[str]) -> str:
        padded = [c + " " * (w - cell_len(c)) for c, w in zip(cells, widths, strict=True)]
        return " " + "  ".join(padded) + " "

    probe = copy.copy(table)
    probe.columns = [
        replace(c, _cells=[Text(text)]) for c, text in zip(columns, longest, strict=True)
    ]
    probe.rows = [Row()]
    with console.capture() as captured:
        console.print(probe)
    drawn = captured.get().split("\n")
    if drawn and drawn[-1] == "":
        drawn.pop()
    at = [i for i, text in enumerate(drawn) if text == line(longest)]
    if len(at) != 1:
        return None  # folded, or laid out otherwise: rich draws it
    rows = [line(cells) for cells in zip(*texts, strict=True)]
    return [*drawn[: at[0]], *rows, *drawn[at[0] + 1 :]]
