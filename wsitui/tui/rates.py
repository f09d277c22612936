"""Measured work rates per job: tiles/s and the ETA come from work actually done.

A job's rate is the tiles it finished inside the last `WINDOW_S` seconds divided by the time
they took (so it decays to 0 when the job stops moving, and a finished or stalled job stops
counting). The baseline is the first *change* of a job's progress seen by this process: a job
that resumes at 32/48 from a checkpoint, or an executor that reports a burst of tiles it only
skipped, moves its counter once without doing work, and that first jump is never taken as
speed. Until a second change is seen the rate is unknown and the ETA says so ("--:--").
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from wsitui.core.records import Job, JobState

WINDOW_S = 20.0  # the smoothing window, stated in the help and the README


@dataclass(slots=True)
class _Meter:
    attempt: int
    last_done: int
    base: tuple[float, int] | None = None  # (t, done) at the first change seen
    samples: deque[tuple[float, int]] = field(default_factory=deque)  # later changes


class Rates:
    """Fed every job snapshot the app sees (engine progress events); asked at a clock time."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self._meters: dict[str, _Meter] = {}
        self._ended_at = float("-inf")  # when a job last stopped running

    def observe(self, job: Job, t: float) -> None:
        meter = self._meters.get(job.id)
        if job.state is not JobState.RUNNING:
            if self._meters.pop(job.id, None) is not None:  # finished, or back in its lane
                self._ended_at = t
            return
        if meter is None or meter.attempt != job.attempt:
            self._meters[job.id] = _Meter(job.attempt, job.tiles_done)
            return
        if job.tiles_done == meter.last_done:
            return
        meter.last_done = job.tiles_done
        if meter.base is None:  # the first jump: a baseline, never speed
            meter.base = (t, job.tiles_done)
            return
        meter.samples.append((t, job.tiles_done))
        start = t - self.window_s  # keep one sample at or before the window's start
        while len(meter.samples) > 1 and meter.samples[1][0] <= start:
            meter.samples.popleft()

    def rate(self, job_id: str, now: float) -> float | None:
        """Tiles per second over the window; None until measured, 0.0 once it stalls."""
        meter = self._meters.get(job_id)
        if meter is None or meter.base is None or not meter.samples:
            return None
        base_t, done_at_start = meter.base
        start = max(now - self.window_s, base_t)
        if now <= start:
            return None
        for t, done in meter.samples:
            if t > start:
                break
            done_at_start = done
        return max(0.0, (meter.last_done - done_at_start) / (now - start))

    def eta(self, job: Job, now: float) -> float | None:
        """Seconds left at the measured rate; None while unknown or stalled."""
        rate = self.rate(job.id, now)
        if not rate or not job.tiles_total:
            return None
        return max(0, job.tiles_total - job.tiles_done) / rate

    def total(self, now: float) -> float | None:
        """The sum of the running jobs' measured rates: the top bar's tiles/s. None while no
        rate can be known but work goes on: jobs run, or one ended within the window, and none
        has been measured (a short mask reports all its tiles in one step, never taken as
        speed): 0.0 there claimed that nothing moved while jobs finished. 0.0 once nothing
        has run for a whole window, or every measured job stalled."""
        rates = [r for r in (self.rate(job_id, now) for job_id in self._meters) if r is not None]
        if rates:
            return sum(rates)
        if self._meters or now - self._ended_at < self.window_s:
            return None
        return 0.0
