"""Direct checks of the pure scheduler for cases found by the stateful test."""

from wsitui.core.rules import SchedState, Scheduler, TenantRow


def test_dependents_retried_while_blocked_reenter_after_their_upstream():
    # Found by hypothesis: c and b were retried (in that order) while blocked by a, so c held
    # an older seq than b; when a's retry unblocked both, c must still queue behind b.
    s = Scheduler(max_workers=2, max_active_users=1)
    lane = ("t", "w", "main")
    s.add("a", "t", ("t", "w", "other"), [], 0, SchedState.HELD)
    s.add("b", "t", lane, ["a"], 0, SchedState.HELD)
    s.add("c", "t", lane, ["b"], 0, SchedState.HELD)
    for job in ("a", "b", "c"):
        s.enqueue(job)
    assert s.next_starts() == ["a"]
    s.finish("a", SchedState.FAILED)
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
            s.finish(job, SchedState.SUCCEEDED)
    assert started == ["a", "b", "c"]


def test_round_robin_within_one_dispatch_pass():
    s = Scheduler(max_workers=4, max_active_users=3)
    for tenant, lanes in (("big", 10), ("small", 2), ("tiny", 1)):
        for i in range(lanes):
            job = f"{tenant}{i}"
            s.add(job, tenant, (tenant, "w", f"b{i}"), [], 0, SchedState.HELD)
            s.enqueue(job)
    started = s.next_starts()
    assert started == ["big0", "small0", "tiny0", "big1"]
    for job in started:
        s.finish(job, SchedState.SUCCEEDED)
    # tiny has nothing left; the next pass resumes after big: small, then big, alternating.
    assert s.next_starts() == ["small1", "big2", "big3", "big4"]


def test_fair_share_holds_per_resource_a_busy_cpu_tenant_still_gets_the_gpu():
    """#15.4: A's CPU jobs keep it "recently served"; B keeps adding GPU jobs. A's GPU job
    must win the GPU the next time it frees (it was never served the GPU), not after all of B's."""
    s = Scheduler(max_workers=4, max_active_users=2, capacity={"gpu": 1})
    gpu = {"gpu": 1}
    s.add("b0", "B", ("B", "w", "gpu"), [], 0, SchedState.HELD, gpu)
    s.enqueue("b0")
    assert s.next_starts() == ["b0"]
    s.add("a_gpu", "A", ("A", "w", "gpu"), [], 0, SchedState.HELD, gpu)
    s.enqueue("a_gpu")
    s.add("a0", "A", ("A", "w", "cpu"), [], 0, SchedState.HELD)
    s.enqueue("a0")
    assert s.next_starts() == ["a0"]  # the GPU is busy: A's CPU job goes
    gpu_grants, b_running, a_running = [], "b0", "a0"
    for i in range(1, 21):
        s.add(f"a{i}", "A", ("A", "w", "cpu"), [], 0, SchedState.HELD)
        s.enqueue(f"a{i}")
        s.finish(a_running, SchedState.SUCCEEDED)  # A is served again, on the CPU
        (a_running,) = s.next_starts()
        s.add(f"b{i}", "B", ("B", "w", "gpu"), [], 0, SchedState.HELD, gpu)
        s.enqueue(f"b{i}")
        s.finish(b_running, SchedState.SUCCEEDED)  # the GPU frees
        started = s.next_starts()
        gpu_grants += [j for j in started if s.jobs[j].needs]
        if "a_gpu" in started:
            break
        (b_running,) = started
    assert gpu_grants == ["a_gpu"]  # the first time the GPU freed after A's job queued


