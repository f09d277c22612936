"""A job that recovery fails when the engine opens (a poison job: it died alone twice; an unfit
one: a stored GPU job on an engine with gpu = 0) may be its tenant's last live work. Found by
the qa14 scenarios (`wsitui run` killed twice while one job ran): the tenant then left the
active set without a `tenant_released` event, so the log showed two active tenants under a cap
of one, and its dependant was never logged as blocked (README: Scheduling
rules, R3/R4; Machine-readable output)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from tests.core.crash import snapshot
from tests.core.engine_helpers import job, until
from tests.core.fakes import GatedExecutor
from tests.core.oracle import check, read_events
from wsitui.core.engine import Engine
from wsitui.core.eventlog import JsonlEventLog
from wsitui.core.executor import Executor
from wsitui.core.records import JobSpec, JobState, WorkflowSpec

pytestmark = pytest.mark.anyio


def wf(*jobs: JobSpec) -> WorkflowSpec:
    return WorkflowSpec(name="w", jobs=jobs)


def attach(engine: Engine, log: Path) -> JsonlEventLog:
    """The log a `wsitui run` would append to, for this engine's life."""
    events = JsonlEventLog(log)
    engine.bus.add_listener(events)
    return events


async def crash_while_running(
    engine: Engine, log: Path, job_id: str, dest: Path
) -> Path:  # a SIGKILL while `job_id` runs: the state as committed, the log as written
    events = attach(engine, log)
    async with engine:
        await until(engine, lambda: job_id in engine._runs)
        copy = snapshot(engine, dest)
        engine.bus.remove_listener(events)  # what the stop does after the "kill" is not logged
        events.close()
    return copy


def tenant_events(log: Path) -> list[tuple[str, str]]:
    return [
        (e["event"], e.get("tenant", ""))
        for e in read_events([log])
        if e["event"] in ("tenant_admitted", "tenant_released")
    ]


async def finish_the_rest(engine: Engine, ex: GatedExecutor, u1: str, after: str) -> None:
    """u, who waited, is admitted in t's place and runs; t's dependant stays blocked."""
    await until(engine, lambda: u1 in engine._runs)
    assert engine.stats().active == ("u",)
    ex.release(u1)
    await until(engine, engine.is_idle)
    assert engine._jobs[after].blocked and engine._jobs[after].state is JobState.PENDING


async def poison_run(tmp_path: Path) -> Path:
    """t's x dies alone twice (two crash copies), so the third engine fails it at open; u
    waited for t's slot. Returns the log."""
    ex, log = GatedExecutor(), tmp_path / "ev.jsonl"

    def engine(data_dir: Path) -> Engine:
        return Engine(data_dir, [ex], max_workers=1, max_active_users=1)

    first = engine(tmp_path / "d")
    attach_submit = attach(first, log)
    async with first:
        # y fails before the crashes (y_after blocked then); x is the poison job.
        w = first.submit(
            "t",
            wf(job("y", "C"), job("y_after", "D", ("y",)), job("x"), job("after", "B", ("x",))),
        )
        u1 = first.submit("u", wf(job("u1"))).jobs[0].id
        y, _, x, after = (j.id for j in w.jobs)
        await until(first, lambda: y in first._runs)
        ex.release(y, "fail")
        await until(first, lambda: x in first._runs)
        crash1 = snapshot(first, tmp_path / "crash1")
        first.bus.remove_listener(attach_submit)
        attach_submit.close()
    crash2 = await crash_while_running(engine(crash1), log, x, tmp_path / "crash2")
    third = engine(crash2)
    events = attach(third, log)
    async with third:
        assert third._jobs[x].state is JobState.FAILED  # died alone twice: poison
        await finish_the_rest(third, ex, u1, after)
    events.close()
    return log


async def test_a_poison_job_failed_at_open_releases_its_tenant_in_the_log(tmp_path: Path):
    log = await poison_run(tmp_path)
    assert tenant_events(log) == [
        ("tenant_admitted", "t"),
        ("tenant_released", "t"),  # after x's FAILED line: nothing of t can run
        ("tenant_admitted", "u"),
        ("tenant_released", "u"),
    ]
    oracle = check(read_events([log]), max_workers=1, max_active_users=1, strict=True)
    assert oracle.violations == []


async def test_an_unfit_gpu_job_failed_at_open_releases_its_tenant_in_the_log(tmp_path: Path):
    from tests.core.test_engine_defects import Gpu

    cpu, log = GatedExecutor(), tmp_path / "ev.jsonl"

    def engine(data_dir: Path, gpu: Executor, **kw: object) -> Engine:
        return Engine(data_dir, [cpu, gpu], max_workers=2, max_active_users=1, **kw)  # type: ignore[arg-type]

    first = engine(tmp_path / "d", gpu := Gpu())
    events = attach(first, log)
    async with first:
        cells = JobSpec(id="g", type="SEGMENT_CELLS", slide="s", branch="G")
        w = first.submit("t", wf(cells, job("after", deps=("g",))))
        u1 = first.submit("u", wf(job("u1"))).jobs[0].id
        g, after = (j.id for j in w.jobs)
        await until(first, lambda: g in first._runs)
        crashed = snapshot(first, tmp_path / "crash")
        first.bus.remove_listener(events)
        events.close()
        gpu.gates.setdefault(g, anyio.Event()).set()
    second = engine(crashed, Gpu(), resources={"gpu": 0})
    events = attach(second, log)
    async with second:
        assert second._jobs[g].state is JobState.FAILED  # needs a GPU this engine has not
        await finish_the_rest(second, cpu, u1, after)
    events.close()
    assert tenant_events(log) == [
        ("tenant_admitted", "t"),
        ("tenant_released", "t"),
        ("tenant_admitted", "u"),
        ("tenant_released", "u"),
    ]
    assert check(read_events([log]), max_workers=2, max_active_users=1).violations == []


async def test_a_dependant_blocked_by_a_job_failed_at_open_is_logged_blocked_once(tmp_path: Path):
    # The log says every block when it happens (README: Machine-readable output): after's
    # comes with the open that fails x, after x's FAILED line; y_after's came when y failed
    # and is not said again at each open.
    log = await poison_run(tmp_path)
    blocked: dict[str, list[int]] = {}
    failed_at = 0
    for n, e in enumerate(read_events([log])):
        if e["event"] == "job_state" and e["reason"].startswith("blocked:"):
            blocked.setdefault(e["job_id"].split(".")[-1], []).append(n)
        if e["event"] == "job_state" and e["reason"].startswith("failed: crashed the process"):
            failed_at = n
    assert sorted(blocked) == ["after", "y_after"]
    assert len(blocked["y_after"]) == 1
    assert len(blocked["after"]) == 1 and blocked["after"][0] > failed_at > 0
