from __future__ import annotations

import fcntl
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tui.fakes import ScriptedExecutor
from wsitui.core.engine import Engine
from wsitui.tui.app import WsituiApp

T0 = 1_795_000_000.0  # a fixed "now" so elapsed/ETA and timestamps are stable


@pytest.fixture(autouse=True)
def stable_terminal_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TEXTUAL_THEME", raising=False)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    time.tzset()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def snapshot_dir() -> Iterator[Path]:
    """A fixed data dir path: job detail shows output paths, which must not vary by run. Two
    test runs on one machine take turns with it (a lock file beside it): sharing it, one run's
    engine found the data dir held by the other's, its app exited, and the test hung."""
    path = Path(tempfile.gettempdir()) / "wsitui-tui-snapshot"
    with path.with_name(path.name + ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        shutil.rmtree(path, ignore_errors=True)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
            fcntl.flock(lock, fcntl.LOCK_UN)


def make_app(
    data_dir: Path,
    *,
    tenant: str = "alice",
    max_workers: int = 4,
    max_active_users: int = 3,
    executor: ScriptedExecutor | None = None,
    clock: Clock | None = None,
    catch_signals: bool = False,
) -> tuple[WsituiApp, ScriptedExecutor, Clock]:
    executor = executor or ScriptedExecutor()
    clock = clock or Clock()
    counter = iter(range(1, 10_000))
    engine = Engine(
        data_dir,
        [executor],
        max_workers=max_workers,
        max_active_users=max_active_users,
        clock=clock,
        new_id=lambda: f"wf{next(counter):04d}",
    )
    app = WsituiApp(engine, tenant=tenant, image_protocol="halfcell", catch_signals=catch_signals)
    return app, executor, clock
