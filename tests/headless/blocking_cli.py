"""`wsitui` as a program whose only executor blocks a worker thread for two minutes and ignores
every stop request: what a job stuck in a network call without a timeout looks like. Used by
tests/headless/test_run_exit.py as `python tests/headless/blocking_cli.py run CONFIG ...`.

The blocking is faked (a sleep); everything else is the real program."""

from __future__ import annotations

import runpy
import sys
import time

import wsitui.jobs.registry as registry
from tests.core.fakes import LooseParams
from wsitui.core.executor import Executor, JobContext

BLOCK_S = 120.0


class Blocking(Executor):
    job_type = "TISSUE_MASK"
    params_model = LooseParams

    async def run(self, ctx: JobContext) -> None:
        ctx.report(0, 1)
        await ctx.to_thread(time.sleep, BLOCK_S)


registry.default_executors = lambda: [Blocking()]  # type: ignore[assignment]
sys.argv[0] = "wsitui"
runpy.run_module("wsitui.cli", run_name="__main__")
