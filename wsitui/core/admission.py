"""Admission control for submissions: a token bucket per tenant and bounds on queued jobs.

Pure (no I/O, the clock is injected), called by the engine at the top of `submit` / `add_job`
/ `retry` / `rerun` (a new attempt is one more PENDING job) before anything changes. A
submission is one call, whatever its number of jobs; it costs one token of its tenant's bucket
(refilled at `rate` per second up to `burst`). The queue bounds count PENDING jobs (held or
queued, not running), per tenant and in total, including the jobs the submission would add: a
workflow is admitted whole or not at all.

Memory is bounded: a tenant whose bucket has refilled is the same as a tenant never seen, so
full buckets are dropped once there are many.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

PRUNE_AT = 4096  # buckets kept before full ones are dropped


class Refusal(StrEnum):
    RATE_LIMITED = "rate_limited"
    QUEUE_FULL = "queue_full"


@dataclass(frozen=True, slots=True)
class Limits:
    """`rate`: submissions per second per tenant (None: no rate limit); `burst`: how many may
    come at once; `max_queued_per_tenant` / `max_queued`: PENDING jobs (None: unbounded)."""

    rate: float | None = None
    burst: int = 1
    max_queued_per_tenant: int | None = None
    max_queued: int | None = None

    def __post_init__(self) -> None:
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(
                f"rate must be a positive number of submissions per second: {self.rate}"
            )
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1: {self.burst}")
        for name in ("max_queued_per_tenant", "max_queued"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1: {value}")


@dataclass(frozen=True, slots=True)
class Decision:
    """Why a submission was refused, and the one line that says so."""

    refusal: Refusal
    message: str
    retry_after: float = 0.0  # seconds until a token is back (rate limited only)
    never: bool = False  # larger than the limit itself: no wait lets it in (the message says)


@dataclass(slots=True)
class _Series:
    """Jobs of a series checked together (`preview`): per tenant and in total, the whole
    series' and those of the submissions before the one being checked."""

    whole: dict[str, int] = field(default_factory=dict)
    whole_total: int = 0
    before: dict[str, int] = field(default_factory=dict)
    before_total: int = 0


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


