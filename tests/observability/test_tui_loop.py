"""The metrics endpoint served from the TUI's own event loop (Textual's), as `tui_main` wires
it: the session's listeners on the app, the server started from the app's startup hook."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.tui.helpers import app_ready
from wsitui.core.engine import Engine
from wsitui.observability.setup import ObserveOptions
from wsitui.session.session import SessionOptions, prepare_session

pytestmark = pytest.mark.anyio


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        s.name + str(sorted(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


async def test_the_tui_serves_metrics_from_its_own_loop(tmp_path: Path):
    from wsitui.tui.app import WsituiApp

    session = prepare_session(
        SessionOptions(data_dir=tmp_path / "data", observe=ObserveOptions(metrics_port=0))
    )
    server = session.observability.server
    assert server is not None

    def startup(engine: Engine) -> None:
        session.observability.start_soon()

    app = WsituiApp(
        session.engine,
        tenant="alice",
        startup=startup,
        listeners=session.listeners(),
        sample_dir=tmp_path / "samples",
    )
    try:
        async with app.run_test(size=(120, 40)):
            with anyio.fail_after(30):
                await app_ready(app)
                got = await anyio.to_thread.run_sync(scrape, server.url)
            stats = session.engine.stats()
            assert got["wsitui_running_jobs[]"] == stats.running
            assert got["wsitui_workers[('state', 'free')]"] == stats.max_workers
            assert got["wsitui_submissions_total[('outcome', 'admitted')]"] == 0
    finally:
        session.close()
