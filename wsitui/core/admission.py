"""Admission control for submissions: a token bucket per tenant and bounds on queued jobs.

Pure (no I/O, the clock is injected), called by the engine at the top of `submit` / `add_job`
before anything changes. A submission is one call, whatever its number of jobs; it costs one
token of its tenant's bucket (refilled at `rate` per second up to `burst`). The queue bounds
count PENDING jobs (held or queued, not running), per tenant and in total, including the jobs
the submission would add: a workflow is admitted whole or not at all.

Memory is bounded: a tenant whose bucket has refilled is the same as a tenant never seen, so
full buckets are dropped once there are many.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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
        lim = self.limits
        now = self.clock()
        bucket = self._refill(tenant, now) if lim.rate is not None else None
        if bucket is not None and bucket.tokens < 1.0:
            assert lim.rate is not None
            wait = (1.0 - bucket.tokens) / lim.rate
            return self._refuse(
                Refusal.RATE_LIMITED,
                f"tenant {tenant}: rate limited, retry in {_seconds(wait)} "
                f"(limit {lim.rate:g}/s, burst {lim.burst})",
                wait,
            )
        per_tenant = lim.max_queued_per_tenant
        if per_tenant is not None and queued_tenant + jobs > per_tenant:
            return self._refuse(
                Refusal.QUEUE_FULL,
                f"tenant {tenant}: queue full: {queued_tenant:,} jobs queued "
                f"(limit {per_tenant:,} per tenant); wait for some to finish",
            )
        if lim.max_queued is not None and queued_total + jobs > lim.max_queued:
            return self._refuse(
                Refusal.QUEUE_FULL,
                f"queue full: {queued_total:,} jobs queued (limit {lim.max_queued:,}); "
                "wait for some to finish",
            )
        if bucket is not None:
            bucket.tokens -= 1.0
            self._buckets[tenant] = bucket
            if len(self._buckets) > PRUNE_AT:
                self._prune(now)
        self.admitted += 1
        return None

    def _refill(self, tenant: str, now: float) -> _Bucket:
        assert self.limits.rate is not None
        burst = float(self.limits.burst)
        bucket = self._buckets.get(tenant)
        if bucket is None:
            return _Bucket(burst, now)
        # A clock that went backwards refills nothing (and never takes tokens away).
        gained = max(0.0, now - bucket.at) * self.limits.rate
        return _Bucket(min(burst, bucket.tokens + gained), max(now, bucket.at))

    def _refuse(self, refusal: Refusal, message: str, wait: float = 0.0) -> Decision:
        self.refused[refusal] += 1
        return Decision(refusal, message, wait)

    def _prune(self, now: float) -> None:
        for tenant in [
            t for t in self._buckets if self._refill(t, now).tokens >= self.limits.burst
        ]:
            del self._buckets[tenant]

    def tracked(self) -> int:
        """Buckets held in memory (for tests of the bound)."""
        return len(self._buckets)


def _seconds(wait: float) -> str:
    """`1.2 s`; never `0.0 s` for a wait that is not over (rounded up to a tenth)."""
    return f"{max(0.1, math.ceil(wait * 10 - 1e-6) / 10):.1f} s"
