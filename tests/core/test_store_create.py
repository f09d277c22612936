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


def test_a_state_db_without_tables_left_by_an_older_version_is_started_afresh(tmp_path: Path):
    # What a kill in a first start's first second left before `state.db` was created whole: a
    # database with no table at all. `wsitui run` refused that data dir for good ("holds no
    # wsitui state") until the user deleted the file; it holds nothing, so the run starts it.
    from tests.headless.helpers import one_job_config, wsitui

    data = tmp_path / "data"
    data.mkdir()
    db = sqlite3.connect(data / "state.db")
    db.execute("CREATE TABLE scratch (x)")
    db.execute("DROP TABLE scratch")  # a non-empty file with no table in it
    db.commit()
    db.close()
    assert (data / "state.db").stat().st_size > 0
    slide = tmp_path / "s.svs"
    assert wsitui("sample", slide, "--size", "1024x1024", "--seed", "3").returncode == 0
    out = wsitui("run", one_job_config(tmp_path / "c.toml", slide), "--data-dir", data)
    assert out.returncode == 0, out.stderr
    assert [w.name for w in Store(data / "state.db", readonly=True).workflows()] == ["w"]


def test_a_database_of_something_else_is_still_refused(tmp_path: Path):
    db_path = tmp_path / "state.db"
    db = sqlite3.connect(db_path)
    db.execute("CREATE TABLE photos (x)")
    db.commit()
    db.close()
    assert not store_module.nothing_stored(db_path)
    with pytest.raises(StoreError, match="holds no wsitui state"):
        Store(db_path, readonly=True)


def test_a_state_db_overwritten_with_garbage_gets_the_restore_hint_on_write(tmp_path: Path):
    """A write to a `state.db` turned to garbage under an open engine said "check that the file
    and its folder are writable and the disk has room", which no chmod or free space fixes;
    it gets the reads' hint, as SQLite says the file is damaged."""
    db = tmp_path / "state.db"
    store = Store(db)
    try:
        for path in (db, tmp_path / "state.db-wal"):
            path.write_bytes(bytes(range(256)) * (path.stat().st_size // 256 + 1))
        with pytest.raises(StoreError) as caught:
            store.clear_checkpoint("any")
    finally:
        store.close()
    message = str(caught.value)
    assert "restore a backup of state.db, or move it aside" in message
    assert "disk has room" not in message and "\n" not in message


def test_a_state_db_keeps_one_id_and_an_older_one_gets_it_at_its_next_open(tmp_path: Path):
    """The id event log lines name (`data_dir_id`): made once, kept across opens; a state.db
    from before it (no meta table) reads as None until an engine opens it to write."""
    db = tmp_path / "state.db"
    first = Store(db)
    made = first.data_dir_id
    first.close()
    second = Store(db)
    assert made and second.data_dir_id == made
    second.close()
    con = sqlite3.connect(db)
    con.execute("DROP TABLE meta")
    con.commit()
    con.close()
    reader = Store(db, readonly=True)
    assert reader.data_dir_id is None
    reader.close()
    again = Store(db)
    assert again.data_dir_id not in (None, made)
    again.close()
    reader = Store(db, readonly=True)
    assert reader.data_dir_id == again.data_dir_id
    reader.close()
