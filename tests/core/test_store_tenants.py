"""Scheduling state in state.db (tenants R3/R6, interrupted jobs), and databases older than it."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

from wsitui.core.records import Job, JobState, Workflow
from wsitui.core.rules import TenantRow
from wsitui.core.store import Store

GPU = (("gpu", 1),)


def test_per_class_service_round_trips(tmp_path: Path):
    store = Store(tmp_path / "state.db")
    row = TenantRow("A", "active", 1, 7, ((GPU, 5), ((("gpu", 2),), 6)))
    store.apply([], tenants=[row, TenantRow("B", "waiting", 2, -1)])
    store.close()
    assert Store(tmp_path / "state.db").tenant_rows()[0] == row


def test_a_state_db_older_than_per_class_service_opens_and_gains_it(tmp_path: Path):
    path = tmp_path / "state.db"
    Store(path).close()
    db = sqlite3.connect(path)
    with db:
        db.execute("ALTER TABLE tenants DROP COLUMN served_res")
        db.execute("INSERT INTO tenants VALUES ('A', 'active', 1, 3)")
    db.close()
    old = TenantRow("A", "active", 1, 3)
    assert Store(path, readonly=True).tenant_rows() == [old]  # `wsitui status` reads it
    store = Store(path)  # migrated on open
    assert store.tenant_rows() == [old]
    store.apply([], tenants=[TenantRow("A", "active", 1, 4, ((GPU, 4),))])
    assert store.tenant_rows()[0].served_res == ((GPU, 4),)


def test_an_unreadable_service_value_counts_as_never_served(tmp_path: Path):
    path = tmp_path / "state.db"
    Store(path).close()
    db = sqlite3.connect(path)
    with db:
        db.execute("INSERT INTO tenants VALUES ('A', 'active', 1, 3, '{not json')")
    db.close()
    assert Store(path).tenant_rows() == [TenantRow("A", "active", 1, 3)]


def test_a_state_db_older_than_the_interrupted_flag_reads_and_migrates(tmp_path: Path):
    path = tmp_path / "state.db"
    store = Store(path)
    job = Job("w.a", "a", "w", "t", "TISSUE_MASK", "s", "main", (), {}, JobState.PENDING)
    store.apply([job], workflow=Workflow("w", "t", "w", 0.0))
    store.close()
    db = sqlite3.connect(path)
    with db:
        db.execute("ALTER TABLE jobs DROP COLUMN interrupted")
    db.close()
    assert Store(path, readonly=True).jobs() == [job]  # `wsitui status` on an older file
    store = Store(path)
    store.apply([replace(job, interrupted=True)])  # migrated on open: the flag is kept
    assert store.jobs()[0].interrupted
