"""The CPUs a job may use, and the one check of a job's `workers` (the job types that run
worker processes, MEASURE_CELLS and SEGMENT_CELLS' classical model, both take it)."""

from __future__ import annotations

from wsitui.core.cpus import available_cpus

__all__ = ["available_cpus", "check_workers"]


def check_workers(v: int | None, absent: str) -> int | None:
    """`v` when it is 1 to this machine's CPU count or None; else ValueError (one line;
    `absent` says what leaving it out gives)."""
    cpus = available_cpus()
    if v is not None and not 1 <= v <= cpus:
        raise ValueError(
            f"workers = {v} is not 1 to {cpus} (this machine's CPUs); give one of those, "
            f"or leave it out for {absent}"
        )
    return v
