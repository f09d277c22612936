"""The scheduling rules, as one pure state machine (no I/O, no clock, no async).

The engine feeds it every job transition and asks `next_starts()` which jobs to start now. Each
rule is marked where it is enforced. This docstring is the one place that states the rules the
code follows, including where they say more than the engine issue did:

  R1  A lane is (tenant, workflow, branch): at most one RUNNING job per lane, FIFO by entry `seq`.
  R2  At most `max_workers` RUNNING jobs in total.
  R3  A tenant becomes active when it is admitted, which is as soon as it has a live job (one
      RUNNING, or queued in a lane) and a slot is free, not at its first start. It stays active
      until it has no live job left (not between two jobs of a lane). At most
      `max_active_users` are active; waiting tenants are admitted in arrival order (the order in
      which they gained live work). Which tenants are active, the waiting order and the
      round-robin position are state: the engine persists them with every change, so a restart
      continues with the same active tenants and the same queue (with a lower cap, those
      admitted last are released, `cap_lowered`, and wait first in line in admission order).
      When a slot is held, exactly: an active tenant holds its slot while it has a RUNNING job,
      or a ready job (a lane head whose dependencies succeeded) whose resources fit now, or
      while no waiting tenant could start anything either. A *stalled* tenant (live, nothing
      RUNNING, every ready job needs a resource that is full, e.g. the GPU another tenant
      uses) gives its slot to the first waiting tenant that can start something, and goes
      back first in line; likewise a stalled waiting tenant is passed over (it keeps its
      place) when a slot frees and a later one can start. So a tenant whose only job waits for
      the GPU never keeps workers idle that another tenant's CPU jobs could use; it runs at the
      next slot free when its resource is. Checked after every dispatch pass, never between
      two jobs of a lane: a tenant with a running job is never stalled.
  R4  A job starts only when every dependency SUCCEEDED. A job stands in its lane only while
      none of its upstreams (transitively) is HELD, FAILED or CANCELED. A job whose upstream
      FAILED or was CANCELED is *blocked*; a queued job whose upstream is still held (not
      started by the user) is *parked*. Blocked and parked jobs leave their lane: they hold
      neither lane nor tenant slot. When the upstream is started or retried they re-enter at the
      back of their lane, in dependency order, so a job never stands ahead of its own upstream.
  R5  Failures are lane-local: nothing but dependents is affected by a failure.
  R6  Free workers are handed to active tenants round-robin by least recent service, counted
      per resource class (a job's resources, e.g. `gpu=1`; no resources is the CPU class). The
      candidates are each active tenant's oldest ready lane head of each class that fits now;
      the one whose tenant was served that class longest ago goes first (a CPU-class job
      competes only for a worker, so any start of its tenant counts as service; a GPU job
      competes for the GPU, so only the tenant's GPU starts count), then admission order, then
      lane entry order. A newly admitted tenant counts as never served, in every class.
      Bound: while a ready job of class C waits and fits whenever C frees, each other active
      tenant starts at most one job of class C before it (plus once each tenant admitted in
      the meantime): a tenant kept "recently served" by its CPU jobs still gets the GPU next.
      Per-class service is state like the rest of R3/R6: persisted with the start that
      changed it, so a restart gives the next start of each class to the same tenant.
      "Oldest" is lane entry order: a retried or re-entering job has a new, later seq; an
      interrupted job (the engine stopped) keeps its seq and so returns to the head of its
      lane (unless an upstream became canceled or held while it ran: then it is parked, R4).
      Jobs found RUNNING after a crash start again first, before any other job and without
      counting as new service: the restart continues the stopped process's order.
  R7  Isolation (engine): every query and command is scoped to one tenant. Another tenant's
      workflow or job id is refused exactly like an unknown one (same NotFound, same message),
      so a tenant cannot even learn that it exists; listings show a tenant its own workflows.
  R8  Event-driven (engine): dispatch runs in the same synchronous step as the change that may
      allow a start (submit, start, finish, cancel, retry, rerun, a released hold), after its
      commit. There is no polling tick: an idle engine runs no task at all.
  R9  Resources: a job may hold resources besides its worker (e.g. one `gpu`). A job starts only
      if its resources fit under their caps; a lane head that does not fit is passed over, not
      waited for, so a short CPU job never waits behind GPU jobs. A job that needs more than a
      cap (a GPU job on an engine with gpu = 0) can never start: the engine refuses it at
      submission and fails a stored one when it opens, so it holds no slot.

Held jobs (created but not started by the user) are in no lane and hold nothing.

A *rerun* makes a SUCCEEDED job a new attempt, like a retry: it goes to the back of its lane
(a new seq). It is refused while a direct dependent is RUNNING (that run reads its outputs; R4
says a running job's dependencies all SUCCEEDED). Its dependents count it unmet again: one not
started yet waits for the rerun to succeed (R4) and is blocked if it fails; those queued in a
lane move to the back, behind it, in dependency order (transitively through queued jobs), as
when an upstream re-enters. Dependents that already SUCCEEDED stay SUCCEEDED as they are:
their outputs came from the earlier attempt; rerun them too to refresh them.

Deadlock freedom: every job enters its lane after its dependencies (topological `seq`), and jobs
that re-enter do so with fresh, increasing seqs after their upstreams; so the queued job with the
lowest seq is always a lane head whose dependencies are done or running.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

LaneKey = tuple[str, str, str]  # (tenant, workflow_id, branch)
Needs = tuple[tuple[str, int], ...]  # resources a job holds while running, sorted: its class


class SchedState(StrEnum):
    """The scheduler's view of a job's state: `JobState` with PENDING split into HELD and QUEUED.

    A job's condition has three names, one per reader; this relates them (the others point here):
      - `records.JobState`: the lifecycle state the engine stores and every face shows
        (PENDING, RUNNING, SUCCEEDED, FAILED, CANCELED).
      - `SchedState` (here): what the scheduler tracks. PENDING is HELD (created, not started
        by the user; in no lane) or QUEUED (started; in its lane, or parked out of it, R4). The
        engine maps a finished JobState to its SchedState in `supervisor.FINAL_SCHED_STATE`;
        every other stored job is registered HELD and queued again if it was (`recovery.recover`).
      - `phase.JobPhase`: derived for faces from job snapshots, never stored: *why* a PENDING
        job is not running (held, blocked, after a dependency, waiting, behind, ready).
    """

    HELD = "HELD"  # created but not yet started by the user
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


DONE_BAD = (SchedState.FAILED, SchedState.CANCELED)


@dataclass(slots=True)
class SJob:
    id: str
    tenant: str
    lane: LaneKey
    deps: tuple[str, ...]
    seq: int
    state: SchedState
    order: int = 0  # registration order: dependencies always come first (topological)
    unmet: int = 0  # dependencies not SUCCEEDED
    bad_deps: int = 0  # dependencies FAILED/CANCELED or themselves blocked
    held_deps: int = 0  # dependencies HELD or themselves parked behind a held job
    needs: Needs = ()  # resources held while running (R9)
    dependents: list[str] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        """Not finished, behind a failed or canceled upstream (R4). A finished job's `bad_deps`
        still count for its dependents, but it never gains or loses a block itself."""
        return self.bad_deps > 0 and self.state not in (SchedState.SUCCEEDED, *DONE_BAD)

    @property
    def parked(self) -> bool:
        """Out of its lane because of an upstream (R4): blocked, or behind a held job."""
        return self.bad_deps > 0 or self.held_deps > 0

    @property
    def in_lane(self) -> bool:
        return self.state is SchedState.QUEUED and not self.parked

    def contribution(self) -> tuple[bool, bool]:
        """(holds dependents back as held, blocks dependents as bad)."""
        held = self.state is SchedState.HELD or (
            self.state is SchedState.QUEUED and self.held_deps > 0
        )
        bad = self.state in DONE_BAD or self.bad_deps > 0
        return held, bad


@dataclass(slots=True)
class Lane:
    key: LaneKey
    queue: list[tuple[int, str]] = field(default_factory=list)  # heap of (seq, job_id)
    running: str | None = None


@dataclass(frozen=True, slots=True)
class TenantChange:
    tenant: str
    admitted: bool  # True: admitted (active); False: released (no live job left, or yielded)
    yielded: bool = False  # released with live work that cannot start now (R3)
    cap_lowered: bool = False  # released at a restart with a lower max_active_users (R3)
    passed_over: tuple[str, ...] = ()  # admitted: waiting tenants passed over (R3)


@dataclass(frozen=True, slots=True)
class BlockChange:
    job_id: str
    blocked: bool


@dataclass(frozen=True, slots=True)
class TenantRow:
    """One tenant's persisted scheduling state (R3, R6)."""

    tenant: str
    status: str  # "active" or "waiting"
    order: int  # admission order (active) or arrival order (waiting)
    served: int  # service tick of its last start; -1: never served since admission
    # Per resource class (R6): (class, tick of its last start of that class), sorted.
    served_res: tuple[tuple[Needs, int], ...] = ()


