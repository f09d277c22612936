"""Crash simulation for engine tests: copy the committed state at an instant, as SIGKILL would
leave it, and open a new engine on the copy.

A real SIGKILL test runs in a subprocess (test_engine_durability.py); these copies let a test
"crash" after every single commit of a scenario, which a kill at a random time rarely hits.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from wsitui.core.engine import Engine
from wsitui.core.store import Store


def snapshot(engine: Engine, dest: Path) -> Path:
    """Copy `engine`'s committed state into a new data dir `dest` (what a kill would leave)."""
    dest.mkdir(parents=True)
    src = sqlite3.connect(engine.data_dir / "state.db")
    dst = sqlite3.connect(dest / "state.db")
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    if engine.results_root.exists():
        shutil.copytree(engine.results_root, dest / "results")
    return dest


@contextmanager
def snapshot_every_commit(engine: Engine, root: Path) -> Iterator[list[Path]]:
    """While active, copy the state after every store transaction into `root/NNN`."""
    copies: list[Path] = []
    store = engine.store
    apply = store.apply

    def apply_and_copy(*args: object, **kwargs: object) -> None:
        apply(*args, **kwargs)  # type: ignore[arg-type]
        copies.append(snapshot(engine, root / f"{len(copies):03d}"))

    store.apply = apply_and_copy  # type: ignore[method-assign]
    try:
        yield copies
    finally:
        store.apply = apply  # type: ignore[method-assign]


@contextmanager
def snapshot_every_commit_from_open(engine: Engine, root: Path) -> Iterator[list[Path]]:
    """Like `snapshot_every_commit`, for an engine not open yet: from its first commit on,
    recovery's included (hooked in when it opens its store)."""
    copies: list[Path] = []

    def hook(store: Store) -> None:
        apply = store.apply

        def apply_and_copy(*args: object, **kwargs: object) -> None:
            apply(*args, **kwargs)  # type: ignore[arg-type]
            copies.append(snapshot(engine, root / f"{len(copies):03d}"))

        store.apply = apply_and_copy  # type: ignore[method-assign]

    engine.on_open.append(hook)
    try:
        yield copies
    finally:
        engine.on_open.remove(hook)


@contextmanager
def kill_at_every_commit(
    engine: Engine, root: Path, log: Path
) -> Iterator[list[tuple[Path, bytes]]]:
    """Like `snapshot_every_commit_from_open`, with the event log as a kill right after each
    commit leaves it: (state copy, `log`'s bytes before that commit's events were written).
    The copy's log is left for the test to write (it may want another file there)."""
    cuts: list[tuple[Path, bytes]] = []

    def hook(store: Store) -> None:
        apply = store.apply

        def apply_and_copy(*args: object, **kwargs: object) -> None:
            apply(*args, **kwargs)  # type: ignore[arg-type]
            written = log.read_bytes() if log.exists() else b""
            cuts.append((snapshot(engine, root / f"{len(cuts):03d}"), written))

        store.apply = apply_and_copy  # type: ignore[method-assign]

    engine.on_open.append(hook)
    try:
        yield cuts
    finally:
        engine.on_open.remove(hook)
