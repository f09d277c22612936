from dataclasses import replace

import pytest

from tests.core.fakes import LooseParams
from wsitui.core.engine import Engine
from wsitui.core.events import JobProgress, JobStateChanged
from wsitui.core.executor import Executor, JobContext, JobError, Total
from wsitui.core.metrics import Metrics
from wsitui.core.records import Job, JobSpec, JobState, WorkflowSpec

T = 6_000_000.0  # a minute boundary (divisible by 60)


def job(state: JobState, started: float | None = None, finished: float | None = None, done=0):
    return Job(
        id="w.j", key="j", workflow_id="w", tenant="t", job_type="TISSUE_MASK",
        slide="s", branch="main", depends_on=(), params={}, state=state, tiles_done=done,
        tiles_total=100, started_at=started, finished_at=finished,
    )  # fmt: skip


def test_latency_per_minute_workers_and_tiles_per_second():
    m = Metrics(window_s=5.0)
    m(JobStateChanged(T + 1, job(JobState.RUNNING, T + 1), JobState.PENDING, "started"))
    m(JobProgress(T + 2, job(JobState.RUNNING, T + 1, done=40)))
    m(JobProgress(T + 3, job(JobState.RUNNING, T + 1, done=90)))
    assert m.tiles_per_second(T + 3) == 90 / 5.0
    assert m.tiles_per_second(T + 30) == 0.0  # old samples fall out of the window
    done = job(JobState.SUCCEEDED, T + 1, T + 121)
    m(JobStateChanged(T + 121, done, JobState.RUNNING, "completed"))
    lat = m.latency_per_minute(T + 121, minutes=3)
    assert lat == [0.0, 0.0, 120.0]  # the job ended in the third minute, took 120 s
    # One worker busy from minute 0 to minute 2 (the quiet minute 1 keeps the count).
    assert m.workers_per_minute(T + 121, minutes=3) == [1.0, 1.0, 1.0]
    assert m.running == 0


class _Counting(Executor):
    """Declares one total: the `found` counter its jobs report."""

    job_type = "COUNTING"
    totals = (Total("found", "wsitui_found_total", "Things found."),)


class _Quiet(Executor):
    """Reports a `found` counter too, but declares no total."""

    job_type = "QUIET"


def counted(state: JobState, kind: str, found: int, key: str = "j") -> Job:
    return replace(job(state, T), id=f"w.{key}", key=key, job_type=kind, counters={"found": found})


@pytest.mark.anyio
async def test_totals_sum_only_the_counters_each_job_type_declares(tmp_path):
    m = Metrics()
    m(JobStateChanged(T, counted(JobState.RUNNING, "COUNTING", 0), JobState.PENDING, "started"))
    m(JobProgress(T + 1, counted(JobState.RUNNING, "COUNTING", 40)))
    m(JobProgress(T + 2, counted(JobState.RUNNING, "COUNTING", 10)))  # a restart: new baseline
    m(JobProgress(T + 3, counted(JobState.RUNNING, "COUNTING", 25)))
    quiet = counted(JobState.RUNNING, "QUIET", 0, key="q")
    m(JobStateChanged(T, quiet, JobState.PENDING, "started"))
    m(JobProgress(T + 1, replace(quiet, counters={"found": 500})))
    async with Engine(tmp_path / "d", [_Counting(), _Quiet()]) as engine:
        ((total, n),) = metrics_totals = m.snapshot(engine).totals
    assert total.metric == "wsitui_found_total" and n == 40 + 15, metrics_totals


class _Shards(Executor):
    """Keeps a file per tile in its shards dir and, like SEGMENT_CELLS, counts those found
    there as done in its first report; its first attempt fails after 4 of 10 tiles."""

    params_model = LooseParams
    job_type = "COUNTING"
    totals = (Total("found", "wsitui_found_total", "Things found."),)

    async def run(self, ctx: JobContext) -> None:
        ctx.shards_dir.mkdir(parents=True, exist_ok=True)
        done = len(list(ctx.shards_dir.iterdir()))
        ctx.report(done, 10, {"found": 3 * done})
        for tile in range(done, 10):
            if ctx.job.attempt == 1 and tile == 4:
                raise JobError("the first attempt stops here")
            (ctx.shards_dir / f"{tile}.bin").write_bytes(b"x")
            ctx.report(tile + 1, 10, {"found": 3 * (tile + 1)})


def spec() -> JobSpec:
    return JobSpec(id="j", type="COUNTING", slide="s")


@pytest.mark.anyio
async def test_a_run_that_starts_from_kept_shards_does_not_count_them_again(tmp_path):
    """A retried (or, after kill -9, resumed) SEGMENT_CELLS job reuses its valid shards and
    reports them at once: wsitui_tiles_processed_total and the cells total counted those
    tiles twice (here 14 tiles, 42 found, for a job of 10 tiles and 30 found)."""
    m = Metrics()
    async with Engine(tmp_path / "d", [_Shards()]) as engine:
        engine.bus.add_listener(m)
        job_id = engine.submit("t", WorkflowSpec(name="w", jobs=(spec(),))).jobs[0].id
        await engine.wait_until(lambda: engine.job("t", job_id).state is JobState.FAILED)
        engine.retry("t", job_id)
        await engine.wait_until(lambda: engine.job("t", job_id).state is JobState.SUCCEEDED)
        snap = m.snapshot(engine)
    assert snap.tiles == {"COUNTING": 10}
    assert [n for _, n in snap.totals] == [30]
