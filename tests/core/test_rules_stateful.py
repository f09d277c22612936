"""Hypothesis drives random submits (some held) / starts / cancels / retries / reruns /
completions / failures / interrupts / restarts across tenants, with GPU jobs under a resource
cap, and checks rules R1-R6 and R9 after every step against facts the test tracks itself."""

from __future__ import annotations

from collections import Counter, defaultdict

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from wsitui.core.rules import SchedState, Scheduler

TENANTS = ["t0", "t1", "t2", "t3", "t4"]
BAD = (SchedState.FAILED, SchedState.CANCELED)


class SchedulerMachine(RuleBasedStateMachine):
    @initialize(workers=st.integers(1, 4), users=st.integers(1, 3), gpus=st.integers(1, 2))
    def setup(self, workers: int, users: int, gpus: int) -> None:
        self.s = Scheduler(max_workers=workers, max_active_users=users, capacity={"gpu": gpus})
        self.needs: dict[str, dict[str, int]] = {}
        self.served: dict[str, int] = {}  # tenant -> tick of its last start since admission
        self.served_res: dict[tuple[str, tuple], int] = {}  # (tenant, class) -> last start
        self.admitted_at: dict[str, int] = {}
        self.tick = 0
        self.memo: dict[tuple[str, str], bool] = {}  # derived facts, valid until phases change
        self.n = 0
        self.wf = 0
        self.phase: dict[str, SchedState] = {}  # the test's own record of every job's phase
        self.arrival: list[str] = []  # tenants in the order they became live while inactive
        self.max_seq_seen = 0
        self.in_lane: set[str] = set()
        self.prev_active: set[str] = set()
        self.resuming: list[str] = []  # running at a restart: they start again first

    # ---- facts the test derives on its own ---------------------------------------------------
    def blocked(self, job_id: str) -> bool:
        key = ("blocked", job_id)
        if key not in self.memo:
            self.memo[key] = any(
                self.phase[d] in BAD or self.blocked(d) for d in self.s.jobs[job_id].deps
            )
        return self.memo[key]

    def behind_held(self, job_id: str) -> bool:
        """An upstream (transitively) is held: the job may not stand in its lane (R4)."""
        key = ("held", job_id)
        if key not in self.memo:
            self.memo[key] = any(
                self.phase[d] is SchedState.HELD
                or (self.phase[d] is SchedState.QUEUED and self.behind_held(d))
                for d in self.s.jobs[job_id].deps
            )
        return self.memo[key]

    def parked(self, job_id: str) -> bool:
        return self.blocked(job_id) or self.behind_held(job_id)

    def live(self, job_id: str) -> bool:
        p = self.phase[job_id]
        return p is SchedState.RUNNING or (p is SchedState.QUEUED and not self.parked(job_id))

    def gpu_free(self) -> int:
        used = sum(
            self.needs[j].get("gpu", 0) for j, p in self.phase.items() if p is SchedState.RUNNING
        )
        return self.s.capacity["gpu"] - used

    def live_tenants(self) -> set[str]:
        return {self.s.jobs[j].tenant for j in self.phase if self.live(j)}

    def ready_heads(self) -> dict[str, list[str]]:
        """Per tenant: lane heads (oldest live queued job) of idle lanes whose deps succeeded."""
        lanes: dict[tuple, list[str]] = defaultdict(list)
        busy = {self.s.jobs[j].lane for j, p in self.phase.items() if p is SchedState.RUNNING}
        for j, p in self.phase.items():
            if p is SchedState.QUEUED and not self.parked(j):
                lanes[self.s.jobs[j].lane].append(j)
        out: dict[str, list[str]] = defaultdict(list)
        for lane, jobs in lanes.items():
            head = min(jobs, key=lambda j: self.s.jobs[j].seq)
            deps_ok = all(self.phase[d] is SchedState.SUCCEEDED for d in self.s.jobs[head].deps)
            fits = self.needs[head].get("gpu", 0) <= self.gpu_free()
            if lane not in busy and deps_ok and fits:
                out[lane[0]].append(head)
        return out

    # ---- the step every rule ends with -------------------------------------------------------
    def dispatch(self) -> None:
        self.memo.clear()
        # Arrival order: a tenant that gained live work while not active joins the queue.
        live = self.live_tenants()
        for t in TENANTS:
            if t in live and t not in self.s.active and t not in self.arrival:
                self.arrival.append(t)
            if t not in live and t in self.arrival:
                self.arrival.remove(t)
        # R1: jobs enter lanes in increasing seq (entry order).
        entered = {j for j in self.phase if self.live(j) and self.phase[j] is SchedState.QUEUED}
        for j in sorted(entered - self.in_lane, key=lambda j: self.s.jobs[j].seq):
            assert self.s.jobs[j].seq > self.max_seq_seen
            self.max_seq_seen = self.s.jobs[j].seq
        active_before = list(self.s.active)
        ready = self.ready_heads()
        starts = self.s.next_starts()
        effects = self.s.take_effects()
        yielded = [tc.tenant for tc in effects.tenants if tc.yielded]
        passed = {p for tc in effects.tenants if tc.admitted for p in tc.passed_over}
        admitted = [t for t in self.s.active if t not in active_before]
        if not yielded and not passed:
            # R3: admitted tenants come off the front of the arrival queue, into free slots.
            assert admitted == self.arrival[: len(admitted)]
            del self.arrival[: len(admitted)]
            assert list(self.s.waiting) == self.arrival
        else:
            # R3: a tenant that gave its slot up, or was passed over, had nothing running (and,
            # checked in rules_hold, no active tenant is stalled while one that can start waits).
            running_tenants = {
                self.s.jobs[j].tenant for j, p in self.phase.items() if p is SchedState.RUNNING
            }
            assert not (set(yielded) | passed) & running_tenants
            self.arrival = list(self.s.waiting)
        # R6: per resource class (a job's needs), the active tenant served that class longest
        # ago (a newcomer: never; a job without resources: any start counts) gets the next
        # worker; ties by admission, then the oldest ready lane head. R9: only heads that fit.
        for t in admitted:
            self.served.pop(t, None)
            for key in [k for k in self.served_res if k[0] == t]:
                del self.served_res[key]
            self.tick += 1
            self.admitted_at[t] = self.tick
        # After a restart, what was running starts again first, in its order, as no new service.
        resumed, self.resuming = self.resuming, []
        assert starts[: len(resumed)] == resumed
        for j in resumed:
            self.phase[j] = SchedState.RUNNING
        if resumed:
            self.memo.clear()
            ready = self.ready_heads()
        for j in starts[len(resumed) :]:
            t = self.s.jobs[j].tenant
            assert t in self.s.active
            candidates: dict[tuple[str, tuple], str] = {}
            for other, heads in ready.items():
                if other not in self.s.active:
                    continue
                for h in heads:
                    key = (other, self.cls(h))
                    if (
                        key not in candidates
                        or self.s.jobs[h].seq < self.s.jobs[candidates[key]].seq
                    ):
                        candidates[key] = h

            def rank(
                key: tuple[str, tuple], candidates: dict[tuple[str, tuple], str] = candidates
            ) -> tuple[int, int, int]:
                tenant, cls = key
                served = self.served_res.get(key, -1) if cls else self.served.get(tenant, -1)
                seq = self.s.jobs[candidates[key]].seq
                return (served, self.admitted_at.get(tenant, 0), seq)

            best = min(candidates, key=rank)
            if not yielded:  # with a slot handed over mid-pass, the candidates changed on the way
                assert candidates[best] == j, f"{j} started before {candidates[best]} (R6)"
            self.phase[j] = SchedState.RUNNING
            self.tick += 1
            self.served[t] = self.tick
            if self.cls(j):
                self.served_res[(t, self.cls(j))] = self.tick
            ready[t].remove(j)
            if self.needs[j]:  # the GPU it took may make other heads not fit any more
                ready = self.ready_heads()
        self.memo.clear()
        self.in_lane = {
            j for j in self.phase if self.live(j) and self.phase[j] is SchedState.QUEUED
        }
        self.prev_active = set(self.s.active)

    def cls(self, job_id: str) -> tuple:
        return tuple(sorted((k, v) for k, v in self.needs[job_id].items() if v > 0))

    def order(self, job_id: str) -> int:
        return self.s.jobs[job_id].order

    # ---- rules -------------------------------------------------------------------------------
    @rule(
        tenant=st.sampled_from(TENANTS),
        shape=st.lists(
            st.tuples(st.integers(0, 2), st.lists(st.integers(0, 5), max_size=2)),
            min_size=1,
            max_size=6,
        ),
        data=st.data(),
    )
    def submit(self, tenant: str, shape: list[tuple[int, list[int]]], data: st.DataObject) -> None:
        self.wf += 1
        ids: list[str] = []
        start = data.draw(st.booleans(), label="start on")
        for branch, dep_picks in shape:
            self.n += 1
            job_id = f"j{self.n}"
            deps = sorted({ids[p % len(ids)] for p in dep_picks} if ids else set())
            self.needs[job_id] = {"gpu": 1} if data.draw(st.booleans(), label="gpu") else {}
            lane = (tenant, f"w{self.wf}", f"b{branch}")
            self.s.add(job_id, tenant, lane, deps, 0, SchedState.HELD, self.needs[job_id])
            self.phase[job_id] = SchedState.HELD
            if start:
                self.s.enqueue(job_id)
                self.phase[job_id] = SchedState.QUEUED
            ids.append(job_id)
        self.dispatch()

    @precondition(lambda self: any(p is SchedState.HELD for p in self.phase.values()))
    @rule(data=st.data())
    def start_one(self, data: st.DataObject) -> None:
        """The user starts one held job (its upstreams may stay held: it must then wait)."""
        held = sorted(j for j, p in self.phase.items() if p is SchedState.HELD)
        job_id = data.draw(st.sampled_from(held))
        self.s.enqueue(job_id)
        self.phase[job_id] = SchedState.QUEUED
        self.dispatch()

    @rule()
    def restart(self) -> None:
        """The process stops (running jobs interrupted) and a new scheduler is rebuilt from the
        persisted facts, as the engine does: the same tenants stay active, in the same queue."""
        old = self.s
        rows = old.tenant_rows()
        active, waiting = list(old.active), list(old.waiting)
        new = Scheduler(old.max_workers, old.max_active_users, old.capacity)
        requeue = []
        running = sorted(
            (j for j, p in self.phase.items() if p is SchedState.RUNNING),
            key=lambda j: old.jobs[j].seq,
        )
        for job_id, job in old.jobs.items():  # registration order is topological
            phase = self.phase[job_id]
            reg = phase if phase in (SchedState.SUCCEEDED, *BAD) else SchedState.HELD
            new.add(job_id, job.tenant, job.lane, job.deps, job.seq, reg, self.needs[job_id])
            if phase in (SchedState.QUEUED, SchedState.RUNNING):
                requeue.append(job)
        for job in sorted(requeue, key=lambda j: j.seq):
            new.enqueue(job.id, job.seq)
            self.phase[job.id] = SchedState.QUEUED
        new.restore_tenants(rows)
        self.s = new
        self.memo.clear()
        # A job that was running while an upstream became canceled or held (a rerun upstream
        # canceled) is parked when it stops (R4): it is no longer live, and a tenant whose only
        # live job it was is no longer active. Everyone else keeps their place.
        assert list(new.active) == [t for t in active if t in self.live_tenants()]
        assert list(new.waiting) == [t for t in waiting if t in self.live_tenants()]
        new.resume_first(running)  # per-class service is persisted too (rules.py R6)
        self.resuming = [j for j in running if not self.parked(j)]
        self.in_lane = {
            j for j in self.phase if self.live(j) and self.phase[j] is SchedState.QUEUED
        }
        self.dispatch()

    @precondition(lambda self: any(p is SchedState.RUNNING for p in self.phase.values()))
    @rule(
        data=st.data(), outcome=st.sampled_from([SchedState.SUCCEEDED, SchedState.SUCCEEDED, *BAD])
    )
    def finish(self, data: st.DataObject, outcome: SchedState) -> None:
        running = sorted(j for j, p in self.phase.items() if p is SchedState.RUNNING)
        job_id = data.draw(st.sampled_from(running))
        self.s.finish(job_id, outcome)
        self.phase[job_id] = outcome
        self.dispatch()

    @precondition(lambda self: sum(p is SchedState.RUNNING for p in self.phase.values()) >= 2)
    @rule(data=st.data())
    def finish_several(self, data: st.DataObject) -> None:
        """Several workers free up before one dispatch: exercises round-robin within a pass."""
        running = sorted(j for j, p in self.phase.items() if p is SchedState.RUNNING)
        for job_id in data.draw(st.lists(st.sampled_from(running), min_size=2, unique=True)):
            self.s.finish(job_id, SchedState.SUCCEEDED)
            self.phase[job_id] = SchedState.SUCCEEDED
        self.dispatch()

    @precondition(
        lambda self: any(p in (SchedState.QUEUED, SchedState.HELD) for p in self.phase.values())
    )
    @rule(data=st.data())
    def cancel_pending(self, data: st.DataObject) -> None:
        queued = sorted(
            j for j, p in self.phase.items() if p in (SchedState.QUEUED, SchedState.HELD)
        )
        job_id = data.draw(st.sampled_from(queued))
        self.s.cancel_queued(job_id)
        self.phase[job_id] = SchedState.CANCELED
        self.dispatch()

    @precondition(lambda self: any(p in BAD for p in self.phase.values()))
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        bad = sorted(j for j, p in self.phase.items() if p in BAD)
        job_id = data.draw(st.sampled_from(bad))
        self.s.retry(job_id)
        self.phase[job_id] = SchedState.QUEUED
        self.dispatch()

    @precondition(lambda self: any(p is SchedState.SUCCEEDED for p in self.phase.values()))
    @rule(data=st.data())
    def rerun(self, data: st.DataObject) -> None:
        """A succeeded job run again as a new attempt; refused while a dependent runs."""
        done = sorted(j for j, p in self.phase.items() if p is SchedState.SUCCEEDED)
        job_id = data.draw(st.sampled_from(done))
        if any(self.phase[d] is SchedState.RUNNING for d in self.s.jobs[job_id].dependents):
            with pytest.raises(ValueError, match="running dependent"):
                self.s.rerun(job_id)
            return
        self.s.rerun(job_id)
        self.phase[job_id] = SchedState.QUEUED
        self.dispatch()

    @precondition(lambda self: any(p is SchedState.RUNNING for p in self.phase.values()))
    @rule(data=st.data())
    def interrupt(self, data: st.DataObject) -> None:
        running = sorted(j for j, p in self.phase.items() if p is SchedState.RUNNING)
        job_id = data.draw(st.sampled_from(running))
        self.s.interrupt(job_id)
        self.phase[job_id] = SchedState.QUEUED
        self.memo.clear()
        if not self.parked(job_id):  # parked: out of its lane until its upstream is back (R4)
            self.in_lane.add(job_id)  # back at the head with its old seq: not a new entry
        self.dispatch()

    # ---- invariants after every step ---------------------------------------------------------
    @invariant()
    def rules_hold(self) -> None:
        if not hasattr(self, "s"):
            return
        self.memo.clear()
        running = [j for j, p in self.phase.items() if p is SchedState.RUNNING]
        # R1: one running job per lane.
        lanes = Counter(self.s.jobs[j].lane for j in running)
        assert all(n == 1 for n in lanes.values())
        # R2: worker cap.
        assert len(running) <= self.s.max_workers == self.s.max_workers
        assert self.s.running == len(running)
        # R3: cap; every running tenant active; active exactly while live; no idle free slot.
        live = self.live_tenants()
        assert len(self.s.active) <= self.s.max_active_users
        assert {self.s.jobs[j].tenant for j in running} <= set(self.s.active)
        assert set(self.s.active) <= live
        assert set(self.s.active) | set(self.s.waiting) == live
        if len(self.s.active) < self.s.max_active_users:
            assert not self.s.waiting
        # R3: a slot is held by a tenant that could start something, unless no waiting tenant
        # could either: no active tenant is stalled (live, nothing running, every ready head
        # needs a resource that is full) while a waiting one can start now.
        ready_now = self.ready_heads()
        runs = {self.s.jobs[j].tenant for j in running}

        def stalled(t: str) -> bool:
            return t in live and t not in runs and not ready_now.get(t)

        if any(stalled(t) for t in self.s.active):
            assert all(stalled(t) for t in self.s.waiting), "a stalled tenant holds a slot"
        # R4: running jobs' deps all succeeded; blocked flags match the test's own derivation.
        for j in running:
            assert all(self.phase[d] is SchedState.SUCCEEDED for d in self.s.jobs[j].deps)
        for j, p in self.phase.items():
            if p is SchedState.QUEUED:
                assert self.s.jobs[j].blocked == self.blocked(j), j
                assert self.s.jobs[j].parked == self.parked(j), j
        # R4: a queued job never stands in its lane ahead of (or beside) an unfinished upstream.
        in_lane = {
            j for j, p in self.phase.items() if p is SchedState.QUEUED and not self.parked(j)
        }
        for j in in_lane:
            for d in self.s.jobs[j].deps:
                assert self.phase[d] in (SchedState.SUCCEEDED, SchedState.RUNNING) or (
                    d in in_lane and self.s.jobs[d].seq < self.s.jobs[j].seq
                ), f"{j} stands in a lane ahead of its upstream {d}"
        # R9: resources never over-committed.
        assert self.gpu_free() >= 0
        # R5 / work conservation: a free worker never idles beside a ready active lane head
        # (ready: dependencies succeeded and resources fit).
        if len(running) < self.s.max_workers:
            ready = self.ready_heads()
            assert not any(ready.get(t) for t in self.s.active)

    def teardown(self) -> None:
        """Deadlock freedom: once held jobs are started, finishing running jobs successfully
        drains every live job."""
        if not hasattr(self, "s"):
            return
        for j in sorted((j for j, p in self.phase.items() if p is SchedState.HELD), key=self.order):
            self.s.enqueue(j)
            self.phase[j] = SchedState.QUEUED
            self.dispatch()
        for _ in range(10_000):
            running = sorted(j for j, p in self.phase.items() if p is SchedState.RUNNING)
            if not running:
                break
            self.s.finish(running[0], SchedState.SUCCEEDED)
            self.phase[running[0]] = SchedState.SUCCEEDED
            self.dispatch()
            self.rules_hold()
        stuck = [
            (
                j,
                self.phase[j],
                self.s.jobs[j].lane,
                self.s.jobs[j].seq,
                self.s.jobs[j].unmet,
                [(d, self.phase[d]) for d in self.s.jobs[j].deps],
                self.s.lanes[self.s.jobs[j].lane].queue,
                self.s.lanes[self.s.jobs[j].lane].running,
            )
            for j in self.phase
            if self.live(j)
        ]
        assert not stuck, f"live jobs left that can never start: {stuck} active={self.s.active}"


SchedulerMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestScheduler = SchedulerMachine.TestCase
