"""`wsitui status` stays quick on a big data dir: it loads no job type, image or UI library
(numpy, scipy, torch, textual took ~0.6 s of its start), and it lays out a line per workflow
past 200 jobs (tests/headless/test_tables.py). `benchmarks/bench_status.py` times it on 3,000
jobs."""

from __future__ import annotations

import os
import subprocess
import sys

import anyio

from tests.headless.helpers import REPO, wsitui
from tests.tui.fakes import ScriptedExecutor
from wsitui.core.engine import Engine
from wsitui.core.records import JobSpec, WorkflowSpec

HEAVY = ("numpy", "scipy", "torch", "textual", "PIL", "tifffile", "wsitui.jobs.registry")


async def _held_workflow(data_dir) -> None:
    async with Engine(data_dir, [ScriptedExecutor()]) as engine:
        jobs = tuple(
            JobSpec(id=f"j{i}", type="TISSUE_MASK", slide="/s.svs", branch=f"b{i}")
            for i in range(3)
        )
        engine.submit("alice", WorkflowSpec(name="w", jobs=jobs), start=False)


def test_status_imports_no_job_type_image_or_ui_library(tmp_path):
    anyio.run(_held_workflow, tmp_path / "data")
    for extra in ([], ["--json"], ["--verbose"]):
        probe = (
            "import sys\nfrom wsitui.cli import main\n"
            f"code = main(['status', '--data-dir', {str(tmp_path / 'data')!r}, *{extra!r}])\n"
            f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules], code)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            check=False,
        )
        assert "LOADED [] 0" in out.stdout, (extra, out.stdout[-500:], out.stderr[-2000:])
        assert "alice/w" in out.stdout


def test_the_sample_size_default_the_help_names_is_the_one_used():
    # The parser no longer imports the sample module (numpy, scipy) for its default.
    from wsitui.slides.sample import DEFAULT_SIZE

    out = wsitui("sample", "--help")
    assert f"(default {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})" in out.stdout