def test_a_tenant_whose_only_work_waits_for_a_busy_gpu_gives_its_slot_up():
    """#15.5: B's only job waits for the GPU A holds; C's CPU jobs could run on idle workers.
    B gives its slot to C and waits first in line; it is admitted at the next free slot."""
    s = Scheduler(max_workers=4, max_active_users=2, capacity={"gpu": 1})
    gpu = {"gpu": 1}
    s.add("a1", "A", ("A", "w", "g"), [], 0, SchedState.HELD, gpu)
    s.enqueue("a1")
    assert s.next_starts() == ["a1"]
    s.add("b1", "B", ("B", "w", "g"), [], 0, SchedState.HELD, gpu)
    s.enqueue("b1")
    assert s.next_starts() == [] and s.active == ["A", "B"]  # no one else waits: B keeps it
    s.take_effects()
    s.add("c1", "C", ("C", "w", "x"), [], 0, SchedState.HELD)
    s.add("c2", "C", ("C", "w", "y"), [], 0, SchedState.HELD)
    s.enqueue("c1")
    s.enqueue("c2")
    assert s.next_starts() == ["c1", "c2"]
    assert s.active == ["A", "C"] and list(s.waiting) == ["B"]
    changes = s.take_effects().tenants
    assert [(c.tenant, c.admitted, c.yielded) for c in changes] == [
        ("B", False, True),
        ("C", True, False),
    ]
    assert changes[1].passed_over == ("B",)  # B waited first but could start nothing
    s.finish("a1", SchedState.SUCCEEDED)  # A is done: its slot goes to B, first in line
    assert s.next_starts() == ["b1"] and s.active == ["C", "B"]


def _run_a_b_then_start_c(s: Scheduler) -> None:
    """Enqueue a-d (one worker), run a then b to success, start c (which needs b)."""
    for job in "abcd":
        s.enqueue(job)
    for expected in "ab":
        assert s.next_starts() == [expected]
        s.finish(expected, SchedState.SUCCEEDED)
    assert s.next_starts() == ["c"]


def test_a_running_job_whose_upstream_is_canceled_under_it_stays_parked_when_stopped():
    # Found by hypothesis: b ran after a; a was rerun and its new attempt canceled while b's
    # dependent c ran. When the engine stops c, c must not go back into its lane (its upstream
    # chain is canceled, R4): it is parked, not live, and the lane's next job runs instead.
    s = Scheduler(max_workers=1, max_active_users=1)
    s.add("a", "t", ("t", "w", "b0"), [], 0, SchedState.HELD)
    s.add("b", "t", ("t", "w", "b0"), ["a"], 0, SchedState.HELD)
    s.add("c", "t", ("t", "w", "b1"), ["b"], 0, SchedState.HELD)
    s.add("d", "t", ("t", "w", "b1"), [], 0, SchedState.HELD)
    _run_a_b_then_start_c(s)
    s.rerun("a")  # b (its direct dependent) is not running: allowed
    s.cancel_queued("a")
    assert s.jobs["c"].blocked  # its upstream chain is canceled while it runs
    s.interrupt("c")
    assert s.jobs["c"].parked and not s.jobs["c"].in_lane
    assert s.next_starts() == ["d"]
    s.finish("d", SchedState.SUCCEEDED)
    assert not s.is_live("t") and s.active == []
    s.retry("a")  # a back: b stays SUCCEEDED, c unblocks and waits for nothing but a's rerun
    assert s.next_starts() == ["a"]
    s.finish("a", SchedState.SUCCEEDED)
    assert s.next_starts() == ["c"]


