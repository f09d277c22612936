"""The scheduling rules, as one pure state machine (no I/O, no clock, no async).

The engine feeds it every job transition and asks `next_starts()` which jobs to start now. Each
rule from the engine issue is marked where it is enforced:

  R1  A lane is (tenant, workflow, branch): at most one RUNNING job per lane, FIFO by entry `seq`.
  R2  At most `max_workers` RUNNING jobs in total.
  R3  A tenant is active from admission until it has no live job (RUNNING, or PENDING and able to
      run). At most `max_active_users` are active; waiting tenants are admitted in arrival order,
      and only when an active tenant has no live job left (not between two jobs of a lane).
  R4  A job starts only when every dependency SUCCEEDED. A job whose upstream FAILED or was
      CANCELED is blocked: it leaves its lane (holds neither lane nor tenant slot); retrying the
      upstream re-enters it at the back of its lane.
  R5  Failures are lane-local: nothing but dependents is affected by a failure.
  R6  Free workers are handed to active tenants round-robin; within a tenant the oldest ready
      lane head (lowest seq) goes first.

Deadlock freedom: every job enters its lane after its dependencies (topological `seq`), and a
retry re-enters the job and then its unblocked dependents with fresh, increasing seqs; so the
queued job with the lowest seq is always a lane head whose dependencies are done or running.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

LaneKey = tuple[str, str, str]  # (tenant, workflow_id, branch)


class Phase(StrEnum):
    """The scheduler's view of a job; PENDING splits into QUEUED (in a lane) and HELD."""

    HELD = "HELD"  # created but not yet started by the user
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


DONE_BAD = (Phase.FAILED, Phase.CANCELED)


@dataclass(slots=True)
class SJob:
    id: str
    tenant: str
    lane: LaneKey
    deps: tuple[str, ...]
    seq: int
    phase: Phase
    order: int = 0  # registration order: dependencies always come first (topological)
    unmet: int = 0  # dependencies not SUCCEEDED
    bad_deps: int = 0  # dependencies FAILED/CANCELED or themselves blocked
    dependents: list[str] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return self.bad_deps > 0


@dataclass(slots=True)
class Lane:
    key: LaneKey
    queue: list[tuple[int, str]] = field(default_factory=list)  # heap of (seq, job_id)
    running: str | None = None


@dataclass(frozen=True, slots=True)
class TenantChange:
    tenant: str
    admitted: bool  # True: admitted (active); False: released (no live job left)


@dataclass(frozen=True, slots=True)
class BlockChange:
    job_id: str
    blocked: bool


@dataclass(slots=True)
class Effects:
    """What a call changed besides the job it was about: the engine persists and publishes it."""

    tenants: list[TenantChange] = field(default_factory=list)
    blocks: list[BlockChange] = field(default_factory=list)
    waiting_changed: bool = False


