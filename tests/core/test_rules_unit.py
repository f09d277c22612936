"""Direct checks of the pure scheduler for cases found by the stateful test."""

from wsitui.core.rules import Phase, Scheduler


def test_dependents_retried_while_blocked_reenter_after_their_upstream():
    # Found by hypothesis: c and b were retried (in that order) while blocked by a, so c held
    # an older seq than b; when a's retry unblocked both, c must still queue behind b.
    s = Scheduler(max_workers=2, max_active_users=1)
    lane = ("t", "w", "main")
    s.add("a", "t", ("t", "w", "other"), [], 0, Phase.HELD)
    s.add("b", "t", lane, ["a"], 0, Phase.HELD)
    s.add("c", "t", lane, ["b"], 0, Phase.HELD)
    for job in ("a", "b", "c"):
        s.enqueue(job)
    assert s.next_starts() == ["a"]
    s.finish("a", Phase.FAILED)
    s.cancel_queued("b")
    s.cancel_queued("c")
    s.retry("c")
    s.retry("b")
    s.retry("a")
    assert s.jobs["b"].seq < s.jobs["c"].seq
    started = []
    for _ in range(3):
        batch = s.next_starts()
        started += batch
        for job in batch:
            s.finish(job, Phase.SUCCEEDED)
    assert started == ["a", "b", "c"]


def test_round_robin_within_one_dispatch_pass():
    s = Scheduler(max_workers=4, max_active_users=3)
    for tenant, lanes in (("big", 10), ("small", 2), ("tiny", 1)):
        for i in range(lanes):
            job = f"{tenant}{i}"
            s.add(job, tenant, (tenant, "w", f"b{i}"), [], 0, Phase.HELD)
            s.enqueue(job)
    started = s.next_starts()
    assert started == ["big0", "small0", "tiny0", "big1"]
    for job in started:
        s.finish(job, Phase.SUCCEEDED)
    # tiny has nothing left; the next pass resumes after big: small, then big, alternating.
    assert s.next_starts() == ["small1", "big2", "big3", "big4"]
