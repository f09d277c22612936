"""Clock texts of a job card: elapsed time and ETA, and compact counters."""

from __future__ import annotations

from collections.abc import Mapping

from wsitui.core.records import Job, JobState


def clock_text(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "--:--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def elapsed_and_eta(job: Job, now: float, eta_s: float | None) -> tuple[str, str]:
    """The job's run time (to now while it runs) and the ETA from its measured rate."""
    if job.started_at is None:
        return "--:--", "--:--"
    end = job.finished_at if job.finished_at is not None else now
    elapsed = clock_text(max(0.0, end - job.started_at))
    if job.state is not JobState.RUNNING:
        return elapsed, "--:--"
    return elapsed, clock_text(eta_s)


def times_text(job: Job, now: float, eta_s: float | None, rate: float | None) -> str:
    """A card's last line. Running: elapsed, ETA, measured tiles/s, then the live counters (cut
    first on a narrow card). Finished: how long it ran, and every counter: a zero is news once
    the job has ended ("cells 0": it segmented no tile), not while it runs."""
    elapsed, eta = elapsed_and_eta(job, now, eta_s)
    ended = job.state is JobState.SUCCEEDED
    counters = {k: v for k, v in job.counters.items() if v or ended}
    tail = f" · {counters_text(counters)}" if counters else ""
    if job.state is JobState.RUNNING:
        speed = f" · {rate:.1f}/s" if rate is not None else ""
        return f"{elapsed} · ETA {eta}{speed}{tail}"
    ran = ran_text(job)
    return f"{ran}{tail}" if ran else f"--:--{tail}"


def ran_text(job: Job) -> str:
    """A finished job's run time ("ran 4.2 s", "ran 01:05"); "" when it has none (never ran,
    or it runs now)."""
    if job.state is JobState.RUNNING or job.started_at is None or job.finished_at is None:
        return ""
    took = job.finished_at - job.started_at
    return f"ran {took:.1f} s" if 0 <= took < 10 else f"ran {clock_text(max(0.0, took))}"


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
