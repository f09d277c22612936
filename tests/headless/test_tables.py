"""The headless tables fit 80 columns: `wsitui run`'s summary, `wsitui status` and
`wsitui model list` (plain text, as a terminal 80 columns wide shows it)."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from rich.cells import cell_len
from rich.console import Console, RenderableType

from tests.tui.fakes import ScriptedExecutor
from wsitui.core.engine import Engine
from wsitui.core.records import Job, JobSpec, JobState, WorkflowSpec
from wsitui.headless.display import summary_table
from wsitui.headless.status import status_table
from wsitui.models.cli import add_model_commands, run_model_command
from wsitui.session.cohort_rows import CohortSummary, SlideRow
from wsitui.session.summary import JobSummary, WorkflowSummary, summarize

pytestmark = pytest.mark.anyio

WORKFLOW = "TCGA-BRCA-cohort-2024-batch-07-masks-and-nuclei"
SLIDE = "slides/TCGA-A1-A0SB-01Z-00-DX1.8F2A3C9E-1B7D-4C2E-9A6B-3F5E7D1C0B2A.svs"


def at_80(table: RenderableType, width: int = 80) -> list[str]:
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(table)
    return console.export_text().splitlines()


async def finished_engine(tmp_path) -> Engine:
    """A workflow with long names: a mask, and a nuclei job that counted 1234 cells."""
    ex = ScriptedExecutor()
    ex.counters = {"nuclei-instanseg-20x": {"cells": 1234}}
    engine = Engine(tmp_path / "data", [ex])
    jobs = tuple(
        JobSpec(id=key, type="TISSUE_MASK", slide=SLIDE, branch=branch)
        for key, branch in (("tissue-mask-coarse", "A"), ("nuclei-instanseg-20x", "B"))
    )
    await engine.__aenter__()
    wf = engine.submit("alice", WorkflowSpec(name=WORKFLOW, jobs=jobs))
    with anyio.fail_after(10):
        await engine.wait_until(lambda: engine.stats().running == 2)
    for job in jobs:
        ex.release(job.id)
    with anyio.fail_after(10):
        await engine.wait_until(
            lambda: all(
                j.state is JobState.SUCCEEDED for j in engine.workflow("alice", wf.workflow.id).jobs
            )
        )
    return engine


async def test_run_summary_fits_80_columns_with_the_path_and_the_cells(tmp_path):
    engine = await finished_engine(tmp_path)
    try:
        statuses = [engine.workflow("alice", w.workflow.id) for w in engine.workflows("alice")]
        lines = at_80(summary_table(engine, statuses))
    finally:
        await engine.__aexit__(None, None, None)
    text = "\n".join(lines)
    assert all(len(line) <= 80 for line in lines), text
    header = next(line for line in lines if "workflow" in line)
    for name in ("workflow", "job", "state", "tiles", "cells", "time"):
        assert name in header, text  # no header cut or wrapped
    assert "1,234" in text  # the cell count
    # Each results path whole on one line (in a table column it was squeezed to 8 characters).
    for job in statuses[0].jobs:
        path = str(engine.results_dir(job).relative_to(engine.results_root.resolve()))
        assert any(line.strip() == f"{job.key}: {path}" for line in lines), text


async def test_status_fits_80_columns_and_shows_cells(tmp_path):
    engine = await finished_engine(tmp_path)
    try:
        summaries = [
            summarize(w.workflow, engine.workflow("alice", w.workflow.id).jobs, waiting=(),
                      results_root=engine.results_root)
            for w in engine.workflows("alice")
        ]  # fmt: skip
    finally:
        await engine.__aexit__(None, None, None)
    lines = at_80(status_table(tmp_path / "data", summaries))
    text = "\n".join(lines)
    assert all(len(line) <= 80 for line in lines), text
    header = next(line for line in lines if "workflow" in line)
    for name in ("workflow", "job", "state", "try", "tiles", "cells", "why / error"):
        assert name in header, text
    assert "1,234" in text
    # Workflow and job names fold onto lines of their own width, never shrink to nothing.
    assert "TCGA-BRCA" in text and "nuclei-ins" in text


def test_model_list_rows_fit_80_columns(capsys: pytest.CaptureFixture[str]):
    p = argparse.ArgumentParser(prog="wsitui")
    add_model_commands(p.add_subparsers(dest="command"))
    assert run_model_command(p.parse_args(["model", "list"])) == 0
    lines = capsys.readouterr().out.splitlines()
    table = [line for line in lines[1:] if not line.startswith("    ")]  # paths: own lines
    assert table[0].startswith("NAME") and "SHA256" in table[0]
    assert all(len(line) <= 80 for line in table), "\n".join(lines)


def test_run_bars_show_stage_and_cells():
    from dataclasses import replace

    from wsitui.core.records import Job
    from wsitui.headless.display import doing_text

    job = Job(
        id="w.c", key="c", workflow_id="w", tenant="t", job_type="SEGMENT_CELLS",
        slide="s.svs", branch="A", depends_on=(), params={}, state=JobState.RUNNING,
        stage="segmenting", counters={"cells": 12345},
    )  # fmt: skip
    assert doing_text(job) == "segmenting · 12,345 cells"
    done = replace(job, state=JobState.SUCCEEDED)
    assert doing_text(done) == "12,345 cells"  # the stage of a finished job is history


@pytest.mark.parametrize("width", [80, 200])
def test_run_bars_keep_counts_states_and_times_whole_at_any_width(width):
    """At 80 columns Rich squeezed every column evenly: a job read "26… RUNNING 0:… -:-…" and
    its workflow lost its bar and count. The counts, states and times stay whole; a workflow
    shows its percent (its "50/100" read as 50 of 100 tiles); names and stages are cut with "…"."""
    from wsitui.headless.display import ProgressBars

    console = Console(file=io.StringIO(), width=width, color_system=None)
    bars = ProgressBars(console)
    add = bars.progress.add_task
    add(
        "[bold]alice[/] · " + WORKFLOW,
        total=100,
        completed=50,
        percent=True,
        state="RUNNING",
        doing="",
    )
    add(
        "   nuclei-instanseg-20x [dim]SEGMENT_CELLS · B[/]",
        total=3710,
        completed=3710,
        state="SUCCEEDED",
        doing="writing outputs · 12,345 cells",
    )
    add("   tissue-mask-coarse [dim]TISSUE_MASK · A[/]", total=None, state="PENDING", doing="")
    console.print(bars.progress.make_tasks_table(bars.progress.tasks))
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    text = "\n".join(lines)
    assert len(lines) == 3 and all(len(line) <= width for line in lines), text
    assert " 50% " in lines[0] and "RUNNING " in lines[0] and "━━━" in lines[0], text
    assert "3710/3710 SUCCEEDED 0:00:00 -:--:--" in lines[1], text
    assert " — " in lines[2] and "PENDING" in lines[2] and "0/?" not in text, text  # as status
    assert lines[1].startswith("   nuclei-"), text  # its name first, cut if it must be
    if width == 200:
        assert "writing outputs · 12,345 cells" in lines[1] and WORKFLOW in lines[0], text


async def test_a_bars_time_runs_only_while_its_job_runs(tmp_path):
    """A waiting job's bar showed the time since `wsitui run` began, as if it had run that
    long, and a failed job's time kept growing after it ended. Now a bar's time starts when
    its job starts and stops when it ends."""
    from wsitui.headless.display import ProgressBars

    now = [100.0]
    bars = ProgressBars(Console(file=io.StringIO(), width=120, force_terminal=True))
    bars.progress.get_time = lambda: now[0]
    ex = ScriptedExecutor()
    async with Engine(tmp_path / "data", [ex], max_workers=1) as engine:
        jobs = tuple(JobSpec(id=k, type="TISSUE_MASK", slide=SLIDE) for k in ("first", "second"))
        wf = engine.submit("alice", WorkflowSpec(name="w", jobs=jobs), start=False)
        bars.add([engine.workflow("alice", wf.workflow.id)])
        engine.bus.add_listener(bars)
        task = {t.description.split()[0]: t for t in bars.progress.tasks}
        now[0] = 130.0
        assert task["first"].elapsed is None and task["second"].elapsed is None  # none ran
        engine.start("alice", [j.id for j in wf.jobs])
        with anyio.fail_after(10):
            await engine.wait_until(lambda: engine.stats().running == 1)
        now[0] = 140.0
        assert task["first"].elapsed == 10.0 and task["second"].elapsed is None
        ex.release("first", "fail")
        with anyio.fail_after(10):
            await engine.wait_until(
                lambda: engine.job("alice", wf.jobs[1].id).state is JobState.RUNNING
            )
        now[0] = 500.0
        assert task["first"].elapsed == 10.0  # stopped when it failed
        assert task["second"].elapsed == 360.0
        ex.release("second")
        with anyio.fail_after(10):
            await engine.wait_until(lambda: engine.stats().running == 0)
        # The next `wsitui run` of the same config: each finished job's bar shows what it ran.
        again = ProgressBars(Console(file=io.StringIO(), width=120, force_terminal=True))
        status = engine.workflow("alice", wf.workflow.id)
        again.add([status])
        ran = {j.key: j.finished_at - j.started_at for j in status.jobs}  # type: ignore[operator]
        for t in again.progress.tasks[1:]:
            key = t.description.split()[0]
            assert t.elapsed == pytest.approx(ran[key]) and t.stop_time is not None, key


async def test_a_waiting_tenants_bars_say_its_place_in_line(tmp_path):
    """With tenant slots full, the other tenants' workflows read "PENDING 0%" with nothing
    saying why while the others ran. Their bars say their place in line until admitted."""
    from wsitui.headless.display import ProgressBars

    bars = ProgressBars(Console(file=io.StringIO(), width=120, force_terminal=True))
    ex = ScriptedExecutor()
    async with Engine(tmp_path / "data", [ex], max_active_users=1) as engine:
        engine.bus.add_listener(bars)
        ids = {}
        for tenant in ("alice", "bob", "carol"):
            spec = WorkflowSpec(
                name="w", jobs=(JobSpec(id=tenant, type="TISSUE_MASK", slide=SLIDE),)
            )
            ids[tenant] = engine.submit(tenant, spec).workflow.id
        bars.add([engine.workflow(t, i) for t, i in ids.items()], engine.stats().waiting)
        row = {
            t: next(x for x in bars.progress.tasks if x.id == bars._tasks[i])
            for t, i in ids.items()
        }
        assert [row[t].fields["doing"] for t in ids] == [
            "",
            "1st in line for a tenant slot",
            "2nd in line for a tenant slot",
        ]
        assert ["WAITING" in row[t].fields["state"] for t in ids] == [False, True, True]
        ex.release("alice")
        with anyio.fail_after(10):
            await engine.wait_until(lambda: engine.stats().active == ("bob",))
        assert [row[t].fields["doing"] for t in ids] == ["", "", "1st in line for a tenant slot"]
        assert "RUNNING" in row["bob"].fields["state"]
        ex.release("bob")
        with anyio.fail_after(10):
            await engine.wait_until(lambda: engine.stats().active == ("carol",))
        ex.release("carol")
        with anyio.fail_after(10):
            await engine.wait_until(lambda: engine.is_idle())
        assert [row[t].fields["doing"] for t in ids] == ["", "", ""]


def _cohort_summary(n: int) -> WorkflowSummary:
    """A cohort of `n` slides (mask + cells each): slide 0 failed at its mask, 1 is running,
    the rest succeeded with 10 cells each."""
    jobs, rows = [], []
    for i in range(n):
        sid = f"case{i:03d}"
        states = {0: ("FAILED", "PENDING"), 1: ("SUCCEEDED", "RUNNING")}.get(
            i, ("SUCCEEDED", "SUCCEEDED")
        )
        for tid, state in zip(("mask", "cells"), states, strict=True):
            jobs.append(
                JobSummary(
                    id=f"wf1.{sid}-{tid}",
                    key=f"{sid}-{tid}",
                    type="TISSUE_MASK",
                    branch=sid,
                    slide=f"/s/{sid}.svs",
                    depends_on=[],
                    state=state,
                    phase=state.lower(),
                    reason="",
                    stage="",
                    counters={},
                    blocked=False,
                    attempt=1,
                    crashes=0,
                    tiles_done=3,
                    tiles_total=4,
                    error="bad slide" if i == 0 else None,
                    results_dir="",
                    created_at=0.0,
                    started_at=None,
                    finished_at=None,
                )
            )
        rows.append(
            SlideRow(
                slide_id=sid,
                path=f"/s/{sid}.svs",
                meta={},
                listed=True,
                state={0: "FAILED", 1: "RUNNING"}.get(i, "SUCCEEDED"),
                finished=i != 1,
                jobs={},
                job_ids={},
                tiles_done=6,
                tiles_total=8,
                progress=0.75,
                cells=None if i < 2 else 10,
                tissue_area_mm2=None,
                cells_per_mm2=None,
                run_s=None,
                started_at=None,
                finished_at=None,
                error="mask: bad slide" if i == 0 else None,
            )
        )
    cohort = CohortSummary(
        slides=n, succeeded=n - 2, failed=1, running=1, pending=0, summary_csv="", rows=rows
    )
    return WorkflowSummary(
        id="wf1",
        tenant="lab",
        name="brca",
        created_at=0.0,
        state="RUNNING",
        progress=0.5,
        jobs=jobs,
        cohort=cohort,
    )


def test_status_shows_a_cohort_as_one_line_and_its_jobs_with_verbose(tmp_path):
    summary = _cohort_summary(60)
    lines = at_80(status_table(tmp_path, [summary]))
    text = "\n".join(lines)
    assert all(len(line) <= 80 for line in lines), text
    assert "case001" not in text  # no line per slide job...
    assert len(lines) < 15, text  # ...so 120 jobs do not flood the screen
    flat = "\n".join(at_80(status_table(tmp_path, [summary]), width=200))  # as a pipe: 1 line
    assert len([line for line in flat.splitlines() if "lab/brca" in line]) == 1, flat
    assert "59/60 slides done, 1 failed, 1 running" in flat  # counted as `wsitui run` does
    assert "case000: mask: bad slide" in flat  # the first failure, with its reason
    assert "580" in flat  # cells summed over the slides (58 x 10)
    assert "360/480" in flat  # tiles summed over the jobs
    assert "--verbose" in flat  # says how to see the jobs
    verbose = "\n".join(at_80(status_table(tmp_path, [summary], verbose=True), width=200))
    assert all(f"case{i:03d}-cells" in verbose for i in range(60))


def test_status_verbose_is_an_option_of_the_command():
    from wsitui.cli import _parser

    assert _parser().parse_args(["status", "--verbose"]).verbose is True
    assert _parser().parse_args(["status"]).verbose is False


async def test_status_of_an_unknown_tenant_says_so_without_naming_any_other(tmp_path, capsys):
    # README: a tenant sees only its own workflows, so it must not learn that another exists;
    # the error listed every tenant of the data dir ("its tenants: alice").
    from wsitui.headless.status import status

    engine = await finished_engine(tmp_path)
    await engine.__aexit__(None, None, None)
    capsys.readouterr()
    assert status(tmp_path / "data", tenant="alcie") == 2  # a typo is not an empty answer
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'alcie'" in err and "check the tenant id" in err, err
    assert "alice" not in err.replace("'alcie'", ""), err
    assert status(tmp_path / "data", tenant="alice", as_json=True) == 0
    assert [w["tenant"] for w in json.loads(capsys.readouterr().out)] == ["alice"]


@pytest.mark.parametrize("argv", [["status"], ["serve"], []])
def test_an_invalid_tenant_id_gets_the_invalid_id_error_not_no_tenant(tmp_path, capsys, argv):
    # `--tenant ../x` said "no tenant '../x'" (as if it were a tenant to look for), where the
    # rest of wsitui refuses such an id naming the alphabet it takes.
    from wsitui.cli import main
    from wsitui.headless.status import status

    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--data-dir", str(tmp_path), "--tenant", "../x"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "tenant '../x' is not allowed: use 1-64 letters" in err, err
    assert status(tmp_path, tenant="../x") == 2  # the function refuses it too
    assert "tenant '../x' is not allowed" in capsys.readouterr().err


def test_closing_lines_are_never_wrapped_in_a_log_but_the_table_still_fits():
    from wsitui.core.records import JobState as S
    from wsitui.headless.cohort_progress import cohort_table
    from wsitui.headless.run import print_closing
    from wsitui.session.cohort_tracker import CohortTracker

    error = "slide '/data/" + "x" * 150 + ".svs' is not a slide image; give an SVS file"
    job = Job(
        id="wf.s1-mask", key="s1-mask", workflow_id="wf", tenant="lab", job_type="TISSUE_MASK",
        slide="/s1.svs", branch="s1", depends_on=(), params={}, state=S.FAILED, error=error,
    )  # fmt: skip
    tracker = CohortTracker("lab", "c", "wf", ["s1"], [job])
    log = Console(width=160, file=io.StringIO(), color_system=None)  # a pipe, as run makes it
    assert not log.is_terminal
    print_closing(log, cohort_table([tracker], {"wf": "/r/summary.csv"}))
    lines = log.file.getvalue().splitlines()
    assert f"  s1: {error}" in lines  # the whole reason on its one line: greps whole
    table = [line for line in lines if "lab/c" in line and "summary" not in line]
    assert table and all(len(line) <= 160 for line in table)


@asynccontextmanager
async def _one_running_one_waiting(tmp_path: Path) -> AsyncIterator[tuple[Engine, str]]:
    """An engine of one worker running "first" (branch A) while "second" (branch B) waits for
    a free worker; yields it and the workflow id, then releases both jobs and closes it."""
    ex = ScriptedExecutor()
    engine = Engine(tmp_path / "data", [ex], max_workers=1)
    jobs = tuple(
        JobSpec(id=key, type="TISSUE_MASK", slide=SLIDE, branch=branch)
        for key, branch in (("first", "A"), ("second", "B"))
    )
    await engine.__aenter__()
    try:
        wf = engine.submit("alice", WorkflowSpec(name="w", jobs=jobs))
        with anyio.fail_after(10):
            await engine.wait_until(lambda: engine.stats().running == 1)
        yield engine, wf.workflow.id
    finally:
        for job in jobs:
            ex.release(job.id)
        await engine.__aexit__(None, None, None)


async def test_after_an_interrupt_the_summary_says_a_ready_job_resumes_next_time(tmp_path):
    async with _one_running_one_waiting(tmp_path) as (engine, wf_id):
        statuses = [engine.workflow("alice", wf_id)]
        stopped = "\n".join(at_80(summary_table(engine, statuses, interrupted=True), width=200))
        live = "\n".join(at_80(summary_table(engine, statuses), width=200))
    # The process is exiting: "waiting for a free worker" would say it is still coming.
    assert "second: stopped before it finished; the same command resumes it" in stopped
    assert "waiting for a free worker" not in stopped
    assert "second: waiting for a free worker" in live  # while it runs, the reason as it is


def test_status_with_no_process_on_the_data_dir_says_a_ready_job_is_not_running(tmp_path):
    """After a run stopped (Ctrl-C, a crash), status said 'waiting for a free worker': no
    process would ever free one. It now says how to resume; with a live run, the reason."""
    import os
    import subprocess
    import sys

    from wsitui.headless.status import run_is_live

    summary = _cohort_summary(3)
    summary.cohort = None  # its jobs one by one
    ready = summary.jobs[3]  # case001-cells: RUNNING in the data; make one ready, one running
    summary.jobs[2] = summary.jobs[2].model_copy(
        update={"state": "PENDING", "phase": "ready", "reason": "waiting for a free worker"}
    )
    stopped = "\n".join(at_80(status_table(tmp_path, [summary], live=False), width=250))
    lines = {line.split()[2]: line for line in stopped.splitlines() if "lab/brca" in line}
    assert "not running: no wsitui process has this data dir" in lines["case001-mask"]
    assert "not running" in lines[ready.key]  # RUNNING on disk, its process gone
    assert "not running" not in lines["case002-mask"]  # succeeded: nothing to say
    live = "\n".join(at_80(status_table(tmp_path, [summary], live=True), width=250))
    assert "waiting for a free worker" in live and "not running" not in live

    cohort = _cohort_summary(3)  # slide 1 is still running on disk
    stopped = " ".join(at_80(status_table(tmp_path, [cohort], live=False), width=250))
    assert "1 running · case000: mask: bad slide · not running: no wsitui process" in stopped

    assert not run_is_live(tmp_path)  # no lock file: no process
    (tmp_path / "engine.lock").write_text(str(os.getpid()))
    assert run_is_live(tmp_path)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    (tmp_path / "engine.lock").write_text(gone)
    assert not run_is_live(tmp_path)  # a run that ended (or died) leaves its pid behind


def test_status_of_thousands_of_jobs_is_a_line_per_workflow_and_verbose_lists_them(tmp_path):
    """3,000 jobs made 3,000 lines that took seconds to lay out; past 200 job rows each
    workflow is one line (its jobs counted by state, its first failure), `--verbose` all."""
    big = _cohort_summary(60)  # 120 jobs: 1 failed, 1 running, 1 pending behind the failure
    big.cohort = None
    other = big.model_copy(update={"id": "wf2", "name": "second"})
    flat = "\n".join(at_80(status_table(tmp_path, [big, other]), width=200))
    rows = [line for line in flat.splitlines() if "lab/" in line]
    assert len(rows) == 2, flat
    assert "120 jobs" in rows[0] and "lab/brca (wf1)" in rows[0]
    assert "117 succeeded, 1 failed, 1 running, 1 pending" in rows[0]
    assert "case000-mask: bad slide" in rows[0]  # the first failure, with its reason
    assert "240 jobs: a workflow is one line; `wsitui status --verbose` lists its jobs" in flat
    stopped = "\n".join(at_80(status_table(tmp_path, [big, other], live=False), width=250))
    assert "not running: no wsitui process" in stopped  # one of its jobs is RUNNING on disk
    lines = at_80(status_table(tmp_path, [big, other]))
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    verbose = "\n".join(at_80(status_table(tmp_path, [big, other], verbose=True), width=200))
    assert sum("lab/brca" in line for line in verbose.splitlines()) == 120
    small = big.model_copy(update={"jobs": big.jobs[:100]})  # 200 rows: still one per job
    shown = "\n".join(at_80(status_table(tmp_path, [small, small]), width=200))
    assert sum("lab/brca" in line for line in shown.splitlines()) == 200


async def test_run_bars_of_hundreds_of_jobs_are_a_bar_per_workflow_counting_them(tmp_path):
    """3,000 job bars took Rich 2 s a redraw, 8 redraws a second: past 60 jobs a run in a
    terminal shows a bar per workflow, its jobs counted by state."""
    from wsitui.headless.display import MAX_JOB_BARS, ProgressBars

    ex = ScriptedExecutor()
    keys = [(f"j{i:03d}", "AB"[i % 2]) for i in range(100)]
    bars = ProgressBars(Console(file=io.StringIO(), width=120, force_terminal=True))
    async with Engine(tmp_path / "data", [ex]) as engine:
        jobs = tuple(JobSpec(id=k, type="TISSUE_MASK", slide=SLIDE, branch=b) for k, b in keys)
        wf = engine.submit("alice", WorkflowSpec(name="big", jobs=jobs), start=False)
        engine.bus.add_listener(bars)
        bars.add([engine.workflow("alice", wf.workflow.id)])
        (task,) = bars.progress.tasks  # no bar per job
        assert len(keys) > MAX_JOB_BARS
        assert task.fields["doing"] == "0/100 jobs done · 0 running"
        engine.start("alice", [wf.jobs[0].id, wf.jobs[1].id])
        with anyio.fail_after(10):
            await engine.wait_until(lambda: engine.stats().running == 2)
        assert task.fields["doing"] == "0/100 jobs done · 2 running"
        ex.release("j000")
        ex.release("j001", "fail")
        with anyio.fail_after(10):
            await engine.wait_until(lambda: engine.stats().running == 0)
        assert task.fields["doing"] == "1/100 jobs done · 0 running · [red]1 failed[/]"


async def test_run_summary_of_hundreds_of_jobs_is_a_line_per_workflow(tmp_path):
    """The closing table and the outputs list had a line per job (3,000 of each); past 200
    jobs they have a line per workflow, where its outputs are, and the failures."""
    ex = ScriptedExecutor()
    keys = [(f"j{i:03d}", "AB"[i % 2]) for i in range(250)]
    async with Engine(tmp_path / "data", [ex]) as engine:
        jobs = tuple(JobSpec(id=k, type="TISSUE_MASK", slide=SLIDE, branch=b) for k, b in keys)
        wf = engine.submit("alice", WorkflowSpec(name="big", jobs=jobs), start=False)
        engine.start("alice", [wf.jobs[0].id, wf.jobs[1].id])
        with anyio.fail_after(10):
            await engine.wait_until(lambda: engine.stats().running == 2)
        ex.release("j000")
        ex.release("j001", "fail")
        with anyio.fail_after(10):
            await engine.wait_until(lambda: engine.stats().running == 0)
        text = "\n".join(
            at_80(summary_table(engine, [engine.workflow("alice", wf.workflow.id)]), width=160)
        )
    lines = text.splitlines()
    assert sum("alice/big" in line for line in lines) == 3, text  # row, outputs, failure
    assert "250 jobs: 1 failed, 248 pending, 1 succeeded" in text
    assert f"alice/big: alice/{wf.workflow.id}/<job id>/" in text
    assert "alice/big · j001: FAILED: synthetic failure in j001" in text
    assert len(lines) < 15, text


async def test_the_outputs_list_says_whose_job_failed_when_job_ids_repeat(tmp_path):
    """Two workflows each with a job `mask`: the list said "mask: FAILED: ..." and
    "mask: alice/wf.../mask" and nothing told which workflow's mask failed. Each workflow's
    outputs are now under its name (one workflow: the list is as it was)."""
    ex = ScriptedExecutor()
    async with Engine(tmp_path / "data", [ex]) as engine:
        ids = {}
        for name in ("left", "right"):
            spec = WorkflowSpec(
                name=name, jobs=(JobSpec(id="mask", type="TISSUE_MASK", slide=SLIDE),)
            )
            ids[name] = engine.submit("alice", spec).workflow.id
            with anyio.fail_after(10):
                await engine.wait_until(lambda: engine.stats().running == 1)
            ex.release("mask", "fail" if name == "left" else "ok")
            with anyio.fail_after(10):
                await engine.wait_until(lambda: engine.stats().running == 0)
        statuses = [engine.workflow("alice", wf_id) for wf_id in ids.values()]
        lines = at_80(summary_table(engine, statuses), width=160)
        one = at_80(summary_table(engine, statuses[1:]), width=160)
    start = next(i for i, line in enumerate(lines) if line.startswith("outputs under"))
    assert [line.rstrip() for line in lines[start + 1 :]] == [
        "  alice/left:",
        "    mask: FAILED: synthetic failure in mask",
        "  alice/right:",
        f"    mask: alice/{ids['right']}/mask",
    ], "\n".join(lines)
    assert one[-1].rstrip() == f"  mask: alice/{ids['right']}/mask"  # one workflow: as before


async def test_plain_lines_name_the_workflow_of_each_job(tmp_path):
    """Off a terminal (cron, a pipe) `wsitui run` prints a line per change: two workflows'
    `mask` jobs read "t/mask [TISSUE_MASK] (main) FAILED" and "... SUCCEEDED", and nothing said
    which one failed. Each line names its workflow."""
    from wsitui.headless.display import PlainLines

    out = io.StringIO()
    ex = ScriptedExecutor()
    async with Engine(tmp_path / "data", [ex]) as engine:
        engine.bus.add_listener(PlainLines(out, engine))
        for name in ("left", "right"):
            spec = WorkflowSpec(
                name=name, jobs=(JobSpec(id="mask", type="TISSUE_MASK", slide=SLIDE),)
            )
            engine.submit("alice", spec)
            with anyio.fail_after(10):
                await engine.wait_until(lambda: engine.stats().running == 1)
            ex.release("mask", "fail" if name == "left" else "ok")
            with anyio.fail_after(10):
                await engine.wait_until(lambda: engine.stats().running == 0)
    lines = [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]  # no time stamp
    assert "alice/left · mask [TISSUE_MASK] (main) FAILED: failed: synthetic failure in mask" in (
        lines
    )
    assert "alice/right · mask [TISSUE_MASK] (main) SUCCEEDED: completed" in lines
    assert "alice/left · mask [TISSUE_MASK] (main) PENDING: submitted" in lines  # the first too


def _printed(table: RenderableType, width: int) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(table)
    return console.file.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize("width", [80, 160, 250])
@pytest.mark.parametrize("verbose", [False, True])
@pytest.mark.parametrize("error", ["bad slide", "Ünïcödé 表 error " * 6, "x" * 150])
def test_status_rows_laid_out_in_python_match_what_rich_prints(tmp_path, width, verbose, error):
    # `wsitui status --verbose` on 3,000 jobs took 2.4 s, nearly all of it rich laying out
    # each cell; `plain_lines` writes rows itself and must print exactly what rich would.
    from wsitui.headless.status import plain_lines

    summary = _cohort_summary(12)
    summary.jobs[0].error = error  # type: ignore[misc]
    summary.cohort.rows[0].error = error  # type: ignore[union-attr,misc]
    table = status_table(tmp_path, [summary], verbose=verbose)
    console = Console(width=width, file=io.StringIO(), color_system=None)
    lines = plain_lines(console, table)
    expected = _printed(status_table(tmp_path, [summary], verbose=verbose), width)
    unfolded = _printed(status_table(tmp_path, [summary], verbose=verbose), 2000)
    if max(map(cell_len, unfolded.splitlines())) <= width:  # every row fits on one line
        assert lines is not None
        assert "".join(f"{line}\n" for line in lines) == expected
    else:  # rich folds some rows: it prints the table itself
        assert lines is None


async def test_a_job_that_never_started_shows_no_tiles_not_zero_of_zero(tmp_path):
    """A job waiting for a worker showed tiles "0/0" in `wsitui run`'s summary and in
    `wsitui status` (job rows and the folded workflow row), which reads as finished empty
    work: until its total is known it shows "—"; a job with a total shows done/total."""
    from wsitui.headless.status import _workflow_row

    async with _one_running_one_waiting(tmp_path) as (engine, wf_id):
        status = engine.workflow("alice", wf_id)
        run_text = at_80(summary_table(engine, [status]), width=200)
        summary = summarize(
            status.workflow, status.jobs, waiting=(), results_root=engine.results_root
        )
    status_text = at_80(status_table(tmp_path / "data", [summary]), width=200)
    for lines in (run_text, status_text):
        row = next(line for line in lines if "second" in line and "PENDING" in line)
        assert "—" in row and "0/0" not in row, "\n".join(lines)
    assert "0/0" not in "\n".join(run_text + status_text)
    assert "—" in _workflow_row(summary)  # the folded row: no job of it has a total yet
    counted = summary.jobs[0].model_copy(update={"tiles_done": 3, "tiles_total": 8})
    assert "3/8" in _workflow_row(summary.model_copy(update={"jobs": [counted, summary.jobs[1]]}))


async def test_a_bars_time_keeps_running_while_its_job_writes_its_outputs(tmp_path):
    """Rich stops a bar's time when its count reaches its total: a cells job at 55/55 writing
    its outputs showed 0:00:48 and stopped there, and the summary then said it ran 56.9 s (a
    shipped-model job: 0:03:05 against 196.5 s). A bar's time is its job's, to its end."""
    from wsitui.headless.display import ProgressBars

    now = [100.0]
    console = Console(file=io.StringIO(), width=120, force_terminal=True, color_system=None)
    bars = ProgressBars(console)
    bars.progress.get_time = lambda: now[0]
    ex = ScriptedExecutor()
    ex.progress["cells"] = (10, 10)  # every tile done at once; then it writes its outputs
    async with Engine(tmp_path / "data", [ex], max_workers=1) as engine:
        jobs = (JobSpec(id="cells", type="TISSUE_MASK", slide=SLIDE),)
        wf = engine.submit("alice", WorkflowSpec(name="w", jobs=jobs), start=False)
        bars.add([engine.workflow("alice", wf.workflow.id)])
        engine.bus.add_listener(bars)
        engine.start("alice", [wf.jobs[0].id])
        with anyio.fail_after(10):
            await engine.wait_until(lambda: engine.job("alice", wf.jobs[0].id).tiles_done == 10)

        def shown() -> str:
            console.file = io.StringIO()
            console.print(bars.progress.make_tasks_table(bars.progress.tasks))
            return next(x for x in console.file.getvalue().splitlines() if "10/10" in x)

        now[0] = 148.0
        assert "RUNNING 0:00:48" in shown(), shown()
        now[0] = 157.0
        ex.release("cells")
        with anyio.fail_after(10):
            await engine.wait_until(lambda: engine.stats().running == 0)
        now[0] = 300.0
        assert "SUCCEEDED 0:00:57" in shown(), shown()  # to its end, then stopped
