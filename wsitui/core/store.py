"""Durable engine state in SQLite (WAL): workflows, jobs, the transition timeline, checkpoints.

One connection guarded by a lock: the event loop writes transitions, executor threads write
checkpoints. Each public write is one transaction, committed before the caller publishes it.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from wsitui.core.records import Job, JobState, Transition, Workflow
from wsitui.core.rules import Needs, TenantRow

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
    enqueued INTEGER NOT NULL DEFAULT 1,
    stage TEXT NOT NULL DEFAULT '',
    counters TEXT NOT NULL DEFAULT '{}',
    crashes INTEGER NOT NULL DEFAULT 0,
    interrupted INTEGER NOT NULL DEFAULT 0,
    needs TEXT NOT NULL DEFAULT '{}'
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
CREATE TABLE IF NOT EXISTS tenants (  -- R3/R6 state: who is active, who waits, in which order
    tenant TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    ord INTEGER NOT NULL,
    served INTEGER NOT NULL,
    served_res TEXT NOT NULL DEFAULT '[]'  -- R6 per class: [[[[name, amount], ...], tick], ...]
);
CREATE TABLE IF NOT EXISTS resources (  -- the caps of the engine that last opened (R9)
    name TEXT PRIMARY KEY,
    cap INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (  -- 'id': this state's id, named by its event log lines
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    job_id TEXT PRIMARY KEY,
    attempt INTEGER NOT NULL,
    data TEXT NOT NULL,
    tiles_done INTEGER NOT NULL
);
"""

_JOB_COLUMNS = (
    "id, key, workflow_id, tenant, job_type, slide, branch, depends_on, params, state, "
    "tiles_done, tiles_total, attempt, error, created_at, started_at, finished_at, seq, enqueued, "
    "stage, counters, crashes, interrupted, needs"
)
# Columns added after the first release: an older state.db gains them on open.
_COLUMN_DEFAULTS = {
    "stage": "''",
    "counters": "'{}'",
    "crashes": "0",
    "interrupted": "0",
    "needs": "'{}'",
}
_ADDED_COLUMNS = {
    "stage": "TEXT NOT NULL DEFAULT ''",
    "counters": "TEXT NOT NULL DEFAULT '{}'",
    "crashes": "INTEGER NOT NULL DEFAULT 0",
    "interrupted": "INTEGER NOT NULL DEFAULT 0",
    "needs": "TEXT NOT NULL DEFAULT '{}'",  # resources it holds while running (R9)
}


class StoreError(Exception):
    """A one-line message naming the state database and what to do."""


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
        job.stage,
        json.dumps(job.counters, sort_keys=True),
        job.crashes,
        int(job.interrupted),
        json.dumps(job.needs, sort_keys=True),
    )


def _row_job(row: sqlite3.Row, path: Path) -> Job:
    """A job from its row; a row that does not parse is reported, never half-read."""
    try:
        return _parse_job(row)
    except (ValueError, TypeError, KeyError) as exc:  # json errors are ValueErrors
        raise StoreError(
            f"state database {path}: job row {row['id']!r} is corrupt ({_one_line(exc)}); "
            "restore a backup of state.db, or move it aside to start afresh"
        ) from None


def nothing_stored(path: Path) -> bool:
    """True when `path` holds no state yet: missing, empty, or a database without a single table
    (what a first start killed while creating it left before `_create` made creation whole).
    The engine's own open then creates the tables; a database with other tables is refused."""
    if not path.exists() or path.stat().st_size == 0:
        return True
    try:
        db = _connect_readonly(path)
        try:
            return db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is None
        finally:
            db.close()
    except sqlite3.Error:
        return False  # not a database: the open that follows says so in one line


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """Open for reading only. On read-only media (an archived data dir, a read-only mount)
    SQLite cannot make the `-shm` file WAL mode reads with, and even `mode=ro` fails ("unable
    to open database file"); with no `-wal` file beside it (the engine closed cleanly, so
    every commit is in the file itself) the file cannot change under us: open it immutable."""
    uri = path.resolve().as_uri()
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
    try:
        db.execute("SELECT 1 FROM sqlite_master LIMIT 1")
        return db
    except sqlite3.OperationalError:
        db.close()
        if not path.is_file() or path.with_name(path.name + "-wal").exists():
            raise
    return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, check_same_thread=False)