class Scheduler:
    def __init__(self, max_workers: int = 4, max_active_users: int = 3) -> None:
        if max_workers < 1 or max_active_users < 1:
            raise ValueError("max_workers and max_active_users must be at least 1")
        self.max_workers = max_workers
        self.max_active_users = max_active_users
        self.jobs: dict[str, SJob] = {}
        self.lanes: dict[LaneKey, Lane] = {}
        self.running = 0
        self.live: dict[str, int] = {}  # tenant -> number of QUEUED + RUNNING jobs
        self.active: list[str] = []  # admission order; round-robin walks it
        self.waiting: deque[str] = deque()  # arrival order (R3)
        self._rr = 0  # index into `active` of the tenant served next (R6)
        # Per tenant: heap of (seq, lane) for lanes whose head may be ready; validated lazily.
        self._ready: dict[str, list[tuple[int, LaneKey]]] = {}
        self._next_seq = 0
        self.effects = Effects()

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

    # ---- building state ------------------------------------------------------------------
    def add(
        self,
        job_id: str,
        tenant: str,
        lane: LaneKey,
        deps: Iterable[str],
        seq: int,
        phase: Phase,
    ) -> None:
        """Register a HELD or finished job; `enqueue` queues it. Dependencies come first."""
        if phase not in (Phase.HELD, Phase.SUCCEEDED, *DONE_BAD):
            raise ValueError(f"cannot register {job_id} as {phase}")
        deps = tuple(deps)
        job = SJob(job_id, tenant, lane, deps, seq, phase, order=len(self.jobs))
        self._next_seq = max(self._next_seq, seq)
        for dep_id in deps:
            dep = self.jobs[dep_id]
            dep.dependents.append(job_id)
            if dep.phase is not Phase.SUCCEEDED:
                job.unmet += 1
            if dep.phase in DONE_BAD or dep.blocked:
                job.bad_deps += 1
        self.jobs[job_id] = job
        self.lanes.setdefault(lane, Lane(lane))

    def enqueue(self, job_id: str, seq: int | None = None) -> None:
        """A HELD job enters the back of its lane (or is parked, blocked, until retry)."""
        job = self.jobs[job_id]
        if job.phase is not Phase.HELD:
            raise ValueError(f"job {job_id} is {job.phase}, not held")
        job.seq = self.new_seq() if seq is None else seq
        job.phase = Phase.QUEUED
        if not job.blocked:
            self._enter_lane(job)

    # ---- transitions ---------------------------------------------------------------------
    def next_starts(self) -> list[str]:
        """Admit waiting tenants into free slots, then fill free workers. Marks jobs RUNNING."""
        self._admit()
        started: list[str] = []
        while self.running < self.max_workers and self.active:  # R2
            job = self._pick_round_robin()
            if job is None:
                break
            lane = self.lanes[job.lane]
            heapq.heappop(lane.queue)
            lane.running = job.id  # R1: the lane is busy before anything else is considered
            job.phase = Phase.RUNNING
            self.running += 1
            started.append(job.id)
        return started

    def finish(self, job_id: str, phase: Phase) -> None:
        """A RUNNING job ended SUCCEEDED, FAILED or CANCELED."""
        job = self.jobs[job_id]
        if job.phase is not Phase.RUNNING or phase not in (Phase.SUCCEEDED, *DONE_BAD):
            raise ValueError(f"cannot finish {job_id} ({job.phase}) as {phase}")
        lane = self.lanes[job.lane]
        lane.running = None
        self.running -= 1
        job.phase = phase
        self._mark_ready(lane)
        if phase is Phase.SUCCEEDED:
            for dep_id in job.dependents:
                dependent = self.jobs[dep_id]
                dependent.unmet -= 1
                if dependent.unmet == 0 and dependent.phase is Phase.QUEUED:
                    self._mark_ready(self.lanes[dependent.lane])
        else:
            self._spread_block(job, +1)  # R4/R5: only dependents are affected
        self._live_delta(job.tenant, -1)

    def interrupt(self, job_id: str) -> None:
        """A RUNNING job was stopped by shutdown: it returns to the head of its lane."""
        job = self.jobs[job_id]
        lane = self.lanes[job.lane]
        lane.running = None
        self.running -= 1
        job.phase = Phase.QUEUED
        heapq.heappush(lane.queue, (job.seq, job.id))
        self._mark_ready(lane)

    def cancel_queued(self, job_id: str) -> None:
        job = self.jobs[job_id]
        if job.phase not in (Phase.QUEUED, Phase.HELD):
            raise ValueError(f"job {job_id} is {job.phase}, not pending")
        was_live = job.phase is Phase.QUEUED and not job.blocked
        if was_live:
            lane = self.lanes[job.lane]
            lane.queue.remove((job.seq, job.id))
            heapq.heapify(lane.queue)
            self._mark_ready(lane)
        job.phase = Phase.CANCELED
        if not job.blocked:  # a blocked job was already bad for its dependents
            self._spread_block(job, +1)
        if was_live:
            self._live_delta(job.tenant, -1)

    def retry(self, job_id: str) -> None:
        """FAILED/CANCELED → back of its lane; dependents it unblocks follow it, in order."""
        job = self.jobs[job_id]
        if job.phase not in DONE_BAD:
            raise ValueError(f"job {job_id} is {job.phase}, not failed or canceled")
        job.phase = Phase.HELD
        self.enqueue(job_id)
        if not job.blocked:  # still blocked by another upstream: still bad for dependents
            self._spread_block(job, -1)

    # ---- internals -----------------------------------------------------------------------
    def _enter_lane(self, job: SJob) -> None:
        lane = self.lanes[job.lane]
        heapq.heappush(lane.queue, (job.seq, job.id))
        self._mark_ready(lane)
        self._live_delta(job.tenant, +1)

    def _spread_block(self, root: SJob, delta: int) -> None:
        """Propagate a change in `root`'s badness to its transitive dependents (R4).

        Dependents that become blocked leave their lanes; dependents that become unblocked
        re-enter at the back in topological order (not by previous seq: jobs retried while
        blocked may hold seqs out of dependency order).
        """
        unblocked: list[SJob] = []
        stack = [root]
        while stack:
            node = stack.pop()
            for dep_id in node.dependents:
                child = self.jobs[dep_id]
                was_blocked = child.blocked
                child.bad_deps += delta
                if was_blocked == child.blocked:
                    continue
                self.effects.blocks.append(BlockChange(child.id, child.blocked))
                if child.phase is Phase.QUEUED:
                    if child.blocked:
                        lane = self.lanes[child.lane]
                        lane.queue.remove((child.seq, child.id))
                        heapq.heapify(lane.queue)
                        self._mark_ready(lane)
                        self._live_delta(child.tenant, -1)
                    else:
                        unblocked.append(child)
                # A child that changed state changes its own dependents' badness too.
                if child.phase not in DONE_BAD:
                    stack.append(child)
        for child in sorted(unblocked, key=lambda j: j.order):
            child.seq = self.new_seq()
            self._enter_lane(child)

    def _mark_ready(self, lane: Lane) -> None:
        head = self.lane_head(lane)
        if lane.running is None and head is not None and head.unmet == 0:
            heapq.heappush(self._ready.setdefault(head.tenant, []), (head.seq, lane.key))

    def _pop_ready(self, tenant: str) -> SJob | None:
        """Oldest ready lane head of a tenant; stale heap entries are dropped on the way."""
        heap = self._ready.get(tenant)
        while heap:
            seq, key = heap[0]
            lane = self.lanes[key]
            head = self.lane_head(lane)
            if lane.running is None and head is not None and head.seq == seq and head.unmet == 0:
                heapq.heappop(heap)
                return head
            heapq.heappop(heap)
        return None

    def _pick_round_robin(self) -> SJob | None:
        n = len(self.active)
        for i in range(n):
            idx = (self._rr + i) % n
            job = self._pop_ready(self.active[idx])
            if job is not None:
                self._rr = (idx + 1) % n  # R6: next start serves the following tenant
                return job
        return None

    def _live_delta(self, tenant: str, delta: int) -> None:
        before = self.live.get(tenant, 0)
        after = before + delta
        self.live[tenant] = after
        if before == 0 and after > 0 and tenant not in self.active:
            self.waiting.append(tenant)
            self.effects.waiting_changed = True
        elif before > 0 and after == 0:
            if tenant in self.active:  # R3: released only when nothing live is left
                idx = self.active.index(tenant)
                self.active.pop(idx)
                if idx < self._rr:
                    self._rr -= 1
                if self._rr >= len(self.active):
                    self._rr = 0
                self.effects.tenants.append(TenantChange(tenant, admitted=False))
            else:
                self.waiting.remove(tenant)
                self.effects.waiting_changed = True

    def _admit(self) -> None:
        while len(self.active) < self.max_active_users and self.waiting:  # R3
            tenant = self.waiting.popleft()
            self.active.append(tenant)
            self.effects.tenants.append(TenantChange(tenant, admitted=True))
            self.effects.waiting_changed = True

    def take_effects(self) -> Effects:
        effects, self.effects = self.effects, Effects()
        return effects
