"""The Prometheus endpoint scraped during a run: every value matches the engine and the one
snapshot the TUI's metrics screen reads."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from tests.core.fakes import GatedExecutor, LooseParams
from wsitui.core.admission import Limits
from wsitui.core.engine import Engine, RateLimited
from wsitui.core.executor import Executor, JobContext
from wsitui.core.metrics import Metrics
from wsitui.core.records import JobSpec, JobState, WorkflowSpec
from wsitui.jobs.registry import SegmentCellsExecutor
from wsitui.observability.prometheus import METRICS, registry_for
from wsitui.observability.server import MetricsServer, bind

pytestmark = pytest.mark.anyio


class CellsExecutor(Executor):
    """Reports 40 cells at 5 of 10 tiles, waits to be released, ends at 100 cells."""

    params_model = LooseParams
    job_type = "SEGMENT_CELLS"
    totals = SegmentCellsExecutor.totals  # the counter the real one declares: cells found

    def __init__(self) -> None:
        self.gate = anyio.Event()

    def resources(self, params: BaseModel) -> Mapping[str, int]:
        return {"gpu": 1}

    def capacity(self) -> Mapping[str, int]:
        return {"gpu": 2}

    async def run(self, ctx: JobContext) -> None:
        ctx.report(5, 10, {"cells": 40})
        await self.gate.wait()
        ctx.report(10, 10, {"cells": 100})


def job(key: str, branch: str, kind: str = "TISSUE_MASK") -> JobSpec:
    return JobSpec(id=key, type=kind, slide="s.svs", branch=branch)


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    def get() -> str:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/plain")
            return response.read().decode()

    text = await anyio.to_thread.run_sync(get)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_scraped_values_match_the_engine_during_and_after_a_run(tmp_path: Path):
    masks, cells = GatedExecutor(), CellsExecutor()
    engine = Engine(
        tmp_path / "d",
        [masks, cells],
        max_workers=2,
        max_active_users=1,
        limits=Limits(rate=1.0, burst=3),
    )
    metrics = Metrics()
    engine.bus.add_listener(metrics)
    server = MetricsServer(bind("127.0.0.1", 0), registry_for(lambda: metrics.snapshot(engine)))
    async with engine:
        await server.start()
        try:
            alice = engine.submit(
                "alice",
                WorkflowSpec(
                    name="w",
                    jobs=(job("m1", "A"), job("m2", "A"), job("c", "B", "SEGMENT_CELLS")),
                ),
            )
            engine.submit("bob", WorkflowSpec(name="b", jobs=(job("x", "A"),)))  # waits
            engine.submit("bob", WorkflowSpec(name="held", jobs=(job("y", "C"),)), start=False)
            with pytest.raises(RateLimited):  # bob's third submission (f0) is his last
                for i in range(3):
                    engine.submit("bob", WorkflowSpec(name=f"f{i}", jobs=(job("z", "C"),)))
            m1, m2, c = (j.id for j in alice.jobs)
            with anyio.fail_after(10):
                await engine.wait_until(lambda: engine.job("alice", c).tiles_done == 5)

            during = await scrape(server.url)
            stats = engine.stats()
            assert stats.running == 2 and stats.active == ("alice",) and stats.waiting == ("bob",)
            assert value(during, "wsitui_running_jobs") == stats.running
            assert value(during, "wsitui_workers", state="busy") == stats.running
            assert value(during, "wsitui_workers", state="free") == stats.max_workers - 2
            assert value(during, "wsitui_queued_jobs") == stats.queued == 3  # m2, x, f0's z
            assert value(during, "wsitui_branch_queued_jobs", branch="A") == 2
            assert value(during, "wsitui_branch_queued_jobs", branch="C") == 1
            assert value(during, "wsitui_pending_jobs") == 4  # and bob's held y
            assert value(during, "wsitui_tenants", state="active") == len(stats.active)
            assert value(during, "wsitui_tenants", state="waiting") == len(stats.waiting)
            used, cap = stats.resources["gpu"]
            assert value(during, "wsitui_resource_used", resource="gpu") == used == 1
            assert value(during, "wsitui_resource_capacity", resource="gpu") == cap == 2
            assert value(during, "wsitui_tiles_processed_total", job_type="SEGMENT_CELLS") == 5
            assert value(during, "wsitui_cells_found_total") == 40
            assert value(during, "wsitui_submissions_total", outcome="rate_limited") == 1
            assert value(during, "wsitui_submissions_total", outcome="admitted") == 4
            # Queue wait is observed at each start: two jobs have started.
            waits = sum(
                value(during, "wsitui_job_queue_wait_seconds_count", job_type=t)
                for t in ("TISSUE_MASK", "SEGMENT_CELLS")
            )
            assert waits == 2

            masks.release(m1, "fail")
            cells.gate.set()
            with anyio.fail_after(10):
                await engine.wait_until(lambda: engine.job("alice", c).state.terminal)
                await engine.wait_until(lambda: engine.job("alice", m2).state is JobState.RUNNING)
            masks.release(m2)
            with anyio.fail_after(10):
                await engine.wait_until(lambda: engine.stats().running == 1)  # bob's x
            after = await scrape(server.url)
            snap = metrics.snapshot(engine)  # what the TUI's metrics screen reads
            ok = ("job_type", "TISSUE_MASK"), ("state", "SUCCEEDED")
            assert after[("wsitui_jobs_finished_total", ok)] == 1
            assert value(after, "wsitui_jobs_finished_total", job_type="TISSUE_MASK",
                         state="FAILED") == 1  # fmt: skip
            assert value(after, "wsitui_jobs_finished_total", job_type="SEGMENT_CELLS",
                         state="SUCCEEDED") == 1  # fmt: skip
            totals = {total.metric: n for total, n in snap.totals}
            assert value(after, "wsitui_cells_found_total") == totals["wsitui_cells_found_total"]
            assert totals["wsitui_cells_found_total"] == 100
            assert value(after, "wsitui_tiles_processed_total", job_type="SEGMENT_CELLS") == 10
            assert value(after, "wsitui_running_jobs") == engine.stats().running == snap.running
            assert value(after, "wsitui_tenants", state="active") == snap.tenants_active == 1
            for kind, n in (("TISSUE_MASK", 2), ("SEGMENT_CELLS", 1)):
                count = value(after, "wsitui_job_latency_seconds_count", job_type=kind)
                assert count == snap.latency[kind].count == n
                assert value(after, "wsitui_job_latency_seconds_bucket", job_type=kind,
                             le="+Inf") == n  # fmt: skip
            # Every family the docs list is served, and nothing else.
            names = {n for n, _ in after}
            for name, _, _, _ in METRICS:
                base = name.removesuffix("_total")
                assert any(n == name or n.startswith(base) for n in names), name
        finally:
            await server.aclose()
    with pytest.raises(urllib.error.URLError):  # the port is released with the session
        await scrape(server.url)


async def test_only_metrics_paths_are_served_and_garbage_is_survived(tmp_path: Path):
    engine = Engine(tmp_path / "d", [GatedExecutor()])
    metrics = Metrics()
    server = MetricsServer(bind("127.0.0.1", 0), registry_for(lambda: metrics.snapshot(engine)))
    async with engine:
        await server.start()
        try:
            with pytest.raises(urllib.error.HTTPError, match="404"):
                await anyio.to_thread.run_sync(
                    lambda: urllib.request.urlopen(server.url.replace("/metrics", "/x"))
                )
            stream = await anyio.connect_tcp(server.host, server.port)
            await stream.send(b"\x00\xff garbage without an end" * 10)
            await stream.aclose()
            assert value(await scrape(server.url), "wsitui_running_jobs") == 0
        finally:
            await server.aclose()


def test_a_port_in_use_is_one_line_naming_it():
    taken = bind("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        with pytest.raises(
            Exception, match=rf"^metrics endpoint 127.0.0.1:{port}: .*--metrics-port"
        ):
            bind("127.0.0.1", port)
    finally:
        taken.close()
