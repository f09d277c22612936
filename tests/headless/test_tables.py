"""The headless tables fit 80 columns: `wsitui run`'s summary, `wsitui status` and
`wsitui model list` (plain text, as a terminal 80 columns wide shows it)."""

from __future__ import annotations

import argparse
import io

import anyio
import pytest
from rich.console import Console, RenderableType

from tests.tui.fakes import ScriptedExecutor
from wsitui.core.engine import Engine
from wsitui.core.records import JobSpec, JobState, WorkflowSpec
from wsitui.headless.display import summary_table
from wsitui.headless.status import status_table
from wsitui.models.cli import add_model_commands, run_model_command
from wsitui.session.summary import summarize

pytestmark = pytest.mark.anyio

WORKFLOW = "TCGA-BRCA-cohort-2024-batch-07-masks-and-nuclei"
SLIDE = "slides/TCGA-A1-A0SB-01Z-00-DX1.8F2A3C9E-1B7D-4C2E-9A6B-3F5E7D1C0B2A.svs"


def at_80(table: RenderableType) -> list[str]:
    console = Console(width=80, file=io.StringIO(), record=True, color_system=None)
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
