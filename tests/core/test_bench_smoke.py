"""The engine benchmarks still run (#15.8: bench_scheduler crashed on `ZeroWork.capacity`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_scheduler_runs_on_a_tiny_workload():
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "bench_scheduler.py"),
            "--jobs",
            "40",
            "--tenants",
            "4",
            "--lanes",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert out.returncode == 0, out.stderr
    assert "jobs per second" in out.stdout
