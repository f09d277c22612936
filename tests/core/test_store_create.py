"""A first start stopped while it creates `state.db` (a kill -9 in its first second) must not
leave a `state.db` without tables: the next `wsitui run` looks at the data dir read-only before
it opens the engine, and refused such a file for good ("holds no wsitui state") until the
user deleted it. Found by killing `wsitui run` at random points of a run and running it again.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from wsitui.core import store as store_module
from wsitui.core.store import Store, StoreError


def test_a_first_start_stopped_mid_creation_leaves_no_state_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    db = tmp_path / "state.db"
    # The creation stops before any table is written, as a kill after the WAL switch did.
    monkeypatch.setattr(store_module, "SCHEMA", "CREATE TABLE (;" + store_module.SCHEMA)
    with pytest.raises(StoreError):
        Store(db)
    assert not db.exists()  # none: the next run starts afresh
    monkeypatch.undo()
    Store(db).close()  # and the next start creates it whole
    tables = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master")}
    assert {"workflows", "jobs", "transitions", "checkpoints", "tenants"} <= tables
    reader = Store(db, readonly=True)
    assert reader.workflows() == [] and reader.jobs() == []
    reader.close()


def test_a_new_state_db_is_created_in_wal_mode(tmp_path: Path):
    Store(tmp_path / "state.db").close()
    mode = sqlite3.connect(tmp_path / "state.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert [p.name for p in tmp_path.iterdir() if ".new" in p.name] == []  # nothing left over