def test_a_restart_under_a_lower_tenant_cap_releases_the_last_admitted_first_in_line():
    # Rows of a process with 3 slots: c, a, d active (a admitted after b arrived: b was passed
    # over); b waiting. Reopened with 1 slot: c stays, a and d wait ahead of b, in admission
    # order, and are released as a change (the event log must show they lost their slots).
    s = Scheduler(max_workers=4, max_active_users=1)
    for t in ("c", "a", "d", "b"):
        s.add(f"{t}1", t, (t, "w", "main"), [], 0, SchedState.HELD)
        s.enqueue(f"{t}1")
    rows = [
        TenantRow("c", "active", 1, 4),
        TenantRow("b", "waiting", 2, -1),
        TenantRow("a", "active", 3, 5),
        TenantRow("d", "active", 4, 6),
    ]
    s.restore_tenants(rows)
    assert (s.active, list(s.waiting)) == (["c"], ["a", "d", "b"])
    changes = s.take_effects().tenants
    assert [(c.tenant, c.admitted, c.cap_lowered) for c in changes] == [
        ("a", False, True),
        ("d", False, True),
    ]
    # What it persists keeps that line at the next restart (no release the second time).
    again = Scheduler(max_workers=4, max_active_users=1)
    for t in ("c", "a", "d", "b"):
        again.add(f"{t}1", t, (t, "w", "main"), [], 0, SchedState.HELD)
        again.enqueue(f"{t}1")
    again.restore_tenants(s.tenant_rows())
    assert (again.active, list(again.waiting)) == (["c"], ["a", "d", "b"])
    assert again.take_effects().tenants == []


def _counts_agree(s: Scheduler) -> list[str]:
    """R4's bookkeeping: each job's held/bad counts are what its dependencies contribute now."""
    wrong = []
    for job in s.jobs.values():
        held = sum(s.jobs[d].contribution()[0] for d in job.deps)
        bad = sum(s.jobs[d].contribution()[1] for d in job.deps)
        if (job.held_deps, job.bad_deps) != (held, bad):
            wrong.append(f"{job.id}: counts {job.held_deps}/{job.bad_deps}, deps give {held}/{bad}")
    return wrong


def test_interrupt_spreads_a_changed_contribution_to_dependents_like_retry():
    # qa9 #4: `interrupt` turned a RUNNING job QUEUED without `_propagate`, unlike retry,
    # rerun, enqueue and cancel. A running job cannot gain a held upstream today, so nothing
    # showed; here b is given one under it (as a future transition could): stopped, it is
    # parked behind it, and so must c be (out of its lane, not live), as after a retry.
    s = Scheduler(max_workers=2, max_active_users=1)
    s.add("a", "t", ("t", "w", "x"), [], 0, SchedState.HELD)
    s.add("b", "t", ("t", "w", "x"), ["a"], 0, SchedState.HELD)
    s.add("c", "t", ("t", "w", "y"), ["b"], 0, SchedState.HELD)
    for job in "abc":
        s.enqueue(job)
    assert s.next_starts() == ["a"]
    s.finish("a", SchedState.SUCCEEDED)
    assert s.next_starts() == ["b"]
    assert _counts_agree(s) == []
    s.jobs["a"].state = SchedState.HELD  # its upstream held under the running job, counted
    s.jobs["b"].held_deps = 1  # as `_propagate` counts it
    assert _counts_agree(s) == []
    s.interrupt("b")
    assert s.jobs["b"].parked and s.jobs["c"].parked
    assert _counts_agree(s) == []
    assert not s.jobs["c"].in_lane and s.lanes[("t", "w", "y")].queue == []
    assert not s.is_live("t") and s.active == []


def test_counts_agree_through_interrupts_of_jobs_blocked_while_running():
    # The one way a running job gains a bad upstream (a rerun above its upstream, canceled):
    # interrupting it, then retrying the culprit, keeps every count equal to its deps' view.
    s = Scheduler(max_workers=1, max_active_users=1)
    s.add("a", "t", ("t", "w", "x"), [], 0, SchedState.HELD)
    s.add("b", "t", ("t", "w", "x"), ["a"], 0, SchedState.HELD)
    s.add("c", "t", ("t", "w", "y"), ["b"], 0, SchedState.HELD)
    s.add("d", "t", ("t", "w", "z"), ["c"], 0, SchedState.HELD)
    _run_a_b_then_start_c(s)
    s.rerun("a")
    s.cancel_queued("a")
    s.interrupt("c")
    assert _counts_agree(s) == [] and s.jobs["c"].blocked and s.jobs["d"].blocked
    s.retry("a")
    assert _counts_agree(s) == [] and not s.jobs["d"].blocked
