"""The endpoint after a run and its formats: a headless run keeps `/metrics` up for a last
scrape of the final counts (never after Ctrl-C, never once a signal comes), and a scrape that
asks for OpenMetrics gets it."""

from __future__ import annotations

import os
import signal
import threading
import urllib.request
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.headless.helpers import one_job_config
from wsitui.core.metrics import Metrics
from wsitui.observability.prometheus import registry_for
from wsitui.observability.server import MetricsServer, bind
from wsitui.observability.setup import Observability, ObserveOptions
from wsitui.session.session import SessionOptions, prepare_session

pytestmark = pytest.mark.anyio


def _get(url: str, accept: str | None = None) -> tuple[str, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers["Content-Type"], response.read().decode()


class _IdleEngine:
    """What Observability reads of an engine: its metrics and whether the run finished."""

    def __init__(self, idle: bool) -> None:
        self.idle = idle

    def is_idle(self) -> bool:
        return self.idle


def _server(engine: object) -> MetricsServer:
    metrics = Metrics()
    return MetricsServer(bind("127.0.0.1", 0), registry_for(lambda: metrics.snapshot(engine)))


async def test_openmetrics_is_served_when_the_scrape_asks_for_it(tmp_path: Path):
    from wsitui.core.engine import Engine

    async with Engine(tmp_path / "d", []) as engine:
        server = _server(engine)
        await server.start()
        try:
            om = "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5"
            ctype, body = await anyio.to_thread.run_sync(_get, server.url, om)
            plain_type, plain = await anyio.to_thread.run_sync(_get, server.url)
        finally:
            await server.aclose()
    assert ctype.startswith("application/openmetrics-text") and body.endswith("# EOF\n")
    assert plain_type.startswith("text/plain") and "# EOF" not in plain
    assert "wsitui_running_jobs 0" in body


async def test_a_finished_run_keeps_the_endpoint_up_for_a_last_scrape(tmp_path: Path, sample_slide):
    session = prepare_session(
        SessionOptions(
            config=one_job_config(tmp_path / "c.toml", sample_slide),
            data_dir=tmp_path / "data",
            observe=ObserveOptions(metrics_port=0, metrics_linger=600),
        )
    )
    server = session.observability.server
    assert server is not None
    run_over = threading.Event()
    final: list[str] = []

    def last_scrape() -> None:  # a scraper that comes by after the run ended
        run_over.wait(120)
        final.append(_get(server.url)[1])

    scraper = threading.Thread(target=last_scrape, daemon=True)
    scraper.start()
    try:
        with anyio.fail_after(300):  # lingering ends with that scrape, not after 600 s
            async with session.open(start=True):
                await session.engine.wait_idle()
                run_over.set()
    finally:
        session.close()
    scraper.join(30)
    assert final, "the endpoint closed as the run ended"
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(final[0])
        for s in f.samples
    }
    ok = (("job_type", "TISSUE_MASK"), ("state", "SUCCEEDED"))
    assert got[("wsitui_jobs_finished_total", ok)] == 1  # the final counts


async def test_an_interrupted_run_does_not_linger(tmp_path: Path):
    obs = Observability(_IdleEngine(idle=False), ObserveOptions(metrics_port=0, metrics_linger=600))
    try:
        await obs.start()
        with anyio.fail_after(30):  # jobs still running (Ctrl-C): close at once
            await obs.aclose()
    finally:
        obs.close()


async def test_a_signal_ends_the_linger_at_once(tmp_path: Path):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    server = _server(_IdleEngine(idle=True))
    await server.start()
    before = signal.getsignal(signal.SIGINT)
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    try:
        timer.start()
        with anyio.fail_after(60):  # not the 600 s asked for
            await server.linger(600)
    finally:
        timer.cancel()
        await server.aclose()
    assert signal.getsignal(signal.SIGINT) is before  # the face's own handler is back
