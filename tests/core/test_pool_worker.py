"""A job's worker processes end with wsitui: `kill -9` during a MEASURE_CELLS job (its
measuring pool, `spawn`) or a GPU SEGMENT_CELLS job (its tracing pool, `forkserver`) left the
workers waiting on their queue for good, each with its memory and its slide open, one more
set at every crash."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wsitui.core.pool_worker import alive

REPO = Path(__file__).parents[2]

POOLS = {
    "measure_cells": (
        "from wsitui.jobs.measure_cells.pipeline import TilePipeline\n"
        "pool = TilePipeline(load=None, measure=None, workers=2, check_cancel=lambda: None)._pool"
    ),
    "segment_cells_trace": (
        "from wsitui.jobs.segment_cells.backends.local import _trace_pool\npool = _trace_pool(2)"
    ),
}
KILLED = """
import os
{make}
pids = {{pool.submit(os.getpid).result(timeout=60) for _ in range(8)}}
print(*sorted(pids), flush=True)
os.kill(os.getpid(), 9)
"""


@pytest.mark.parametrize("pool", sorted(POOLS))
def test_workers_end_when_the_job_process_is_killed(tmp_path: Path, pool: str) -> None:
    out = tmp_path / "pids"
    with out.open("w") as f:  # a file, not a pipe: a worker left behind would hold a pipe open
        proc = subprocess.run(
            [sys.executable, "-c", KILLED.format(make=POOLS[pool])],
            stdout=f, stderr=subprocess.STDOUT, timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
    assert proc.returncode == -9, out.read_text()
    workers = [int(p) for p in out.read_text().split()]
    assert workers
    deadline = time.monotonic() + 15
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in workers if alive(p)]
    for pid in left:  # never leave them behind, even when the test fails
        os.kill(pid, 9)
    assert not left, f"workers {left} outlived the killed job process"
