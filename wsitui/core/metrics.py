"""Engine metrics gathered from events: job latency per minute, busy workers, tiles per second.

A bus listener with bounded memory (one bucket a minute for the last hour, a few seconds of
progress samples), so a week-long run does not grow it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from wsitui.core.events import Event, JobProgress, JobStateChanged
from wsitui.core.models import JobState

MINUTES_KEPT = 60


@dataclass
class _Minute:
    latency_sum: float = 0.0
    finished: int = 0
    max_running: int = 0
    end_running: int = 0  # busy workers after the minute's last event


@dataclass
class Metrics:
    window_s: float = 5.0  # tiles/s averaged over this many seconds
    _minutes: dict[int, _Minute] = field(default_factory=dict)
    _running: set[str] = field(default_factory=set)
    _tiles: deque[tuple[float, int]] = field(default_factory=deque)
    _last_done: dict[str, int] = field(default_factory=dict)
    _last_ts: float = 0.0

    def __call__(self, event: Event) -> None:
        self._last_ts = max(self._last_ts, event.ts)
        if isinstance(event, JobStateChanged):
            job = event.job
            if job.state is JobState.RUNNING:
                self._running.add(job.id)
            else:
                self._running.discard(job.id)
            if (
                event.previous is JobState.RUNNING
                and job.state.terminal
                and job.started_at is not None
                and job.finished_at is not None
            ):
                minute = self._minute(job.finished_at)
                minute.latency_sum += job.finished_at - job.started_at
                minute.finished += 1
            minute = self._minute(event.ts)
            minute.max_running = max(minute.max_running, len(self._running))
            minute.end_running = len(self._running)
        elif isinstance(event, JobProgress):
            before = self._last_done.get(event.job.id, 0)
            done = event.job.tiles_done
            self._last_done[event.job.id] = done
            if done > before:
                self._tiles.append((event.ts, done - before))
            while self._tiles and self._tiles[0][0] < event.ts - self.window_s:
                self._tiles.popleft()

    def _minute(self, ts: float) -> _Minute:
        key = int(ts // 60)
        if key not in self._minutes:
            self._minutes[key] = _Minute()
            for old in [k for k in self._minutes if k <= key - MINUTES_KEPT]:
                del self._minutes[old]
        return self._minutes[key]

    def latency_per_minute(self, now: float, minutes: int = 30) -> list[float]:
        """Mean seconds from start to end of jobs that ended in each of the last minutes."""
        last = int(now // 60)
        out = []
        for key in range(last - minutes + 1, last + 1):
            m = self._minutes.get(key)
            out.append(m.latency_sum / m.finished if m and m.finished else 0.0)
        return out

    def workers_per_minute(self, now: float, minutes: int = 30) -> list[float]:
        """Most workers busy at once in each of the last minutes."""
        last = int(now // 60)
        first = last - minutes + 1
        before = [k for k in self._minutes if k < first]
        carry = self._minutes[max(before)].end_running if before else 0
        out = []
        for key in range(first, last + 1):
            m = self._minutes.get(key)
            if m is None:  # no event: the count it started with held all minute
                out.append(float(carry))
            else:
                out.append(float(max(m.max_running, carry)))
                carry = m.end_running
        return out

    def tiles_per_second(self, now: float) -> float:
        recent = sum(n for ts, n in self._tiles if ts >= now - self.window_s)
        return recent / self.window_s

    @property
    def running(self) -> int:
        return len(self._running)
