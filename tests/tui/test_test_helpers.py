"""The TUI tests' own helpers: a test whose app never gets ready fails, it does not hang."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tui.conftest import make_app
from tests.tui.helpers import app_ready
from wsitui.core.paths import DataDirLock

pytestmark = pytest.mark.anyio


async def test_waiting_for_an_app_whose_engine_never_opens_fails_instead_of_hanging(
    tmp_path: Path,
):
    # Another engine holds the data dir: the app exits with code 2 before it is ready. A bare
    # `await app.ready.wait()` waited forever there (a CI run hung 20 min on a snapshot test
    # while a second test run held the snapshot data dir).
    held = DataDirLock(tmp_path)
    held.acquire()
    try:
        app, _, _ = make_app(tmp_path)
        async with app.run_test(size=(80, 24)):
            with pytest.raises(AssertionError, match="code 2"):
                await app_ready(app, timeout=20)
    finally:
        held.release()
