"""The pure admission rules: token bucket per tenant, queued-job bounds, bounded memory."""

from __future__ import annotations

import pytest

from wsitui.core.admission import PRUNE_AT, Admission, Limits, Refusal


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**kw: object) -> tuple[Admission, Clock]:
    clock = Clock()
    return Admission(Limits(**kw), clock), clock  # type: ignore[arg-type]


def test_burst_then_one_line_refusal_then_refill_at_the_rate():
    adm, clock = make(rate=2.0, burst=3)
    assert [adm.admit("alice", 1, 0, 0) for _ in range(3)] == [None, None, None]
    refused = adm.admit("alice", 1, 0, 0)
    assert refused is not None and refused.refusal is Refusal.RATE_LIMITED
    assert refused.message.startswith("tenant alice: rate limited, retry in 0.5 s")
    assert "\n" not in refused.message
    assert refused.retry_after == pytest.approx(0.5)
    clock.now += 0.3  # not yet a whole token: still refused, the wait shrinks
    again = adm.admit("alice", 1, 0, 0)
    assert again is not None and again.message.startswith(
        "tenant alice: rate limited, retry in 0.2 s"
    )
    clock.now += 0.2
    assert adm.admit("alice", 1, 0, 0) is None
    assert adm.admitted == 4 and adm.refused[Refusal.RATE_LIMITED] == 2


def test_tenants_have_their_own_buckets():
    adm, _ = make(rate=1.0, burst=2)
    for _ in range(5):
        adm.admit("flood", 1, 0, 0)
    assert adm.admit("flood", 1, 0, 0) is not None
    assert adm.admit("bob", 1, 0, 0) is None  # bob is untouched by the flood


def test_a_refill_never_exceeds_the_burst_and_a_clock_going_back_refills_nothing():
    adm, clock = make(rate=10.0, burst=2)
    clock.now += 3600  # an hour idle: still only `burst` at once
    assert [adm.admit("a", 1, 0, 0) is None for _ in range(3)] == [True, True, False]
    clock.now -= 100
    assert adm.admit("a", 1, 0, 0) is not None


def test_queue_bounds_count_the_whole_submission_and_take_no_token():
    adm, _ = make(rate=1.0, burst=1, max_queued_per_tenant=10, max_queued=100)
    per_tenant = adm.admit("alice", 3, 8, 8)  # 8 + 3 > 10: the whole workflow is refused
    assert per_tenant is not None and per_tenant.refusal is Refusal.QUEUE_FULL
    assert per_tenant.message.startswith("tenant alice: queue full: 8 jobs queued (limit 10")
    total = adm.admit("bob", 1, 0, 10_000)
    assert total is not None
    assert total.message.startswith("queue full: 10,000 jobs queued (limit 100)")
    # Neither refusal spent alice's or bob's only token.
    assert adm.admit("alice", 2, 8, 8) is None
    assert adm.admit("bob", 1, 0, 99) is None
    assert adm.refused[Refusal.QUEUE_FULL] == 2


def test_no_limits_admit_everything():
    adm, _ = make()
    assert all(adm.admit("t", 1000, 10**9, 10**9) is None for _ in range(1000))
    assert adm.tracked() == 0


def test_memory_stays_bounded_with_many_tenants():
    adm, clock = make(rate=100.0, burst=5)
    for i in range(3 * PRUNE_AT):
        adm.admit(f"t{i}", 1, 0, 0)
        clock.now += 0.01  # older buckets refill and can be forgotten
    assert adm.tracked() <= PRUNE_AT + 1


@pytest.mark.parametrize(
    "kw", [{"rate": 0.0}, {"rate": float("nan")}, {"burst": 0}, {"max_queued": 0}]
)
def test_bad_limits_are_refused_with_the_name(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        Limits(**kw)  # type: ignore[arg-type]
