"""`wsitui status` reads a data dir on read-only media (an archived run, a read-only mount):
SQLite cannot make the `-shm` file there, and even a read-only open failed with "unable to open
database file; move it aside" (seen on a read-only tmpfs)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from tests.tui.fakes import ScriptedExecutor
from wsitui.core import store as store_module
from wsitui.core.engine import Engine
from wsitui.core.records import JobSpec, WorkflowSpec
from wsitui.core.store import Store, StoreError


async def _stored(data: Path) -> None:
    async with Engine(data, [ScriptedExecutor()]) as engine:
        job = JobSpec(id="x", type="TISSUE_MASK", slide="/s.svs")
        engine.submit("alice", WorkflowSpec(name="w", jobs=(job,)), start=False)


def _as_on_a_read_only_mount(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """SQLite as on a read-only file system: a WAL database opens only `immutable`."""
    real = sqlite3.connect
    opened: list[str] = []

    def connect(target: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(target)
        if "immutable=1" in target:
            return real(target, *args, **kwargs)

        class NoShm:  # opens, then fails at the first read (no -shm file can be made)
            def execute(self, *a: object) -> None:
                raise sqlite3.OperationalError("unable to open database file")

            def close(self) -> None:
                pass

        return NoShm()

    monkeypatch.setattr(store_module.sqlite3, "connect", connect)
    return opened


def test_a_cleanly_closed_state_db_is_read_on_read_only_media(tmp_path, monkeypatch):
    anyio.run(_stored, tmp_path / "data")
    db = tmp_path / "data" / "state.db"
    assert not db.with_name("state.db-wal").exists()  # a clean close leaves every commit in it
    opened = _as_on_a_read_only_mount(monkeypatch)
    store = Store(db, readonly=True)
    try:
        assert [j.key for j in store.jobs()] == ["x"]
    finally:
        store.close()
    assert opened[-1].endswith("?mode=ro&immutable=1")


def test_with_a_wal_beside_it_it_is_not_read_immutable(tmp_path, monkeypatch):
    # Commits may sit in the -wal file: an immutable open would show stale state, silently.
    anyio.run(_stored, tmp_path / "data")
    db = tmp_path / "data" / "state.db"
    db.with_name("state.db-wal").write_bytes(b"")
    _as_on_a_read_only_mount(monkeypatch)
    with pytest.raises(StoreError, match="unable to open database file"):
        Store(db, readonly=True)
