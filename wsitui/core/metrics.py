"""Engine metrics gathered from events, and the one snapshot every face reads.

`Metrics` is a bus listener with bounded memory (one bucket a minute for the last hour, a few
seconds of progress samples, totals keyed by job type and state, histograms with fixed
buckets), so a week-long run does not grow it. Besides tiles it sums the counters each job type
declares as `totals` (e.g. cells found): the executors say which, this module names none.
`Metrics.snapshot(engine)` joins those totals with the engine's live numbers (queue, workers,
tenants, resources): the TUI's metrics screen and the Prometheus endpoint both read it, so the
two can never disagree.

Everything here runs on the engine's event-loop thread (listeners are called there, and the
metrics endpoint serves from the same loop), so no locks are needed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from wsitui.core.events import Event, JobProgress, JobStateChanged
from wsitui.core.executor import Total
from wsitui.core.records import Job, JobState

if TYPE_CHECKING:
    from wsitui.core.engine import Engine

MINUTES_KEPT = 60
# Upper bounds in seconds. Jobs run from seconds (a mask) to hours (cells on a big slide).
LATENCY_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
                   14400.0, 43200.0, 86400.0)  # fmt: skip
WAIT_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0)
MAX_BRANCH_LABELS = 20  # branch names are user ids: the rest are summed under OTHER_BRANCH
OTHER_BRANCH = "(other)"  # parentheses cannot appear in a branch name: no clash


@dataclass
class Histogram:
    """Counts per fixed upper bound (cumulative when read), their sum and count."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * len(self.bounds)

    def observe(self, value: float) -> None:
        value = max(0.0, value)
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= it), ending with (inf, count)."""
        out, running = [], 0
        for bound, n in zip(self.bounds, self.counts, strict=True):
            running += n
            out.append((bound, running))
        out.append((float("inf"), self.count))
        return out

    def copy(self) -> Histogram:
        return Histogram(self.bounds, list(self.counts), self.total, self.count)


@dataclass(frozen=True)
class MetricsSnapshot:
    """The numbers at one instant: live engine state and totals since this process started."""

    queued: int  # startable jobs waiting for a worker (not held, not running)
    queued_by_branch: Mapping[str, int]  # bounded: at most MAX_BRANCH_LABELS + 1 keys
    pending: int  # every PENDING job, held ones included (what admission bounds)
    running: int
    workers_busy: int
    workers_free: int
    max_workers: int
    resources: Mapping[str, tuple[int, int]]  # name: (used, cap)
    tenants_active: int
    tenants_waiting: int
    max_active_users: int
    tiles: Mapping[str, int]  # job type: tiles processed
    totals: tuple[tuple[Total, int], ...]  # each counter the executors declare, summed
    outcomes: Mapping[tuple[str, str], int]  # (job type, final state): jobs
    latency: Mapping[str, Histogram]  # job type: seconds from start to end of a run
    queue_wait: Mapping[str, Histogram]  # job type: seconds from queued to started
    submissions_admitted: int
    submissions_refused: Mapping[str, int]  # reason: count
    tiles_per_second: float


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
    _last_done: dict[str, int] = field(default_factory=dict)  # live jobs only
    _last_counters: dict[str, dict[str, int]] = field(default_factory=dict)  # live jobs only
    _queued_at: dict[str, float] = field(default_factory=dict)
    _last_ts: float = 0.0
    _tiles_total: dict[str, int] = field(default_factory=dict)
    _counted: dict[tuple[str, str], int] = field(default_factory=dict)  # (type, counter): sum
    _outcomes: dict[tuple[str, str], int] = field(default_factory=dict)
    _latency: dict[str, Histogram] = field(default_factory=dict)
    _wait: dict[str, Histogram] = field(default_factory=dict)
    _branches: list[str] = field(default_factory=list)  # the first MAX_BRANCH_LABELS seen

    def __call__(self, event: Event) -> None:
        self._last_ts = max(self._last_ts, event.ts)
        if isinstance(event, JobStateChanged):
            job = event.job
            kind = str(job.job_type)
            self._count_work(event.ts, job)
            if job.state is JobState.RUNNING:
                self._running.add(job.id)
                queued = self._queued_at.pop(job.id, None)
                if queued is not None and event.previous is not JobState.RUNNING:
                    self._wait.setdefault(kind, Histogram(WAIT_BUCKETS)).observe(event.ts - queued)
            else:
                self._running.discard(job.id)
            if job.state is JobState.PENDING and job.enqueued:
                self._queued_at.setdefault(job.id, event.ts)
            elif job.state is not JobState.RUNNING:
                self._queued_at.pop(job.id, None)
            if job.state.terminal and event.previous is not job.state:  # not a side effect
                key = (kind, str(job.state))
                self._outcomes[key] = self._outcomes.get(key, 0) + 1
            if (
                event.previous is JobState.RUNNING
                and job.state.terminal
                and job.started_at is not None
                and job.finished_at is not None
            ):
                seconds = job.finished_at - job.started_at
                minute = self._minute(job.finished_at)
                minute.latency_sum += seconds
                minute.finished += 1
                self._latency.setdefault(kind, Histogram(LATENCY_BUCKETS)).observe(seconds)
            minute = self._minute(event.ts)
            minute.max_running = max(minute.max_running, len(self._running))
            minute.end_running = len(self._running)
        elif isinstance(event, JobProgress):
            self._count_work(event.ts, event.job, resumed=event.resumed)
            while self._tiles and self._tiles[0][0] < event.ts - self.window_s:
                self._tiles.popleft()

    def _count_work(self, ts: float, job: Job, *, resumed: bool = False) -> None:
        """Tiles and counters done since the last event of the job. The first sight of a job
        is its baseline, and so is a run's first count when it starts from earlier work
        (`resumed`: kept shards or a checkpoint, which a job row saved every 2 s need not
        show): a resumed job does not count its old tiles or cells again. A count that went
        down (a retry, a restart) is a new baseline."""
        done, kind = job.tiles_done, str(job.job_type)
        before = done if resumed else self._last_done.get(job.id, done)
        first = resumed or job.id not in self._last_counters
        seen = self._last_counters.get(job.id, {})
        if done > before:
            self._tiles_total[kind] = self._tiles_total.get(kind, 0) + done - before
            self._tiles.append((ts, done - before))
        for name, value in job.counters.items():
            old = value if first else seen.get(name, 0)  # after the first sight, absent is 0
            if value > old:
                key = (kind, name)
                self._counted[key] = self._counted.get(key, 0) + value - old
        if job.state.terminal:  # forget finished jobs: memory follows live jobs only
            self._last_done.pop(job.id, None)
            self._last_counters.pop(job.id, None)
        else:
            self._last_done[job.id] = done
            self._last_counters[job.id] = {**seen, **job.counters}

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

    def snapshot(self, engine: Engine) -> MetricsSnapshot:
        """Live engine numbers and this listener's totals, read together on the loop thread."""
        stats = engine.stats()
        by_branch: dict[str, int] = {}
        for branch, depth in sorted(engine.queued_by_branch().items()):
            if branch not in self._branches and len(self._branches) < MAX_BRANCH_LABELS:
                self._branches.append(branch)
            label = branch if branch in self._branches else OTHER_BRANCH
            by_branch[label] = by_branch.get(label, 0) + depth
        for branch in self._branches:  # a label once shown stays (at 0), never disappears
            by_branch.setdefault(branch, 0)
        admission = engine.admission
        totals: dict[str, tuple[Total, int]] = {}  # by metric: two types may share one
        for kind, executor in sorted(engine.executors.items()):
            for total in executor.totals:
                _, before = totals.get(total.metric, (total, 0))
                totals[total.metric] = total, before + self._counted.get((kind, total.counter), 0)
        return MetricsSnapshot(
            queued=stats.queued,
            queued_by_branch=by_branch,
            pending=engine.pending_jobs(),
            running=stats.running,
            workers_busy=stats.running,
            workers_free=max(0, stats.max_workers - stats.running),
            max_workers=stats.max_workers,
            resources=dict(stats.resources),
            tenants_active=len(stats.active),
            tenants_waiting=len(stats.waiting),
            max_active_users=stats.max_active_users,
            tiles=dict(self._tiles_total),
            totals=tuple(totals.values()),
            outcomes=dict(self._outcomes),
            latency={k: h.copy() for k, h in self._latency.items()},
            queue_wait={k: h.copy() for k, h in self._wait.items()},
            submissions_admitted=admission.admitted,
            submissions_refused={str(k): v for k, v in admission.refused.items()},
            tiles_per_second=self.tiles_per_second(engine.clock()),
        )