@dataclass(slots=True)
class Effects:
    """What a call changed besides the job it was about: the engine persists and publishes it."""

    tenants: list[TenantChange] = field(default_factory=list)
    blocks: list[BlockChange] = field(default_factory=list)
    moved: set[str] = field(default_factory=set)  # jobs whose seq changed (re-entered a lane)
    waiting_changed: bool = False


class Scheduler:
    def __init__(
        self,
        max_workers: int = 4,
        max_active_users: int = 3,
        capacity: Mapping[str, int] | None = None,
    ) -> None:
        if max_workers < 1 or max_active_users < 1:
            raise ValueError("max_workers and max_active_users must be at least 1")
        self.max_workers = max_workers
        self.max_active_users = max_active_users
        self.capacity: dict[str, int] = dict(capacity or {})
        self.in_use: dict[str, int] = dict.fromkeys(self.capacity, 0)
        self.jobs: dict[str, SJob] = {}
        self.lanes: dict[LaneKey, Lane] = {}
        self.running = 0
        self.running_by: dict[str, int] = {}  # tenant -> RUNNING jobs
        self.live: dict[str, int] = {}  # tenant -> number of in-lane + RUNNING jobs
        self.active: list[str] = []  # admission order
        self.waiting: deque[str] = deque()  # arrival order (R3)
        self._order: dict[str, int] = {}  # tenant -> admission or arrival number
        self._served: dict[str, int] = {}  # tenant -> tick of its last start (R6)
        self._tick = 0
        self._counter = 0
        # (tenant, class) -> heap of (seq, lane) whose head may be ready (lazy; R9: all fit or none)
        self._ready: dict[str, dict[Needs, list[tuple[int, LaneKey]]]] = {}
        # (tenant, class) -> tick of its last start of a job of that class (R6, per resource).
        self._served_res: dict[tuple[str, Needs], int] = {}
        self._next_seq = 0
        self._resume: list[str] = []  # interrupted jobs to start first (`resume_first`)
        self.effects = Effects()
        self.tenants_dirty = False  # tenant rows changed since `tenant_rows` was last read

    # ---- queries -------------------------------------------------------------------------
    def new_seq(self) -> int:
        self._next_seq += 1
        return self._next_seq

    def is_live(self, tenant: str) -> bool:
        return self.live.get(tenant, 0) > 0

    def queued_count(self) -> int:
        return sum(len(lane.queue) for lane in self.lanes.values())

    def lane_head(self, lane: Lane) -> SJob | None:
        return self.jobs[lane.queue[0][1]] if lane.queue else None

    def fits(self, needs: Iterable[tuple[str, int]]) -> bool:
        """Whether resources `needs` could ever be granted (every named resource has a cap)."""
        return all(amount <= self.capacity.get(name, 0) for name, amount in needs)

    def tenant_rows(self) -> list[TenantRow]:
        """The tenant state to persist (R3, R6); clears `tenants_dirty`."""
        self.tenants_dirty = False
        by_tenant: dict[str, list[tuple[Needs, int]]] = {}
        for (tenant, needs), tick in self._served_res.items():
            by_tenant.setdefault(tenant, []).append((needs, tick))
        order, served = self._order, self._served
        rows = [
            TenantRow(t, "active", order[t], served.get(t, -1), tuple(sorted(by_tenant.get(t, ()))))
            for t in self.active
        ]
        return rows + [TenantRow(t, "waiting", order[t], -1) for t in self.waiting]

    # ---- building state ------------------------------------------------------------------
    def add(
        self,
        job_id: str,
        tenant: str,
        lane: LaneKey,
        deps: Iterable[str],
        seq: int,
        state: SchedState,
        needs: Mapping[str, int] | None = None,
    ) -> None:
        """Register a HELD or finished job; `enqueue` queues it. Dependencies come first."""
        if state not in (SchedState.HELD, SchedState.SUCCEEDED, *DONE_BAD):
            raise ValueError(f"cannot register {job_id} as {state}")
        deps = tuple(deps)
        job = SJob(job_id, tenant, lane, deps, seq, state, order=len(self.jobs))
        job.needs = tuple(sorted((k, v) for k, v in (needs or {}).items() if v > 0))
        self._next_seq = max(self._next_seq, seq)
        for dep_id in deps:
            dep = self.jobs[dep_id]
            dep.dependents.append(job_id)
            if dep.state is not SchedState.SUCCEEDED:
                job.unmet += 1
            held, bad = dep.contribution()
            job.held_deps += held
            job.bad_deps += bad
        self.jobs[job_id] = job
        self.lanes.setdefault(lane, Lane(lane))

    def enqueue(self, job_id: str, seq: int | None = None) -> None:
        """A HELD job enters the back of its lane (or is parked until its upstreams allow)."""
        job = self.jobs[job_id]
        if job.state is not SchedState.HELD:
            raise ValueError(f"job {job_id} is {job.state}, not held")
        before = job.contribution()
        job.seq = self.new_seq() if seq is None else seq
        job.state = SchedState.QUEUED
        if not job.parked:
            self._enter_lane(job)
        self._propagate(job, before)

    def restore_tenants(self, rows: Iterable[TenantRow]) -> list[TenantChange]:
        """After recovery: put back the persisted active set, waiting order and service ticks.

        Call after every job is registered and enqueued. Returns the releases of active tenants
        no longer live (recovery failed their last job, R3); live unknown tenants wait last."""
        known = sorted(rows, key=lambda r: (r.status != "active", r.order))
        live = [t for t in [*self.active, *self.waiting] if self.is_live(t)]
        self.active, self.waiting = [], deque()
        self._order.clear()
        self._served.clear()
        self._served_res.clear()
        self._counter = 0
        for row in known:
            if not self.is_live(row.tenant) or row.tenant in self._order:
                continue
            self._order[row.tenant] = row.order
            self._counter = max(self._counter, row.order)
            if row.status == "active" and len(self.active) < self.max_active_users:
                self.active.append(row.tenant)
                if row.served >= 0:
                    self._served[row.tenant] = row.served
                    self._tick = max(self._tick, row.served)
                for needs, tick in row.served_res:
                    self._served_res[(row.tenant, needs)] = tick
                    self._tick = max(self._tick, tick)
            else:
                self.waiting.append(row.tenant)
        demoted = [r.tenant for r in known if r.status == "active" and r.tenant in self.waiting]
        for tenant in live:
            if tenant not in self._order:
                self._counter += 1
                self._order[tenant] = self._counter
                self.waiting.append(tenant)
        self.effects = Effects()
        self.tenants_dirty = True
        if demoted:  # R3 under a lower cap: first in line, numbered so a restart keeps it
            first = min((self._order[t] for t in self.waiting if t not in demoted), default=1)
            for i, tenant in enumerate(demoted):
                self._order[tenant] = first - len(demoted) + i
            self.effects.tenants = [TenantChange(t, False, cap_lowered=True) for t in demoted]
            self.effects.waiting_changed = True
        gone = [r.tenant for r in known if r.status == "active" and not self.is_live(r.tenant)]
        return [TenantChange(t, admitted=False) for t in gone]  # rows: one per tenant

    # ---- transitions ---------------------------------------------------------------------
    def resume_first(self, job_ids: Iterable[str]) -> None:
        """After recovery: jobs the stopped process was running (enqueued at their old seqs).
        The next `next_starts` starts them before anything else and without counting them as
        new service (R6): their starts were counted, and persisted, when they first started.
        One that cannot start yet (the caps shrank) starts before any other job when it can."""
        self._resume = list(job_ids)

    def next_starts(self) -> list[str]:
        """Resume interrupted jobs first; admit waiting tenants into free slots, then fill
        free workers; then let active tenants that cannot start anything give their slots to
        waiting ones that can (R3), and fill again. Marks jobs RUNNING."""
        started = self._resume_interrupted()
        self.admit()
        started += self._fill()
        while self._yield_slot():
            started += self._fill()
        return started

    def stalled(self, tenant: str) -> bool:
        """R3: live, nothing RUNNING, and every ready lane head needs a resource that is full."""
        if self.running_by.get(tenant, 0) or not self.is_live(tenant):
            return False
        for heap in self._ready.get(tenant, {}).values():
            head = self._peek_ready(heap)
            if head is not None and self._fits_now(head):
                return False
        return True

    def _fill(self) -> list[str]:
        started: list[str] = []
        while self.running < self.max_workers and self.active:  # R2
            job = self._pick()
            if job is None:
                break
            self._start(job)
            self._tick += 1
            self._served[job.tenant] = self._tick
            if job.needs:
                self._served_res[(job.tenant, job.needs)] = self._tick
            self.tenants_dirty = True
            started.append(job.id)
        return started

    def _resume_interrupted(self) -> list[str]:
        """Start the jobs of `resume_first` that can start, in order; one that waits only for
        a worker or a resource keeps its turn for the next pass (fewer workers after the
        restart), one that left the head of its lane (canceled) loses it."""
        started, keep = list[str](), list[str]()
        for job_id in self._resume:
            job = self.jobs[job_id]
            lane = self.lanes[job.lane]
            if not job.in_lane or lane.running is not None or self.lane_head(lane) is not job:
                continue
            if (
                self.running < self.max_workers  # R2
                and job.tenant in self.active  # R3
                and job.unmet == 0  # R4
                and self._fits_now(job)  # R9
            ):
                self._start(job)
                started.append(job_id)
            else:
                keep.append(job_id)
        self._resume = keep
        return started

    def _start(self, job: SJob) -> None:
        heapq.heappop((lane := self.lanes[job.lane]).queue)
        lane.running = job.id  # R1: the lane is busy before anything else is considered
        job.state = SchedState.RUNNING
        for name, amount in job.needs:  # R9
            self.in_use[name] = self.in_use.get(name, 0) + amount
        self.running += 1
        self.running_by[job.tenant] = self.running_by.get(job.tenant, 0) + 1

    def finish(self, job_id: str, state: SchedState) -> None:
        """A RUNNING job ended SUCCEEDED, FAILED or CANCELED."""
        job = self.jobs[job_id]
        if job.state is not SchedState.RUNNING or state not in (SchedState.SUCCEEDED, *DONE_BAD):
            raise ValueError(f"cannot finish {job_id} ({job.state}) as {state}")
        self._leave_worker(job)
        before = job.contribution()
        job.state = state
        if state is SchedState.SUCCEEDED:
            for dep_id in job.dependents:
                dependent = self.jobs[dep_id]
                dependent.unmet -= 1
                if dependent.unmet == 0 and dependent.in_lane:
                    self._mark_ready(self.lanes[dependent.lane])
        self._propagate(job, before)  # R4/R5: only dependents are affected
        self._live_delta(job.tenant, -1)

    def interrupt(self, job_id: str) -> None:
        """A RUNNING job was stopped by shutdown: it returns to the head of its lane, or, if an
        upstream became held, failed or canceled while it ran (a rerun upstream canceled), it
        is parked like any queued job behind such an upstream (R4) and stops being live."""
        job = self.jobs[job_id]
        self._leave_worker(job)
        before = job.contribution()
        job.state = SchedState.QUEUED
        if job.parked:
            self._live_delta(job.tenant, -1)
        else:
            heapq.heappush(self.lanes[job.lane].queue, (job.seq, job.id))
            self._mark_ready(self.lanes[job.lane])
        self._propagate(job, before)  # as retry does (R4): dependents follow its contribution

    def cancel_queued(self, job_id: str) -> None:
        job = self.jobs[job_id]
        if job.state not in (SchedState.QUEUED, SchedState.HELD):
            raise ValueError(f"job {job_id} is {job.state}, not pending")
        before = job.contribution()
        was_live = job.in_lane
        if was_live:
            self._leave_lane(job)
        job.state = SchedState.CANCELED
        self._propagate(job, before)
        if was_live:
            self._live_delta(job.tenant, -1)

    def retry(self, job_id: str) -> None:
        """FAILED/CANCELED → back of its lane; dependents it unblocks follow it, in order."""
        job = self.jobs[job_id]
        if job.state not in DONE_BAD:
            raise ValueError(f"job {job_id} is {job.state}, not failed or canceled")
        before = job.contribution()
        job.seq = self.new_seq()
        job.state = SchedState.QUEUED
        if not job.parked:
            self._enter_lane(job)
        self._propagate(job, before)

    def rerun(self, job_id: str) -> None:
        """SUCCEEDED → back of its lane as a new attempt; its dependents wait for it again."""
        job = self.jobs[job_id]
        if job.state is not SchedState.SUCCEEDED:
            raise ValueError(f"job {job_id} is {job.state}, not succeeded")
        if any(self.jobs[d].state is SchedState.RUNNING for d in job.dependents):
            raise ValueError(f"job {job_id} has a running dependent")
        for dep_id in job.dependents:
            self.jobs[dep_id].unmet += 1  # `unmet` counts dependencies not SUCCEEDED
        before = job.contribution()
        job.seq = self.new_seq()
        job.state = SchedState.QUEUED
        if not job.parked:
            self._enter_lane(job)
        self._propagate(job, before)
        # Dependents queued in a lane now stand ahead of it: they move behind it, in
        # dependency order, so none waits at a lane head for an upstream queued behind it.
        behind: dict[str, SJob] = {}
        stack = [job]
        while stack:
            for dep_id in stack.pop().dependents:
                child = self.jobs[dep_id]
                if child.in_lane and dep_id not in behind:
                    behind[dep_id] = child
                    stack.append(child)
        for child in sorted(behind.values(), key=lambda j: j.order):
            lane = self.lanes[child.lane]
            lane.queue.remove((child.seq, child.id))
            child.seq = self.new_seq()
            heapq.heapify(lane.queue)
            heapq.heappush(lane.queue, (child.seq, child.id))
            self._mark_ready(lane)
            self.effects.moved.add(child.id)

    def reserve(self, needs: Needs) -> None:
        """Hold resources outside any job (a run the engine left behind still uses them)."""
        for name, amount in needs:
            self.in_use[name] = self.in_use.get(name, 0) + amount

    def unreserve(self, needs: Needs) -> None:
        for name, amount in needs:  # heads passed over stay queued: the next pick sees them
            self.in_use[name] -= amount

    # ---- internals -----------------------------------------------------------------------
    def _leave_worker(self, job: SJob) -> None:
        lane = self.lanes[job.lane]
        lane.running = None
        self.running -= 1
        self.running_by[job.tenant] -= 1
        for name, amount in job.needs:
            self.in_use[name] -= amount
        self._mark_ready(lane)

    def _enter_lane(self, job: SJob) -> None:
        lane = self.lanes[job.lane]
        heapq.heappush(lane.queue, (job.seq, job.id))
        self._mark_ready(lane)
        self._live_delta(job.tenant, +1)

    def _leave_lane(self, job: SJob) -> None:
        lane = self.lanes[job.lane]
        lane.queue.remove((job.seq, job.id))
        heapq.heapify(lane.queue)
        self._mark_ready(lane)

    def _propagate(self, root: SJob, before: tuple[bool, bool]) -> None:
        """Spread a change in `root`'s held/bad contribution to its transitive dependents (R4).

        Dependents that become parked leave their lanes; dependents that become free re-enter
        at the back in topological order (not by previous seq: jobs retried while parked may
        hold seqs out of dependency order), so none stands ahead of its upstream.
        """
        freed: list[SJob] = []
        stack = [(root, before)]
        while stack:
            node, (held0, bad0) = stack.pop()
            held1, bad1 = node.contribution()
            if (held1, bad1) == (held0, bad0):
                continue
            for dep_id in node.dependents:
                child = self.jobs[dep_id]
                child_before = child.contribution()
                was_blocked, was_in_lane = child.blocked, child.in_lane
                child.held_deps += held1 - held0
                child.bad_deps += bad1 - bad0
                if was_blocked != child.blocked:
                    self.effects.blocks.append(BlockChange(child.id, child.blocked))
                if was_in_lane and not child.in_lane:
                    self._leave_lane(child)
                    self._live_delta(child.tenant, -1)
                elif not was_in_lane and child.in_lane:
                    freed.append(child)
                stack.append((child, child_before))
        for child in sorted(freed, key=lambda j: j.order):
            if child.in_lane:  # a later step of the same change may have parked it again
                child.seq = self.new_seq()
                self.effects.moved.add(child.id)
                self._enter_lane(child)

    def _mark_ready(self, lane: Lane) -> None:
        head = self.lane_head(lane)
        if lane.running is None and head is not None and head.unmet == 0:
            heaps = self._ready.setdefault(head.tenant, {})
            heapq.heappush(heaps.setdefault(head.needs, []), (head.seq, lane.key))

    def _fits_now(self, job: SJob) -> bool:
        return all(
            self.in_use.get(name, 0) + amount <= self.capacity.get(name, 0)
            for name, amount in job.needs
        )

    def _peek_ready(self, heap: list[tuple[int, LaneKey]]) -> SJob | None:
        """Oldest ready lane head in one (tenant, class) heap; stale entries are dropped."""
        while heap:
            seq, key = heap[0]
            lane = self.lanes[key]
            head = self.lane_head(lane)
            if lane.running is None and head is not None and head.seq == seq and head.unmet == 0:
                return head
            heapq.heappop(heap)
        return None

    def rank(self, tenant: str, needs: Needs) -> int:
        """R6: when `tenant` was last served a job of class `needs` (-1: never since admitted).
        A job without resources competes for a worker: any start of the tenant counts."""
        if not needs:
            return self._served.get(tenant, -1)
        return self._served_res.get((tenant, needs), -1)

    def _pick(self) -> SJob | None:
        """R6/R9: of every active tenant's oldest ready head per resource class that fits now,
        the one whose tenant was served that class longest ago (then admission order, then
        lane entry order) gets the worker."""
        best: tuple[tuple[int, int, int], list[tuple[int, LaneKey]], SJob] | None = None
        for tenant in self.active:
            for needs, heap in self._ready.get(tenant, {}).items():
                head = self._peek_ready(heap)
                if head is None or not self._fits_now(head):
                    continue  # every head of this class needs the same: none fits
                key = (self.rank(tenant, needs), self._order[tenant], head.seq)
                if best is None or key < best[0]:
                    best = (key, heap, head)
        if best is None:
            return None
        heapq.heappop(best[1])
        return best[2]

    def _live_delta(self, tenant: str, delta: int) -> None:
        before = self.live.get(tenant, 0)
        after = before + delta
        self.live[tenant] = after
        if before == 0 and after > 0 and tenant not in self.active:
            self._counter += 1
            self._order[tenant] = self._counter
            self.waiting.append(tenant)
            self.effects.waiting_changed = True
            self.tenants_dirty = True
        elif before > 0 and after == 0:
            if tenant in self.active:  # R3: released only when nothing live is left
                self.active.remove(tenant)
                self.effects.tenants.append(TenantChange(tenant, admitted=False))
            else:
                self.waiting.remove(tenant)
                self.effects.waiting_changed = True
            self._served.pop(tenant, None)
            self._forget_resource_service(tenant)
            self._order.pop(tenant, None)
            self.tenants_dirty = True

    def admit(self) -> None:
        held = tuple(n for j in self._resume for n in self.jobs[j].needs)  # R9: theirs first
        self.reserve(held)  # a restart's commit admits before its resumed jobs start (R3 taker)
        while len(self.active) < self.max_active_users and self.waiting:  # R3 (every commit)
            # The first waiting tenant that can start something; if none can, the first.
            taker = next((t for t in self.waiting if not self.stalled(t)), self.waiting[0])
            self._admit_tenant(taker)
        self.unreserve(held)

    def _admit_tenant(self, tenant: str) -> None:
        passed = tuple(itertools.takewhile(lambda t: t != tenant, self.waiting))
        self.waiting.remove(tenant)
        self.active.append(tenant)
        self._counter += 1
        self._order[tenant] = self._counter
        self._served.pop(tenant, None)  # R6: a newcomer counts as never served
        self._forget_resource_service(tenant)
        self.effects.tenants.append(TenantChange(tenant, admitted=True, passed_over=passed))
        self.effects.waiting_changed = True
        self.tenants_dirty = True

    def _yield_slot(self) -> bool:
        """R3: one stalled active tenant gives its slot to the first waiting tenant that can
        start something now, and waits first in line. False when there is no such pair.

        Terminates: resources are only taken during a pass, so a stalled tenant stays stalled
        until the pass ends and is never a taker again in it."""
        if not self.waiting:
            return False
        giver = next((t for t in reversed(self.active) if self.stalled(t)), None)
        if giver is None:  # the usual case, found in O(active tenants)
            return False
        taker = next((t for t in self.waiting if not self.stalled(t)), None)
        if taker is None:
            return False
        self.active.remove(giver)
        self._served.pop(giver, None)
        self._forget_resource_service(giver)
        self._order[giver] = min(self._order[t] for t in self.waiting) - 1
        self.waiting.appendleft(giver)
        self.effects.tenants.append(TenantChange(giver, admitted=False, yielded=True))
        self._admit_tenant(taker)
        return True

    def _forget_resource_service(self, tenant: str) -> None:
        for key in [k for k in self._served_res if k[0] == tenant]:
            del self._served_res[key]

    def take_effects(self) -> Effects:
        effects, self.effects = self.effects, Effects()
        return effects