@dataclass
class Admission:
    limits: Limits = field(default_factory=Limits)
    clock: Callable[[], float] = field(default=lambda: 0.0)
    admitted: int = 0  # submissions let through
    refused: dict[Refusal, int] = field(default_factory=lambda: dict.fromkeys(Refusal, 0))
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def admit(
        self, tenant: str, jobs: int, queued_tenant: int, queued_total: int
    ) -> Decision | None:
        """None and a token taken, or the refusal (nothing taken). `queued_*`: PENDING jobs now."""
        now = self.clock()
        decision, bucket = self._decide(tenant, jobs, queued_tenant, queued_total, now, {})
        if decision is not None:
            return self._refuse(decision)
        if bucket is not None:
            bucket.tokens -= 1.0
            self._buckets[tenant] = bucket
            if len(self._buckets) > PRUNE_AT:
                self._prune(now)
        self.admitted += 1
        return None

    def preview(
        self,
        requests: Sequence[tuple[str, int, int]],
        queued: Mapping[str, int],
        queued_total: int,
    ) -> Decision | None:
        """Would this series of submissions all be admitted? Nothing is taken either way.

        Each request is (tenant, jobs submitted, jobs that become PENDING without a request of
        their own); they are checked in order, each seeing the tokens and queue the earlier
        ones used, as `admit` would. The first refusal is returned (and counted as refused), so
        a face can refuse a whole config before anything of it is submitted.
        """
        now = self.clock()
        sim: dict[str, _Bucket] = {}
        pending = dict(queued)
        total = queued_total
        series = _Series()
        for tenant, jobs, extra in requests:
            series.whole[tenant] = series.whole.get(tenant, 0) + jobs + extra
            series.whole_total += jobs + extra
        for tenant, jobs, extra in requests:
            if jobs > 0:
                decision, bucket = self._decide(
                    tenant, jobs, pending.get(tenant, 0), total, now, sim, series
                )
                if decision is not None:
                    return self._refuse(decision)
                if bucket is not None:
                    bucket.tokens -= 1.0
                    sim[tenant] = bucket
            pending[tenant] = pending.get(tenant, 0) + jobs + extra
            total += jobs + extra
            series.before[tenant] = series.before.get(tenant, 0) + jobs + extra
            series.before_total += jobs + extra
        return None

    def _decide(
        self,
        tenant: str,
        jobs: int,
        queued_tenant: int,
        queued_total: int,
        now: float,
        sim: Mapping[str, _Bucket],
        series: _Series | None = None,
    ) -> tuple[Decision | None, _Bucket | None]:
        """`series`: the submissions checked together (`preview`); the queue counts then hold
        the series' earlier ones, and a series larger than a bound can never fit it."""
        lim = self.limits
        bucket = self._refill(tenant, now, sim.get(tenant)) if lim.rate is not None else None
        if bucket is not None and bucket.tokens < 1.0:
            assert lim.rate is not None
            wait = (1.0 - bucket.tokens) / lim.rate
            return Decision(
                Refusal.RATE_LIMITED,
                f"tenant {tenant}: rate limited, retry in {_seconds(wait)} "
                f"(limit {lim.rate:g}/s, burst {lim.burst})",
                wait,
            ), None
        per_tenant = lim.max_queued_per_tenant
        if per_tenant is not None and jobs > per_tenant:
            return Decision(
                Refusal.QUEUE_FULL,
                f"tenant {tenant}: {jobs:,} jobs at once can never fit the limit of "
                f"{per_tenant:,} PENDING jobs per tenant; raise [limits] max_queued_per_tenant "
                f"to at least {jobs:,}, or split the workflow",
                never=True,
            ), None
        if lim.max_queued is not None and jobs > lim.max_queued:
            return Decision(
                Refusal.QUEUE_FULL,
                f"{jobs:,} jobs at once can never fit the limit of {lim.max_queued:,} PENDING "
                f"jobs in total; raise [limits] max_queued to at least {jobs:,}, or split the "
                "workflow",
                never=True,
            ), None
        series = series or _Series()
        if per_tenant is not None and queued_tenant + jobs > per_tenant:
            whole = series.whole.get(tenant, 0)
            if whole > per_tenant:
                return Decision(
                    Refusal.QUEUE_FULL,
                    f"tenant {tenant}: {whole:,} jobs submitted together can never fit the "
                    f"limit of {per_tenant:,} PENDING jobs per tenant; raise [limits] "
                    f"max_queued_per_tenant to at least {whole:,}, or submit fewer at once",
                    never=True,
                ), None
            before = series.before.get(tenant, 0)
            return Decision(
                Refusal.QUEUE_FULL,
                f"tenant {tenant}: queue full: {_queued(queued_tenant, before, jobs)} "
                f"(limit {per_tenant:,} per tenant); wait for some to finish",
            ), None
        if lim.max_queued is not None and queued_total + jobs > lim.max_queued:
            if series.whole_total > lim.max_queued:
                return Decision(
                    Refusal.QUEUE_FULL,
                    f"{series.whole_total:,} jobs submitted together can never fit the limit "
                    f"of {lim.max_queued:,} PENDING jobs in total; raise [limits] max_queued "
                    f"to at least {series.whole_total:,}, or submit fewer at once",
                    never=True,
                ), None
            return Decision(
                Refusal.QUEUE_FULL,
                f"queue full: {_queued(queued_total, series.before_total, jobs)} "
                f"(limit {lim.max_queued:,}); wait for some to finish",
            ), None
        return None, bucket

    def _refill(self, tenant: str, now: float, bucket: _Bucket | None = None) -> _Bucket:
        assert self.limits.rate is not None
        burst = float(self.limits.burst)
        bucket = bucket or self._buckets.get(tenant)
        if bucket is None:
            return _Bucket(burst, now)
        # A clock that went backwards refills nothing (and never takes tokens away).
        gained = max(0.0, now - bucket.at) * self.limits.rate
        return _Bucket(min(burst, bucket.tokens + gained), max(now, bucket.at))

    def _refuse(self, decision: Decision) -> Decision:
        self.refused[decision.refusal] += 1
        return decision

    def _prune(self, now: float) -> None:
        for tenant in [
            t for t in self._buckets if self._refill(t, now).tokens >= self.limits.burst
        ]:
            del self._buckets[tenant]

    def tracked(self) -> int:
        """Buckets held in memory (for tests of the bound)."""
        return len(self._buckets)


def _queued(counted: int, before: int, jobs: int) -> str:
    """`8 jobs queued`, or, in a series, the jobs queued apart from it and the series' own: a
    config's earlier workflows are not jobs that finishing work makes room for."""
    if before == 0:
        return f"{counted:,} jobs queued"
    return f"{counted - before:,} jobs queued and {before + jobs:,} submitted together"


def _seconds(wait: float) -> str:
    """`1.2 s`; never `0.0 s` for a wait that is not over (rounded up to a tenth)."""
    return f"{max(0.1, math.ceil(wait * 10 - 1e-6) / 10):.1f} s"
