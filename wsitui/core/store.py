"""Durable engine state in SQLite (WAL): workflows, jobs, the transition timeline, checkpoints.

One connection guarded by a lock: the event loop writes transitions, executor threads write
checkpoints. Each public write is one transaction, committed before the caller publishes it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from wsitui.core.models import Job, JobState, JobType, Transition, Workflow

SCHEMA = """
CREATE TABLE IF NOT EXISTS workflows (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,  -- creation order, which is topological
    id TEXT NOT NULL UNIQUE,
    key TEXT NOT NULL,
    workflow_id TEXT NOT NULL REFERENCES workflows(id),
    tenant TEXT NOT NULL,
    job_type TEXT NOT NULL,
    slide TEXT NOT NULL,
    branch TEXT NOT NULL,
    depends_on TEXT NOT NULL,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    tiles_done INTEGER NOT NULL DEFAULT 0,
    tiles_total INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 1,
    error TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    seq INTEGER NOT NULL DEFAULT 0,
    enqueued INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS jobs_tenant ON jobs(tenant, workflow_id);
CREATE TABLE IF NOT EXISTS transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    ts REAL NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transitions_job ON transitions(job_id);
CREATE TABLE IF NOT EXISTS checkpoints (
    job_id TEXT PRIMARY KEY,
    attempt INTEGER NOT NULL,
    data TEXT NOT NULL,
    tiles_done INTEGER NOT NULL
);
"""

_JOB_COLUMNS = (
    "id, key, workflow_id, tenant, job_type, slide, branch, depends_on, params, state, "
    "tiles_done, tiles_total, attempt, error, created_at, started_at, finished_at, seq, enqueued"
)


class StoreError(Exception):
    pass


def _job_row(job: Job) -> tuple[Any, ...]:
    return (
        job.id,
        job.key,
        job.workflow_id,
        job.tenant,
        str(job.job_type),
        job.slide,
        job.branch,
        json.dumps(list(job.depends_on)),
        json.dumps(job.params, sort_keys=True),
        str(job.state),
        job.tiles_done,
        job.tiles_total,
        job.attempt,
        job.error,
        job.created_at,
        job.started_at,
        job.finished_at,
        job.seq,
        int(job.enqueued),
    )


def _row_job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        key=row["key"],
        workflow_id=row["workflow_id"],
        tenant=row["tenant"],
        job_type=JobType(row["job_type"]),
        slide=row["slide"],
        branch=row["branch"],
        depends_on=tuple(json.loads(row["depends_on"])),
        params=json.loads(row["params"]),
        state=JobState(row["state"]),
        tiles_done=row["tiles_done"],
        tiles_total=row["tiles_total"],
        attempt=row["attempt"],
        error=row["error"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        seq=row["seq"],
        enqueued=bool(row["enqueued"]),
    )


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a process crash (SIGKILL); only power loss can roll
            # back the last transactions, and never corrupts the database.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"state database {path} cannot be opened ({exc}); move it aside or pick another "
                "--data-dir"
            ) from None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- writes: one transaction each --------------------------------------------------------
    def apply(
        self,
        jobs: Iterable[Job],
        transitions: Iterable[Transition] = (),
        workflow: Workflow | None = None,
    ) -> None:
        """Upsert job rows and append their transitions, atomically."""
        with self._lock:
            try:
                self._db.execute("BEGIN")
                if workflow is not None:
                    self._db.execute(
                        "INSERT INTO workflows VALUES (?, ?, ?, ?)",
                        (workflow.id, workflow.tenant, workflow.name, workflow.created_at),
                    )
                self._db.executemany(
                    f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({', '.join('?' * 19)}) "
                    "ON CONFLICT(id) DO UPDATE SET state=excluded.state, "
                    "tiles_done=excluded.tiles_done, tiles_total=excluded.tiles_total, "
                    "attempt=excluded.attempt, error=excluded.error, "
                    "started_at=excluded.started_at, finished_at=excluded.finished_at, "
                    "seq=excluded.seq, enqueued=excluded.enqueued",
                    [_job_row(j) for j in jobs],
                )
                self._db.executemany(
                    "INSERT INTO transitions (job_id, ts, state, attempt, reason) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(t.job_id, t.ts, str(t.state), t.attempt, t.reason) for t in transitions],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def save_checkpoint(
        self, job_id: str, attempt: int, data: Mapping[str, Any], tiles_done: int
    ) -> None:
        payload = json.dumps(dict(data), sort_keys=True)
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO checkpoints VALUES (?, ?, ?, ?) ON CONFLICT(job_id) DO UPDATE SET "
                "attempt=excluded.attempt, data=excluded.data, tiles_done=excluded.tiles_done",
                (job_id, attempt, payload, tiles_done),
            )
            self._db.execute("UPDATE jobs SET tiles_done=? WHERE id=?", (tiles_done, job_id))
            self._db.execute("COMMIT")

    def clear_checkpoint(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM checkpoints WHERE job_id=?", (job_id,))

    # ---- reads -------------------------------------------------------------------------------
    def load_checkpoint(self, job_id: str, attempt: int) -> tuple[dict[str, Any], int] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT data, tiles_done FROM checkpoints WHERE job_id=? AND attempt=?",
                (job_id, attempt),
            ).fetchone()
        return None if row is None else (json.loads(row["data"]), row["tiles_done"])

    def workflows(self) -> list[Workflow]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM workflows ORDER BY created_at, id").fetchall()
        return [Workflow(r["id"], r["tenant"], r["name"], r["created_at"]) for r in rows]

    def jobs(self) -> list[Job]:
        """Every job, in creation order (dependencies before dependents)."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY rowid").fetchall()
        return [_row_job(r) for r in rows]

    def transitions(self, job_id: str | None = None) -> list[Transition]:
        query = "SELECT job_id, ts, state, attempt, reason FROM transitions"
        args: tuple[str, ...] = ()
        if job_id is not None:
            query += " WHERE job_id=?"
            args = (job_id,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY id", args).fetchall()
        return [
            Transition(r["job_id"], r["ts"], JobState(r["state"]), r["attempt"], r["reason"])
            for r in rows
        ]
