"""`wsitui status`: read-only view of a data dir (safe while another process runs it)."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from wsitui.core.paths import default_data_dir
from wsitui.core.store import Store, StoreError


def status(data_dir: Path | None, *, tenant: str | None = None, as_json: bool = False) -> int:
    data_dir = data_dir or default_data_dir()
    db = data_dir / "state.db"
    if not db.exists():
        print(f"wsitui status: no wsitui state in {data_dir}; run a config first", file=sys.stderr)
        return 2
    try:
        store = Store(db)
    except StoreError as exc:
        print(f"wsitui status: {exc}", file=sys.stderr)
        return 2
    try:
        workflows = [w for w in store.workflows() if tenant is None or w.tenant == tenant]
        jobs_by_wf = defaultdict(list)
        for job in store.jobs():
            jobs_by_wf[job.workflow_id].append(job)
    finally:
        store.close()
    if as_json:
        out = [
            {
                "id": w.id,
                "tenant": w.tenant,
                "name": w.name,
                "created_at": w.created_at,
                "jobs": [
                    {
                        "id": j.id,
                        "key": j.key,
                        "type": str(j.job_type),
                        "branch": j.branch,
                        "state": str(j.state),
                        "attempt": j.attempt,
                        "tiles_done": j.tiles_done,
                        "tiles_total": j.tiles_total,
                        "error": j.error,
                    }
                    for j in jobs_by_wf[w.id]
                ],
            }
            for w in workflows
        ]
        print(json.dumps(out, indent=2))
        return 0
    table = Table(title=f"wsitui status: {data_dir}", title_justify="left")
    for col in ("tenant", "workflow", "id", "job", "type", "branch", "state", "try", "tiles"):
        table.add_column(col, no_wrap=col not in ("workflow", "job"), overflow="fold")
    for w in sorted(workflows, key=lambda w: (w.tenant, w.created_at)):
        for j in jobs_by_wf[w.id]:
            table.add_row(
                w.tenant,
                w.name,
                w.id,
                j.key,
                str(j.job_type),
                j.branch,
                str(j.state),
                str(j.attempt),
                f"{j.tiles_done}/{j.tiles_total}",
            )
    console = Console()
    if not console.is_terminal:  # pipes and logs: don't fold the table into 80 columns
        console = Console(width=160)
    console.print(table)
    return 0
