"""`wsitui run`'s bars in a terminal tell the truth at a glance whatever its height.

Found driving `wsitui run` in an 80x24 tmux pane on a config of 5 tenants x 2 workflows x 3
jobs (30 jobs, under the 60 where bars fold): 40 bars in 24 rows, Rich cropped the bottom, and
what showed was the waiting tenants' PENDING jobs (t1-t3, sorted first) while the running
tenants' bars (t4, t5) were below the fold: the screen said nothing was running."""

from __future__ import annotations

import io

import anyio
import pytest
from rich.console import Console

from tests.tui.fakes import ScriptedExecutor
from wsitui.core.engine import Engine
from wsitui.core.records import JobSpec, WorkflowSpec
from wsitui.headless.display import ProgressBars

pytestmark = pytest.mark.anyio

SLIDE = "s.svs"


def _spec(name: str, n: int) -> WorkflowSpec:
    jobs = tuple(JobSpec(id=f"j{i}", type="TISSUE_MASK", slide=SLIDE, branch="AB"[i % 2])
                 for i in range(n))  # fmt: skip
    return WorkflowSpec(name=name, jobs=jobs)


def _screen(bars: ProgressBars, width: int, height: int) -> list[str]:
    """What the terminal shows: the bars drawn the way Live draws them, cropped to height."""
    console = Console(file=io.StringIO(), width=width, height=height, color_system=None)
    console.print(bars.progress.make_tasks_table(bars.progress.tasks))
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    return lines


@pytest.mark.parametrize(("width", "height", "folded"), [(80, 24, True), (200, 60, False)])
async def test_run_bars_that_would_not_fit_the_terminal_are_a_bar_per_workflow(
    tmp_path, width, height, folded
):
    console = Console(
        file=io.StringIO(), width=width, height=height, force_terminal=True, color_system=None
    )
    bars = ProgressBars(console)
    ex = ScriptedExecutor()
    async with Engine(tmp_path / "data", [ex], max_workers=1, max_active_users=2) as engine:
        ids = []
        for tenant in ("t5", "t4", "t3", "t2", "t1"):
            for w in ("w0", "w1"):
                ids.append((tenant, engine.submit(tenant, _spec(w, 3)).workflow.id))
        engine.bus.add_listener(bars)
        bars.add([engine.workflow(t, i) for t, i in ids], engine.stats().waiting)
        lines = _screen(bars, width, height)
        text = "\n".join(lines)
        assert len(lines) <= height - 1, text  # Live keeps a row: nothing is cropped
        assert any("RUNNING" in line for line in lines), text  # what runs is on screen
        if folded:
            assert len(bars.progress.tasks) == 10, text  # a bar per workflow
            t5 = next(line for line in lines if line.startswith("t5 · w0"))
            assert "0/3 jobs done · 1 running" in t5, text
            t1 = next(line for line in lines if line.startswith("t1 · w0"))
            assert "3rd in line" in t1, text  # the folded bar of a waiting tenant says its place
            assert "WAITING" in t1 and "PENDING" not in t1, text
        else:
            assert len(bars.progress.tasks) == 40, text  # 40 bars fit 60 rows
        ex.release("j0")
        with anyio.fail_after(10):
            await engine.wait_until(lambda: engine.stats().running == 1)


async def test_a_waiting_tenants_folded_bars_say_its_place_until_admitted(tmp_path):
    """Past 60 jobs a bar per workflow counts its jobs; it said nothing of the tenant's place
    in line (the per-job bars did), so a waiting tenant read "0/70 jobs done · 0 running"."""
    console = Console(file=io.StringIO(), width=120, height=40, force_terminal=True)
    bars = ProgressBars(console)
    ex = ScriptedExecutor()
    async with Engine(tmp_path / "data", [ex], max_workers=1, max_active_users=1) as engine:
        ids = {t: engine.submit(t, _spec("big", 70)).workflow.id for t in ("alice", "bob")}
        engine.bus.add_listener(bars)
        bars.add([engine.workflow(t, i) for t, i in ids.items()], engine.stats().waiting)
        row = {t: next(x for x in bars.progress.tasks if x.id == bars._tasks[i])
               for t, i in ids.items()}  # fmt: skip
        assert row["alice"].fields["doing"] == "0/70 jobs done · 1 running"
        assert row["bob"].fields["doing"] == (
            "1st in line for a tenant slot · 0/70 jobs done · 0 running"
        )
        assert "WAITING" in row["bob"].fields["state"]
        for engine_job in engine.workflow("alice", ids["alice"]).jobs:
            engine.cancel("alice", engine_job.id)
        with anyio.fail_after(10):
            await engine.wait_until(lambda: engine.stats().active == ("bob",))
        assert row["bob"].fields["doing"] == "0/70 jobs done · 1 running"