def _create(path: Path) -> None:
    """A new state database appears whole: its tables are written under a temporary name that
    is then renamed into place. A first start killed mid-creation leaves no `state.db` (a file
    without tables is refused by the next run's read-only look at the data dir), only a
    temporary file that the next creation removes."""
    tmp = path.with_name(path.name + ".new")
    for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
        leftover.unlink(missing_ok=True)
    db = sqlite3.connect(tmp, isolation_level=None)
    try:
        db.executescript(SCHEMA)
    finally:
        db.close()
    try:
        tmp.replace(path)
    except OSError as exc:
        raise sqlite3.OperationalError(f"cannot rename {tmp.name} into place: {exc}") from exc


FULL_BELOW = 1 << 20  # free bytes under which a disk counts as full (SQLite needs pages)


def _disk_full(path: Path) -> bool:
    """Whether the file system holding `path` (or its nearest existing parent) is full."""
    for where in (path, *path.parents):
        try:
            return shutil.disk_usage(where).free < FULL_BELOW
        except OSError:
            continue
    return False


_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26  # primary result codes (the low byte)


def _corrupt(exc: sqlite3.Error) -> bool:
    """Whether SQLite says the file is damaged ("malformed") or not a database at all."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _parse_job(row: sqlite3.Row) -> Job:
    depends_on = json.loads(row["depends_on"])
    params = json.loads(row["params"])
    counters = json.loads(row["counters"])
    if not isinstance(depends_on, list) or not isinstance(params, dict):
        raise ValueError("depends_on must be a list and params an object")
    needs = json.loads(row["needs"])
    if not isinstance(counters, dict) or not isinstance(needs, dict):
        raise ValueError("counters and needs must be objects")
    return Job(
        id=row["id"],
        key=row["key"],
        workflow_id=row["workflow_id"],
        tenant=row["tenant"],
        job_type=str(row["job_type"]),
        slide=row["slide"],
        branch=row["branch"],
        depends_on=tuple(str(d) for d in depends_on),
        params=params,
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
        stage=str(row["stage"]),
        counters={str(k): int(v) for k, v in counters.items()},
        crashes=int(row["crashes"]),
        interrupted=bool(row["interrupted"]),
        needs={str(k): int(v) for k, v in needs.items()},
    )


def _put_capacity(db: sqlite3.Connection, capacity: Mapping[str, int]) -> None:
    db.execute("DELETE FROM resources")
    db.executemany("INSERT INTO resources VALUES (?, ?)", sorted(capacity.items()))


def _served_res_text(row: TenantRow) -> str:
    return json.dumps([[[list(need) for need in needs], tick] for needs, tick in row.served_res])


def _parse_served_res(text: str) -> tuple[tuple[Needs, int], ...]:
    """Per-class service ticks (R6); an unreadable value counts as never served (a fairness
    order, never a reason to refuse the state database)."""
    try:
        return tuple(
            (tuple((str(name), int(amount)) for name, amount in needs), int(tick))
            for needs, tick in json.loads(text)
        )
    except (ValueError, TypeError):
        return ()


class Store:
    """`readonly=True` (for `wsitui status`) never creates, migrates or writes anything."""

    def __init__(
        self,
        path: Path,
        *,
        readonly: bool = False,
        capacity: Mapping[str, int] | None = None,
        results_root: Path | None = None,
    ) -> None:
        """`capacity`: the opening engine's resource caps (R9), kept for readers: `wsitui
        status` says from them what a ready job waits for (the GPU); `results_root`: where
        the opening engine writes results (`--out`, `[paths] results`), kept for `wsitui
        status` too (it found them only under DATA_DIR/results unless given `--out`)."""
        self.path = path
        self.readonly = readonly
        self._lock = threading.Lock()
        self._tenants: dict[str, TenantRow] = {}  # as last written
        try:
            if readonly:
                self._db = _connect_readonly(path)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                if not path.exists() or path.stat().st_size == 0:
                    _create(path)
                self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA busy_timeout=5000")
            if readonly:
                self._check_schema()
            else:
                self._db.execute("PRAGMA journal_mode=WAL")
                # NORMAL in WAL mode survives a process crash (SIGKILL); only power loss can
                # roll back the last transactions, and never corrupts the database.
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(SCHEMA)
                self._migrate()
                # A read-only file opens fine and fails only at the first write: find out now
                # with a write that changes nothing (the schema version, set to itself).
                version = self._db.execute("PRAGMA user_version").fetchone()[0]
                self._db.execute(f"PRAGMA user_version = {int(version)}")
                self._db.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('id', ?)",
                    (uuid.uuid4().hex[:12],),
                )
                if capacity is not None:
                    self._write(lambda db: _put_capacity(db, capacity))
                if results_root is not None:
                    self._write(
                        lambda db: db.execute(
                            "INSERT OR REPLACE INTO meta (key, value) VALUES ('results', ?)",
                            (str(results_root),),
                        )
                    )
            self._tenants = {r.tenant: r for r in self.tenant_rows()}
            # Made when the state is first opened to write; a copy of the data dir keeps it.
            # The event log names it on each line (`data_dir_id`), so runs sharing one log
            # read back only their own lines. None: an older state.db only read so far.
            self.data_dir_id: str | None = self._meta("id")
        except sqlite3.Error as exc:
            if _disk_full(path):  # SQLite says "disk I/O error": the database is fine
                raise StoreError(
                    f"state database {path} cannot be opened ({_one_line(exc)}): the disk "
                    "holding it is full; free space there (the state is kept) or pick another "
                    "--data-dir"
                ) from None
            raise StoreError(
                f"state database {path} cannot be opened ({_one_line(exc)}); move it aside or "
                "pick another --data-dir"
            ) from None

    def results_root(self) -> Path | None:
        """Where the last engine to open this state wrote results; None: not said (an older
        state.db, or one only read so far)."""
        value = self._meta("results")
        return Path(value) if value else None

    def _meta(self, key: str) -> str | None:
        if not self._db.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone():
            return None
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def _check_schema(self) -> None:
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
        missing = {"workflows", "jobs", "transitions", "checkpoints"} - tables
        if missing:
            raise StoreError(
                f"state database {self.path} holds no wsitui state (no {', '.join(sorted(missing))}"
                " table); run a config first, or point --data-dir at a wsitui data dir"
            )

    def _migrate(self) -> None:
        have = {r["name"] for r in self._db.execute("PRAGMA table_info(jobs)")}
        for name, decl in _ADDED_COLUMNS.items():
            if name not in have:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {decl}")
        have = {r["name"] for r in self._db.execute("PRAGMA table_info(tenants)")}
        if "served_res" not in have:
            self._db.execute("ALTER TABLE tenants ADD COLUMN served_res TEXT NOT NULL DEFAULT '[]'")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, statements: Callable[[sqlite3.Connection], None]) -> None:
        """Run `statements` in one transaction; any SQLite failure is a one-line StoreError."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    statements(self._db)
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:  # a failed COMMIT (disk full) rolled back
                        self._db.execute("ROLLBACK")  # already: a ROLLBACK then hid its error
                    raise
            except sqlite3.Error as exc:
                if _corrupt(exc):  # no permission or room would help: the reads' hint
                    raise StoreError(
                        f"state database {self.path} cannot be written ({_one_line(exc)}); "
                        "restore a backup of state.db, or move it aside to start afresh"
                    ) from None
                raise StoreError(
                    f"state database {self.path} cannot be written ({_one_line(exc)}); check "
                    "that the file and its folder are writable and the disk has room"
                ) from None

    # ---- writes: one transaction each --------------------------------------------------------
    def apply(
        self,
        jobs: Iterable[Job],
        transitions: Iterable[Transition] = (),
        workflow: Workflow | None = None,
        tenants: Iterable[TenantRow] | None = None,
        clear: Iterable[str] = (),
    ) -> None:
        """Upsert job rows, append their transitions, drop the checkpoints of jobs in `clear`
        and, if given, replace the tenant state: all in one transaction (one user command, one
        transaction)."""
        cleared = [(job_id,) for job_id in clear]
        job_rows = [_job_row(j) for j in jobs]
        transition_rows = [(t.job_id, t.ts, str(t.state), t.attempt, t.reason) for t in transitions]
        new_tenants = None if tenants is None else {r.tenant: r for r in tenants}

        def statements(db: sqlite3.Connection) -> None:
            if workflow is not None:
                db.execute(
                    "INSERT INTO workflows VALUES (?, ?, ?, ?)",
                    (workflow.id, workflow.tenant, workflow.name, workflow.created_at),
                )
            db.executemany(
                f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({', '.join('?' * 24)}) "
                "ON CONFLICT(id) DO UPDATE SET state=excluded.state, "
                "tiles_done=excluded.tiles_done, tiles_total=excluded.tiles_total, "
                "attempt=excluded.attempt, error=excluded.error, "
                "started_at=excluded.started_at, finished_at=excluded.finished_at, "
                "seq=excluded.seq, enqueued=excluded.enqueued, stage=excluded.stage, "
                "counters=excluded.counters, crashes=excluded.crashes, "
                "interrupted=excluded.interrupted, needs=excluded.needs",
                job_rows,
            )
            db.executemany(
                "INSERT INTO transitions (job_id, ts, state, attempt, reason) "
                "VALUES (?, ?, ?, ?, ?)",
                transition_rows,
            )
            db.executemany("DELETE FROM checkpoints WHERE job_id=?", cleared)
            if new_tenants is not None:
                gone = [(t,) for t in self._tenants if t not in new_tenants]
                db.executemany("DELETE FROM tenants WHERE tenant=?", gone)
                db.executemany(
                    "INSERT OR REPLACE INTO tenants (tenant, status, ord, served, served_res) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [
                        (r.tenant, r.status, r.order, r.served, _served_res_text(r))
                        for r in new_tenants.values()
                        if self._tenants.get(r.tenant) != r
                    ],
                )

        self._write(statements)
        if new_tenants is not None:
            self._tenants = new_tenants

    def rewrite_params(self, params: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace stored jobs' params (job id -> params), in one transaction: only for params
        an earlier version stored laxly and the engine read anew (`JobValidator.upgraded`)."""
        rows = [(json.dumps(dict(p), sort_keys=True), job_id) for job_id, p in params.items()]
        self._write(lambda db: db.executemany("UPDATE jobs SET params=? WHERE id=?", rows))

    def save_checkpoint(
        self, job_id: str, attempt: int, data: Mapping[str, Any], tiles_done: int, tiles_total: int
    ) -> None:
        """Progress is durable; a job that checkpoints is not a poison job (crashes reset).
        The job row gets the done count and the total together: a job resumed from this
        checkpoint shows a figure of the same moment (never "48 of 0")."""
        payload = json.dumps(dict(data), sort_keys=True)

        def statements(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO checkpoints VALUES (?, ?, ?, ?) ON CONFLICT(job_id) DO UPDATE SET "
                "attempt=excluded.attempt, data=excluded.data, tiles_done=excluded.tiles_done",
                (job_id, attempt, payload, tiles_done),
            )
            db.execute(
                "UPDATE jobs SET tiles_done=?, tiles_total=?, crashes=0 WHERE id=?",
                (tiles_done, tiles_total, job_id),
            )

        self._write(statements)

    def save_progress(self, job: Job) -> None:
        """A RUNNING job's progress, stage and counters, for readers of the database (`wsitui
        status`); no transition, and nothing else of the row (crashes stay as they are)."""
        self._write(
            lambda db: db.execute(
                "UPDATE jobs SET tiles_done=?, tiles_total=?, stage=?, counters=? "
                "WHERE id=? AND state='RUNNING'",
                (
                    job.tiles_done,
                    job.tiles_total,
                    job.stage,
                    json.dumps(dict(job.counters), sort_keys=True),
                    job.id,
                ),
            )
        )

    def clear_checkpoint(self, job_id: str) -> None:
        self._write(lambda db: db.execute("DELETE FROM checkpoints WHERE job_id=?", (job_id,)))

    # ---- reads -------------------------------------------------------------------------------
    def _read(self, query: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(query, args).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(
                    f"state database {self.path} cannot be read ({_one_line(exc)}); restore a "
                    "backup of state.db, or move it aside to start afresh"
                ) from None

    def load_checkpoint(self, job_id: str, attempt: int) -> tuple[dict[str, Any], int] | None:
        rows = self._read(
            "SELECT data, tiles_done FROM checkpoints WHERE job_id=? AND attempt=?",
            (job_id, attempt),
        )
        if not rows:
            return None
        try:
            data = json.loads(rows[0]["data"])
        except ValueError:
            return None  # an unreadable checkpoint means "start over", never a crash
        return (data, rows[0]["tiles_done"]) if isinstance(data, dict) else None

    def workflows(self) -> list[Workflow]:
        rows = self._read("SELECT * FROM workflows ORDER BY created_at, id")
        return [Workflow(r["id"], r["tenant"], r["name"], r["created_at"]) for r in rows]

    def jobs(self) -> list[Job]:
        """Every job, in creation order (dependencies before dependents)."""
        cols = _JOB_COLUMNS if not self.readonly else self._readable_columns()
        rows = self._read(f"SELECT {cols} FROM jobs ORDER BY rowid")
        return [_row_job(r, self.path) for r in rows]

    def _readable_columns(self) -> str:
        """Read-only: an older state.db may lack newer columns; read defaults for those."""
        have = {r["name"] for r in self._read("PRAGMA table_info(jobs)")}
        return ", ".join(
            c if c in have else f"{_COLUMN_DEFAULTS[c]} AS {c}"
            for c in (c.strip() for c in _JOB_COLUMNS.split(","))
        )

    def tenant_rows(self) -> list[TenantRow]:
        """Persisted tenant state (R3/R6); empty for a state.db older than it."""
        tables = {r[0] for r in self._read("SELECT name FROM sqlite_master")}
        if "tenants" not in tables:
            return []
        have = {r["name"] for r in self._read("PRAGMA table_info(tenants)")}
        res = "served_res" if "served_res" in have else "'[]' AS served_res"  # read-only, older
        rows = self._read(f"SELECT tenant, status, ord, served, {res} FROM tenants ORDER BY ord")
        return [
            TenantRow(
                r["tenant"], r["status"], r["ord"], r["served"], _parse_served_res(r["served_res"])
            )
            for r in rows
        ]

    def capacity(self) -> dict[str, int]:
        """The resource caps of the engine that last opened the data dir (R9); {} if unknown."""
        tables = {r[0] for r in self._read("SELECT name FROM sqlite_master")}
        if "resources" not in tables:
            return {}
        return {
            str(r["name"]): int(r["cap"]) for r in self._read("SELECT name, cap FROM resources")
        }

    def tenant_state(self) -> tuple[list[str], list[str]]:
        """(active tenants in admission order, waiting tenants in arrival order)."""
        rows = self.tenant_rows()
        return (
            [r.tenant for r in rows if r.status == "active"],
            [r.tenant for r in rows if r.status == "waiting"],
        )

    def transitions(self, job_id: str | None = None) -> list[Transition]:
        query = "SELECT job_id, ts, state, attempt, reason FROM transitions"
        args: tuple[str, ...] = ()
        if job_id is not None:
            query += " WHERE job_id=?"
            args = (job_id,)
        rows = self._read(query + " ORDER BY id", args)
        try:
            return [
                Transition(r["job_id"], r["ts"], JobState(r["state"]), r["attempt"], r["reason"])
                for r in rows
            ]
        except ValueError as exc:
            raise StoreError(
                f"state database {self.path}: a transition row is corrupt ({_one_line(exc)}); "
                "restore a backup of state.db, or move it aside to start afresh"
            ) from None
