"""Test-only executor for the TUI: scripted progress and outcomes, so screens are deterministic.
It fakes the work (the UI is under test); the real executors have their own tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio
import numpy as np
from PIL import Image
from pydantic import BaseModel

from wsitui.core.executor import Executor, JobContext, JobError, UpstreamSpec
from wsitui.core.records import JobSpec
from wsitui.jobs.registry import executor_class
from wsitui.jobs.tissue_mask.params import TissueMaskParams

CELLS = executor_class("SEGMENT_CELLS")
MASK = executor_class("TISSUE_MASK")


class ScriptedExecutor(Executor):
    job_type = "TISSUE_MASK"
    params_model = TissueMaskParams  # the real job's params, so the TUI submits what it would
    totals = CELLS.totals if CELLS else ()  # its jobs report cells, summed like SEGMENT_CELLS's
    outputs = MASK.outputs if MASK else {}  # what the real one writes, for the viewer

    def __init__(self) -> None:
        self.progress: dict[str, tuple[int, int]] = {}  # job key -> (done, total) to report
        self.stages: dict[str, str] = {}  # job key -> stage to set before reporting
        self.counters: dict[str, dict[str, int]] = {}  # job key -> counters to report
        self.later_stages: dict[str, str] = {}  # job key -> stage to set while it waits
        self.gates: dict[str, anyio.Event] = {}
        self.outcomes: dict[str, str] = {}
        self.reports: dict[str, list[tuple[int, dict[str, int] | None]]] = {}  # sent in order

    def validate(
        self, spec: JobSpec, slide: Path, params: BaseModel, upstream: Sequence[UpstreamSpec]
    ) -> None:
        return None

    async def run(self, ctx: JobContext) -> None:
        key = ctx.job.key
        if key in self.stages:
            ctx.set_stage(self.stages[key])
        done, total = self.progress.get(key, (0, 10))
        ctx.report(done, total, self.counters.get(key))
        gate = self.gates.setdefault(key, anyio.Event())
        while not gate.is_set():
            with anyio.move_on_after(0.02):
                await gate.wait()
            ctx.check_cancel()
            for value, counters in self.reports.pop(key, []):  # a report the test asked for
                ctx.report(value, total, counters)
            if key in self.later_stages:  # a stage change alone, with no progress report
                ctx.set_stage(self.later_stages.pop(key))
        self.gates.pop(key, None)
        if self.outcomes.pop(key, "ok") == "fail":
            raise JobError(f"synthetic failure in {key}")
        write_preview(ctx.results_dir / "preview.png")
        ctx.report(total, total)

    def report(self, key: str, done: int, counters: dict[str, int] | None = None) -> None:
        """Make the running job `key` report `done` tiles (at its next 20 ms check)."""
        self.reports.setdefault(key, []).append((done, counters))

    def release(self, key: str, outcome: str = "ok") -> None:
        self.outcomes[key] = outcome
        self.gates.setdefault(key, anyio.Event()).set()


def write_preview(path: Path) -> None:
    """A deterministic stand-in preview: pink 'tissue' disc with a green overlay on white."""
    h, w = 96, 128
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.full((h, w, 3), 255, np.uint8)
    tissue = (yy - 48) ** 2 / 40**2 + (xx - 64) ** 2 / 55**2 < 1
    img[tissue] = (232, 160, 200)
    edge = tissue & ~((yy - 48) ** 2 / 36**2 + (xx - 64) ** 2 / 51**2 < 1)
    img[edge] = (40, 200, 60)
    Image.fromarray(img).save(path)