async def test_more_workflow_bars_than_rows_show_the_running_ones_and_count_the_rest(tmp_path):
    """30 tenants of one job each on one worker: even a bar per workflow is 30 rows in 24, and
    the running tenant (t29, sorted last) was cropped. The bars shown are the running and
    failed ones first, the rest counted on the last row."""
    console = Console(
        file=io.StringIO(), width=80, height=24, force_terminal=True, color_system=None
    )
    bars = ProgressBars(console)
    ex = ScriptedExecutor()
    async with Engine(tmp_path / "data", [ex], max_workers=1, max_active_users=30) as engine:
        tenants = [f"t{i:02d}" for i in range(30)]
        ids = [(t, engine.submit(t, _spec("w", 1)).workflow.id) for t in reversed(tenants)]
        engine.bus.add_listener(bars)
        bars.add([engine.workflow(t, i) for t, i in ids], engine.stats().waiting)
        lines = _screen(bars, 80, 24)
        text = "\n".join(lines)
        assert len(lines) <= 23, text
        assert any(line.startswith("t29 · w") and "RUNNING" in line for line in lines), text
        assert "8 more: 8 pending" in lines[-1], text
        ex.release("j0")  # t29's job ends; t28's starts
        with anyio.fail_after(10):
            await engine.wait_until(lambda: engine.job("t28", ids[1][1] + ".j0").tiles_total > 0)
        lines = _screen(bars, 80, 24)
        text = "\n".join(lines)
        assert any(line.startswith("t28 · w") and "RUNNING" in line for line in lines), text
        assert "8 more: 7 pending, 1 succeeded" in lines[-1], text


async def test_a_workflow_bar_never_says_it_ends_before_a_job_of_it_that_runs(tmp_path):
    """Found in a 100-column tmux pane: bob's workflow read 0:00:23 left beside its running
    cells job's 0:01:00 (Rich reads a workflow's time left from its percent, which the end of
    a short mask job jumped; and 0:06:31 beside its last job's 0:00:33, past a failed job its
    percent never reaches 100 %). A workflow ends after its running jobs, never before, and
    with them when nothing else of it is to run; with one not measured yet, no one can say."""
    console = Console(file=io.StringIO(), width=120, height=40, force_terminal=True)
    bars = ProgressBars(console)
    now = [1000.0]
    bars.progress.get_time = lambda: now[0]  # the bars' clock, not the wall's
    ex = ScriptedExecutor()
    async with Engine(tmp_path / "data", [ex], max_workers=1) as engine:
        status = engine.submit("t", _spec("w", 2))
        bars.add([engine.workflow("t", status.workflow.id)])
        progress = bars.progress
        workflow, job = bars._tasks[status.workflow.id], bars._tasks[status.jobs[0].id]
        other = bars._tasks[status.jobs[1].id]
        progress.reset(other, start=False)  # j1 waits for the one worker
        for task in (workflow, job):
            progress.start_task(task)
        progress.update(job, total=55, completed=1)
        progress.update(workflow, completed=10)
        now[0] += 10
        progress.update(job, completed=10)  # 0.9 tiles/s: 45 tiles in 50 s
        progress.update(workflow, completed=60)  # the other job ended: 5 %/s, 8 s by Rich
        lines = _screen(bars, 120, 40)
        row = next(line for line in lines if line.startswith("t · w"))
        job_row = next(line for line in lines if line.lstrip().startswith("j0"))
        assert "0:00:50" in job_row, lines
        assert "0:00:50" in row and "0:00:08" not in row, lines
        progress.start_task(other)  # j1 runs too, not measured yet: no one can say
        assert "-:--:--" in next(x for x in _screen(bars, 120, 40) if x.startswith("t · w"))
        # j1 failed: the workflow never reaches 100 %, and j0 is all that is left to run.
        progress.stop_task(other)
        progress.update(other, to_run=False)
        now[0] += 5
        progress.update(job, completed=50)  # 49 tiles in 15 s: 5 left, 2 s
        row = next(x for x in _screen(bars, 120, 40) if x.startswith("t · w"))
        assert "0:00:02" in row and "0:00:08" not in row, row
        now[0] += 2
        progress.update(job, completed=55)  # its last tile: it writes its outputs, still runs
        now[0] += 10
        row = next(x for x in _screen(bars, 120, 40) if x.startswith("t · w"))
        assert "0:00:00" in row and "0:00:08" not in row, row  # not Rich's stale percent's
        progress.stop_task(job)  # it ended: the workflow's own estimate again
        assert "0:00:08" in next(x for x in _screen(bars, 120, 40) if x.startswith("t · w"))
        for key in ("j0", "j1"):
            ex.release(key)


async def test_a_failed_jobs_bar_says_its_error_and_a_blocked_ones_its_upstream(tmp_path):
    """Found in a 100-column tmux pane: `bad TISSUE_MASK 0/24 FAILED` and `after-bad ...
    BLOCKED` said nothing more until the closing summary, however long the run went on (the
    TUI's cards say the error and `upstream bad failed`)."""
    console = Console(file=io.StringIO(), width=160, height=40, force_terminal=True)
    bars = ProgressBars(console)
    ex = ScriptedExecutor()
    spec = WorkflowSpec(
        name="w",
        jobs=(
            JobSpec(id="bad", type="TISSUE_MASK", slide=SLIDE, branch="A"),
            JobSpec(id="after", type="TISSUE_MASK", slide=SLIDE, branch="A", depends_on=("bad",)),
        ),
    )
    async with Engine(tmp_path / "data", [ex], max_workers=1) as engine:
        status = engine.submit("t", spec)
        engine.bus.add_listener(bars)
        bars.add([engine.workflow("t", status.workflow.id)], engine.stats().waiting, engine)
        ex.release("bad", "fail")
        with anyio.fail_after(10):
            await engine.wait_until(lambda: engine.job("t", status.jobs[0].id).state.terminal)
        lines = _screen(bars, 160, 40)
        bad = next(line for line in lines if line.lstrip().startswith("bad "))
        after = next(line for line in lines if line.lstrip().startswith("after "))
        assert "FAILED" in bad and "synthetic failure in bad" in bad, lines
        assert "BLOCKED" in after and "upstream bad failed" in after, lines
