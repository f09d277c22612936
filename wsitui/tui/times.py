"""Clock texts of a job card: elapsed time and ETA, and compact counters."""

from __future__ import annotations

from collections.abc import Mapping

from wsitui.core.models import Job, JobState


def clock_text(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "--:--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def elapsed_and_eta(job: Job, now: float) -> tuple[str, str]:
    if job.started_at is None:
        return "--:--", "--:--"
    end = job.finished_at if job.finished_at is not None else now
    elapsed = end - job.started_at
    if job.state is not JobState.RUNNING:
        return clock_text(elapsed), "--:--"
    if job.tiles_total and job.tiles_done:
        remaining = elapsed * (job.tiles_total - job.tiles_done) / job.tiles_done
        return clock_text(elapsed), clock_text(remaining)
    return clock_text(elapsed), "--:--"


def compact_count(n: int) -> str:
    """1234 -> "1.2k", 5_600_000 -> "5.6M": counters fit on a narrow card."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            value = n / size
            return f"{value:.1f}{unit}" if abs(value) < 100 else f"{value:.0f}{unit}"
    return str(n)


def counters_text(counters: Mapping[str, int]) -> str:
    """{"cells": 1234} -> "cells 1.2k"; several are joined with " · " in the executor's order."""
    return " · ".join(f"{name} {compact_count(value)}" for name, value in counters.items())
