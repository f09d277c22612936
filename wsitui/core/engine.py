"""The embedded async engine: tenant-scoped commands in, committed transitions and events out.

Commands are plain methods called on the event-loop thread. Each one changes the pure scheduler
(`rules.Scheduler`), commits the result to the store, publishes events, and dispatches — all
without awaiting, so no other task sees a half-applied change and one dispatch pass can never
start two jobs of a lane (R1) or over-admit tenants (R3). Dispatch runs on submit, finish, cancel
and retry; there is no polling tick (R8).

This module holds the commands, the tenant-scoped queries and the one commit every change goes
through. Its parts, one job each: `validation` (what a submission must satisfy), `supervisor`
(running jobs: stop, progress, the end of a run), `run_context` (what an executor sees of the
engine), `recovery` (what stored jobs become at open), `tally` (workflow status), `errors`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.abc import TaskGroup

from wsitui.core import recovery, rules
from wsitui.core.admission import Admission, Decision, Limits, Refusal
from wsitui.core.errors import EngineError, InvalidRequest, NotFound, QueueFull, RateLimited
from wsitui.core.events import (
    Event,
    EventBus,
    JobStateChanged,
    TenantAdmitted,
    TenantReleased,
    TenantWaiting,
    WorkflowProgress,
)
from wsitui.core.executor import Executor
from wsitui.core.paths import DataDirLock, results_dir
from wsitui.core.phase import workflow_wait
from wsitui.core.records import (
    Job,
    JobSpec,
    JobState,
    Transition,
    Workflow,
    WorkflowSpec,
    WorkflowState,
    WorkflowStatus,
    job_id_for,
)
from wsitui.core.run_context import RunningJob
from wsitui.core.store import Store
from wsitui.core.supervisor import Supervisor
from wsitui.core.tally import Tally
from wsitui.core.validation import JobValidator, check_tenant

__all__ = [
    "Engine",
    "EngineError",
    "EngineStats",
    "InvalidRequest",
    "NotFound",
    "QueueFull",
    "RateLimited",
]


@dataclass(frozen=True, slots=True)
class EngineStats:
    active: tuple[str, ...]
    waiting: tuple[str, ...]
    running: int
    queued: int
    max_workers: int
    max_active_users: int
    resources: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # name: (used, cap)


class Engine:
    def __init__(
        self,
        data_dir: Path,
        executors: Iterable[Executor],
        *,
        max_workers: int = 4,
        max_active_users: int = 3,
        bus: EventBus | None = None,
        clock: Callable[[], float] = time.time,
        results_root: Path | None = None,
        new_id: Callable[[], str] = lambda: "wf" + secrets.token_hex(4),
        cancel_grace: float = 5.0,
        resources: Mapping[str, int] | None = None,
        limits: Limits | None = None,
    ) -> None:
        """`cancel_grace`: seconds a running job gets to stop after a cancel or shutdown before
        the engine ends it without waiting. `resources`: caps that override what the executors
        declare (e.g. {"gpu": 1} on a box whose second GPU is for something else). `limits`:
        admission control of submissions (none by default)."""
        self.data_dir = Path(data_dir)
        self.results_root = Path(results_root) if results_root else self.data_dir / "results"
        self.bus = bus or EventBus()
        self.clock = clock
        self.cancel_grace = cancel_grace
        self._new_id = new_id  # deterministic in snapshot tests
        self.executors: dict[str, Executor] = {str(e.job_type): e for e in executors}
        capacity: dict[str, int] = {}
        for executor in self.executors.values():
            for name, amount in executor.capacity().items():
                capacity[name] = max(capacity.get(name, 0), amount)
        capacity.update(resources or {})
        self.scheduler = rules.Scheduler(max_workers, max_active_users, capacity)
        self._limiters = {  # at least a thread per worker: a RUNNING job never waits for one
            t: anyio.CapacityLimiter(max(e.threads, max_workers)) for t, e in self.executors.items()
        }
        self._store: Store | None = None
        self._lock = DataDirLock(self.data_dir)
        self._jobs: dict[str, Job] = {}
        self._workflows: dict[str, Workflow] = {}
        self._wf_jobs: dict[str, list[str]] = {}
        self._tally: dict[str, Tally] = {}
        self.admission = Admission(limits or Limits(), clock)
        self._pending: dict[str, int] = {}  # tenant -> PENDING jobs, for admission in O(1)
        self._pending_total = 0
        self._validator = JobValidator(self.executors, self.scheduler)
        self._supervisor = Supervisor(self)
        self._runs: dict[str, RunningJob] = self._supervisor.runs  # one per RUNNING job
        self._tg: TaskGroup | None = None
        self._closing = False
        self._changed = anyio.Event()
        self._loop_thread: int | None = None
        self._token: Any = None
        self._opened: list[Executor] = []
        # Called with the store once the data dir is locked and open, before recovery commits
        # anything (the event log catches up on what a killed process committed, unlogged).
        self.on_open: list[Callable[[Store], object]] = []

    # ---- lifecycle -----------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        """Whether the engine's state is open (between `async with` entry and exit): a face
        redrawing late, after it closed, asks this instead of failing on the closed store."""
        return self._store is not None

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("engine is not open: use `async with engine:`")
        return self._store

    async def __aenter__(self) -> Engine:
        self._lock.acquire()
        try:
            self._store = Store(
                self.data_dir / "state.db",
                capacity=self.scheduler.capacity,
                results_root=self.results_root.absolute(),
            )
            self._loop_thread = threading.get_ident()
            self._token = anyio.lowlevel.current_token()
            for hook in self.on_open:  # e.g. the event log's backfill, before recovery commits
                hook(self._store)
            recovery.recover(self)
            for executor in self.executors.values():
                await executor.open()
                self._opened.append(executor)
        except BaseException:
            await self._close_executors()
            if self._store is not None:
                self._store.close()
                self._store = None
            self._lock.release()
            raise
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._dispatch()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Stop: running jobs stop at their next tile and go back to the head of their lane.

        Bounded: a job that does not stop within `cancel_grace` is left behind (interrupted,
        resumed at the next start) and the engine closes anyway.
        """
        self._closing = True
        self._supervisor.stop_all()
        if isinstance(exc, Exception) and self._tg is not None:
            # The caller's body failed (a face's error, not a cancellation): the task group
            # would cancel the job tasks at once, leaving their rows RUNNING, which the next
            # start counts as a crash. Let them stop at their next tile first, as on a clean
            # exit (bounded like one), then let the task group see the error.
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.cancel_grace + 2.0):
                await self.wait_until(lambda: self.scheduler.running == 0)
        try:
            assert self._tg is not None
            # If this exit is itself a cancellation, job tasks are cancelled instead; their
            # rows stay RUNNING and the next start resumes them from their checkpoints.
            return await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            self._tg = None
            with anyio.CancelScope(shield=True):
                await self._close_executors()
            for task in self._supervisor.abandoned:
                task.cancel()
            self.store.close()
            self._store = None
            self._lock.release()

    async def _close_executors(self) -> None:
        while self._opened:
            executor = self._opened.pop()
            try:
                with anyio.move_on_after(max(self.cancel_grace, 1.0)):
                    await executor.close()
            except Exception:  # a failing close must not keep the data dir locked
                logging.getLogger("wsitui").exception(
                    "closing the %s executor failed", executor.job_type
                )

    # ---- tenant-scoped reads -----------------------------------------------------------------
    def tenants(self) -> list[str]:
        return sorted({wf.tenant for wf in self._workflows.values()})

    def workflows(self, tenant: str) -> list[WorkflowStatus]:
        return [
            self._status(wf.id, with_jobs=False)
            for wf in self._workflows.values()
            if wf.tenant == tenant  # R7
        ]

    def workflow(self, tenant: str, workflow_id: str) -> WorkflowStatus:
        wf = self._workflows.get(workflow_id)
        if wf is None or wf.tenant != tenant:  # R7: another tenant's id looks unknown
            raise NotFound(f"no workflow {workflow_id!r} for tenant {tenant!r}")
        return self._status(workflow_id, with_jobs=True)

    def job(self, tenant: str, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None or job.tenant != tenant:  # R7
            raise NotFound(f"no job {job_id!r} for tenant {tenant!r}")
        return job

    def timeline(self, tenant: str, job_id: str) -> list[Transition]:
        self.job(tenant, job_id)
        return self.store.transitions(job_id)

    def results_dir(self, job: Job) -> Path:
        return results_dir(self.results_root, job.tenant, job.workflow_id, job.key)

    def stats(self) -> EngineStats:
        s = self.scheduler
        return EngineStats(
            active=tuple(s.active),
            waiting=tuple(s.waiting),
            running=s.running,
            queued=s.queued_count(),
            max_workers=s.max_workers,
            max_active_users=s.max_active_users,
            resources={k: (s.in_use.get(k, 0), cap) for k, cap in s.capacity.items()},
        )

    def pending_jobs(self, tenant: str | None = None) -> int:
        """PENDING jobs (held or queued, not running) of one tenant, or of all."""
        return self._pending_total if tenant is None else self._pending.get(tenant, 0)

    def queued_by_branch(self) -> dict[str, int]:
        """Queued (startable, not running) jobs per branch name, over every tenant."""
        out: dict[str, int] = {}
        for (_, _, branch), lane in self.scheduler.lanes.items():
            if lane.queue:
                out[branch] = out.get(branch, 0) + len(lane.queue)
        return out

    def queue_depths(self, tenant: str) -> dict[tuple[str, str], int]:
        """Queued (startable, not running) jobs per (workflow id, branch) of one tenant."""
        return {
            (wf_id, branch): len(lane.queue)
            for (owner, wf_id, branch), lane in self.scheduler.lanes.items()
            if owner == tenant
        }

    def is_idle(self) -> bool:
        """Nothing running and nothing queued that could run."""
        return self.scheduler.running == 0 and not any(self.scheduler.live.values())

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait (event-driven) until `predicate()` holds after some engine change."""
        while not predicate():
            await self._changed.wait()

    async def wait_idle(self) -> None:
        await self.wait_until(self.is_idle)

    # ---- commands ----------------------------------------------------------------------------
    def validate(self, tenant: str, spec: WorkflowSpec) -> list[JobSpec]:
        """Raise InvalidRequest exactly when `submit` would; else the jobs in dependency order."""
        check_tenant(tenant)
        return self._validator.ordered(spec.jobs, existing={})

    def submit(self, tenant: str, spec: WorkflowSpec, *, start: bool = True) -> WorkflowStatus:
        """Create a workflow with its jobs; `start=False` leaves them held until `start`."""
        check_tenant(tenant)
        ordered = self._validator.ordered(spec.jobs, existing={})
        self._admit(tenant, len(spec.jobs))  # after validation: a refused spec costs no token
        wf_id = self._new_id()
        while wf_id in self._workflows:
            wf_id = self._new_id()
        workflow = Workflow(wf_id, tenant, spec.name, self.clock())
        self._workflows[wf_id] = workflow
        self._wf_jobs[wf_id] = []
        self._create_jobs(workflow, ordered, start=start, new_workflow=True)
        return self._status(wf_id, with_jobs=True)

    def add_job(self, tenant: str, workflow_id: str, spec: JobSpec, *, start: bool = True) -> Job:
        workflow = self.workflow(tenant, workflow_id).workflow
        existing = {self._jobs[j].key: self._jobs[j] for j in self._wf_jobs[workflow_id]}
        ordered = self._validator.ordered((spec,), existing=existing)
        self._admit(tenant, 1)
        self._create_jobs(workflow, ordered, start=start, new_workflow=False)
        return self._jobs[job_id_for(workflow_id, spec.id)]

    def start(self, tenant: str, job_ids: Sequence[str]) -> None:
        """Queue held jobs, and any held jobs they depend on, at the back of their lanes."""
        requested = [self.job(tenant, j) for j in job_ids]
        for job in requested:  # refuse before changing anything
            if job.state is not JobState.PENDING:
                raise InvalidRequest(
                    f"job {job.key!r} is {job.state}: only held jobs can be started"
                    + (f"; {job.state.run_again} instead" if job.state.terminal else "")
                )
        to_start: set[str] = set()
        stack = [job.id for job in requested]
        while stack:
            job = self._jobs[stack.pop()]
            if not job.held or job.id in to_start:
                continue  # queued, running or finished upstreams need nothing
            to_start.add(job.id)
            stack.extend(job.depends_on)
        creation = {job_id: i for i, job_id in enumerate(self._jobs)}  # topological
        self._enqueue(sorted(to_start, key=creation.__getitem__))

    def start_workflow(self, tenant: str, workflow_id: str) -> None:
        self.workflow(tenant, workflow_id)
        self._enqueue([j for j in self._wf_jobs[workflow_id] if self._jobs[j].held])

    def cancel(self, tenant: str, job_id: str) -> None:
        """Cancel a pending job now, or ask a running one to stop at its next tile (it ends
        CANCELED at the latest `cancel_grace` seconds later)."""
        job = self.job(tenant, job_id)
        if job.state is JobState.RUNNING:
            self._supervisor.cancel(job.id)
            return
        if job.state is not JobState.PENDING:
            raise InvalidRequest(
                f"job {job.key!r} is {job.state}: only pending or running jobs can be canceled"
            )
        self.scheduler.cancel_queued(job.id)
        now = self.clock()
        self._commit(
            [replace(job, state=JobState.CANCELED, finished_at=now)],
            "canceled while pending",
            now,
        )
        self._after_change()

    def retry(self, tenant: str, job_id: str) -> Job:
        job = self.job(tenant, job_id)
        if job.state not in (JobState.FAILED, JobState.CANCELED):
            raise InvalidRequest(
                f"job {job.key!r} is {job.state}: only failed or canceled jobs can be retried"
            )
        self._validator.check_fits(job, "retry")
        self._admit(tenant, 1)  # a new attempt is one more PENDING job, like a submission
        self.scheduler.retry(job.id)
        return self._new_attempt(job, "retry")

    def rerun(self, tenant: str, job_id: str) -> Job:
        """Run a SUCCEEDED job again as a new attempt at the back of its lane (rules.py:
        rerun). Its outputs are written anew when it starts (valid shards of the same plan are
        reused, as for a retry); dependents that succeeded stay as they are, those not started
        yet wait for it. Refused while a dependent runs: that run reads these outputs."""
        job = self.job(tenant, job_id)
        if job.state is not JobState.SUCCEEDED:
            raise InvalidRequest(
                f"job {job.key!r} is {job.state}: only a succeeded job can be rerun "
                "(retry a failed or canceled one)"
            )
        running = [
            self._jobs[d].key
            for d in self._wf_jobs[job.workflow_id]
            if job.id in self._jobs[d].depends_on and self._jobs[d].state is JobState.RUNNING
        ]
        if running:
            raise InvalidRequest(
                f"job {job.key!r} cannot be rerun while {', '.join(map(repr, running))} runs "
                "on its outputs; wait for it to finish, or cancel it first"
            )
        self._validator.check_fits(job, "rerun")
        self._admit(tenant, 1)
        self.scheduler.rerun(job.id)
        return self._new_attempt(job, "rerun")

    def _new_attempt(self, job: Job, verb: str) -> Job:
        """Commit a job the scheduler put back in its lane as its next attempt."""
        now = self.clock()
        retried = replace(
            job,
            state=JobState.PENDING,
            attempt=job.attempt + 1,
            tiles_done=0,
            error=None,
            started_at=None,
            finished_at=None,
            enqueued=True,
            stage="",
            counters={},
            crashes=0,
            interrupted=False,
        )
        # The retried job, the dependents it unblocks, and dropping its old checkpoint: one
        # transaction, so a crash can never leave a dependent ahead of its upstream.
        self._commit([retried], f"{verb}: attempt {retried.attempt}", now, clear=[job.id])
        self._after_change()
        return self._jobs[job.id]

    def check_admission(self, requests: Sequence[tuple[str, int, int]]) -> None:
        """Raise RateLimited / QueueFull unless every submission of a series would be admitted
        (see `Admission.preview`); takes nothing. A face checks a whole config with it before
        submitting any of it."""
        refused = self.admission.preview(requests, self._pending, self._pending_total)
        if refused is not None:
            self._raise_refusal(refused)

    # ---- internals: admission and creation ---------------------------------------------------
    def _admit(self, tenant: str, jobs: int) -> None:
        """Admission control, before anything changes: raise RateLimited / QueueFull. Every
        request that makes jobs PENDING passes it (submit, add_job, retry, rerun), after its
        validation: a refused request costs no token."""
        refused = self.admission.admit(
            tenant, jobs, self._pending.get(tenant, 0), self._pending_total
        )
        if refused is not None:
            self._raise_refusal(refused)

    @staticmethod
    def _raise_refusal(refused: Decision) -> None:
        if refused.refusal is Refusal.RATE_LIMITED:
            raise RateLimited(refused.message, refused.retry_after)
        raise QueueFull(refused.message, never=refused.never)

    def _create_jobs(
        self, workflow: Workflow, specs: list[JobSpec], *, start: bool, new_workflow: bool
    ) -> None:
        now = self.clock()
        created: list[Job] = []
        for spec in specs:
            job = Job(
                id=job_id_for(workflow.id, spec.id),
                key=spec.id,
                workflow_id=workflow.id,
                tenant=workflow.tenant,
                job_type=spec.type,
                slide=spec.slide,
                branch=spec.branch,
                depends_on=tuple(job_id_for(workflow.id, d) for d in spec.depends_on),
                params=dict(spec.params),
                state=JobState.PENDING,
                created_at=now,
                enqueued=False,
            )
            job = replace(job, needs=self._validator.needs(job))  # R9: stored for every face
            lane, held = self._lane(job), rules.SchedState.HELD
            self.scheduler.add(job.id, job.tenant, lane, job.depends_on, 0, held, job.needs)
            if start:
                self.scheduler.enqueue(job.id)
            created.append(replace(job, enqueued=start))
            self._wf_jobs[workflow.id].append(job.id)
        self._commit(
            created, "submitted", now, created=True, workflow=workflow if new_workflow else None
        )
        self._after_change()

    def _enqueue(self, job_ids: list[str]) -> None:
        now = self.clock()
        for job_id in job_ids:
            self.scheduler.enqueue(job_id)
        changed = [replace(self._jobs[j], enqueued=True) for j in job_ids]
        self._commit(changed, "started by user", now)
        self._after_change()

    # ---- internals: dispatch (the supervisor runs what it starts) ----------------------------
    def _dispatch(self) -> None:
        """Start what the rules allow; commit the starts with any admissions, then publish."""
        running = self._tg is not None and not self._closing
        starts = self.scheduler.next_starts() if running else []
        now = self.clock()
        started = [
            replace(
                self._jobs[j],
                state=JobState.RUNNING,
                started_at=now,
                finished_at=None,
                interrupted=False,
            )
            for j in starts
        ]
        self._commit(started, "started", now)
        if self._tg is None:
            return
        for job in started:
            self._runs[job.id] = RunningJob(threading.Event(), asyncio.Event())
            self._tg.start_soon(self._supervisor.run_job, job.id, name=f"job {job.id}")

    def _notify(self) -> None:
        """Wake `wait_until` callers: something changed."""
        self._changed.set()
        self._changed = anyio.Event()

    def _call_in_loop(self, fn: Callable[..., None], *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            anyio.from_thread.run_sync(fn, *args, token=self._token)

    # ---- internals: commit, publish ----------------------------------------------------------
    def _commit(
        self,
        jobs: list[Job],
        reason: str,
        now: float,
        *,
        created: bool = False,
        workflow: Workflow | None = None,
        clear: Sequence[str] = (),
        reasons: Mapping[str, str] | None = None,
    ) -> None:
        """Persist a change, then publish it: the jobs a command changed with their
        transitions (`reasons` by job id, else `reason`), every job the scheduler moved or
        (un)blocked as a consequence, and the tenant state with the admissions the change
        allows — one transaction, so a restart or a reader of state.db never sees half of it
        (not a slot a release freed while a tenant waits for it, R3)."""
        effects = self.scheduler.take_effects()
        free = self.scheduler.max_active_users - len(self.scheduler.active)  # before admitting
        self.scheduler.admit()  # R3: the dispatch after this commit finds the slots taken
        admitted, self.scheduler.effects.tenants = self.scheduler.effects.tenants, []
        sched = self.scheduler.jobs
        # Lane positions and blocked flags come from the scheduler, for every job touched.
        main = [replace(j, seq=sched[j.id].seq, blocked=sched[j.id].blocked) for j in jobs]
        main_ids = {j.id for j in main}
        side_ids = [c.job_id for c in effects.blocks] + sorted(
            effects.moved, key=lambda j: sched[j].seq
        )
        side = [
            replace(self._jobs[j], seq=sched[j].seq, blocked=sched[j].blocked)
            for j in dict.fromkeys(side_ids)
            if j not in main_ids
        ]
        tenants = self.scheduler.tenant_rows() if self.scheduler.tenants_dirty else None
        if not main and not side and tenants is None and workflow is None and not clear:
            self._publish_tenants(effects, now, free, admitted=True)
            self._publish_tenants(effects, now, free, admitted=False)
            return
        by_job = reasons or {}
        transitions = [
            Transition(j.id, now, j.state, j.attempt, by_job.get(j.id, reason)) for j in main
        ]
        self.store.apply(
            [*main, *side], transitions, workflow=workflow, tenants=tenants, clear=clear
        )
        events: list[Event] = []
        for job in main:
            before = None if created else self._jobs[job.id].state
            self._put(job)
            events.append(JobStateChanged(now, job, before, by_job.get(job.id, reason)))
        for job in side:
            old = self._jobs[job.id]
            self._put(job)
            if job.blocked and not old.blocked:
                why = "blocked: an upstream job failed or was canceled"
            elif old.blocked and not job.blocked:
                why = "unblocked: upstream retried"
            else:
                why = "re-entered its lane: its upstream was started"
            events.append(JobStateChanged(now, job, job.state, why))
        # Admissions before the starts they allow; releases after the ends that caused them.
        self._publish_tenants(effects, now, free, admitted=True)
        for event in events:
            self.bus.publish(event)
        self._publish_tenants(effects, now, free, admitted=False)
        touched = [j.workflow_id for j in [*main, *side]]
        if workflow is not None:
            touched.append(workflow.id)  # a new workflow is news even with no jobs yet
        for wf_id in dict.fromkeys(touched):
            self._publish_workflow(wf_id, now)
        for tc in admitted:  # where the dispatch after it published them: before its starts
            self.bus.publish(TenantAdmitted(now, tc.tenant, passed_over=tc.passed_over))

    def _after_change(self) -> None:
        self._dispatch()  # R8: in the same step as the change, never on a tick
        self._notify()

    def _publish_tenants(
        self, effects: rules.Effects, now: float, free: int, *, admitted: bool
    ) -> None:
        # R3, in the scheduler's order: a slot given up is released before it is taken, and a
        # tenant admitted then stalled in one pass is admitted before it gives its slot up.
        for tc in effects.tenants:
            if admitted and tc.yielded:
                self.bus.publish(TenantReleased(now, tc.tenant, yielded=True))
            elif admitted and tc.admitted:
                self.bus.publish(TenantAdmitted(now, tc.tenant, passed_over=tc.passed_over))
            elif not admitted and not tc.admitted and not tc.yielded:
                self.bus.publish(TenantReleased(now, tc.tenant, cap_lowered=tc.cap_lowered))
        if effects.waiting_changed and not admitted and free <= 0:
            # With a slot free (before this commit's admissions), the tenant admitted into it
            # is not announced as waiting: the dispatch that follows in the same step (R8)
            # publishes the queue that is left.
            for pos, tenant in enumerate(self.scheduler.waiting, start=1):
                self.bus.publish(TenantWaiting(now, tenant, pos))

    def _publish_workflow(self, workflow_id: str, now: float) -> None:
        status = self._status(workflow_id, with_jobs=False)
        self.bus.publish(WorkflowProgress(now, status.workflow, status.state, status.progress))

    def _put(self, job: Job) -> None:
        """Replace a job's snapshot, keeping its workflow's tally in step."""
        tally = self._tally.setdefault(job.workflow_id, Tally())
        old = self._jobs.get(job.id)
        if old is not None:
            tally.add(old, -1)
            if old.state is JobState.PENDING:
                self._pending[old.tenant] -= 1
                self._pending_total -= 1
        tally.add(job, +1)
        if job.state is JobState.PENDING:
            self._pending[job.tenant] = self._pending.get(job.tenant, 0) + 1
            self._pending_total += 1
        self._jobs[job.id] = job

    def _status(self, workflow_id: str, *, with_jobs: bool) -> WorkflowStatus:
        state, progress = (self._tally.get(workflow_id) or Tally()).summary()
        jobs = tuple(self._jobs[j] for j in self._wf_jobs[workflow_id]) if with_jobs else ()
        wf, waiting = self._workflows[workflow_id], self.scheduler.waiting
        queued = state is WorkflowState.PENDING and wf.tenant in waiting  # rare: then its jobs
        queued = queued and any(self.scheduler.jobs[j].in_lane for j in self._wf_jobs[wf.id])
        return WorkflowStatus(wf, state, progress, jobs, workflow_wait(wf.tenant, waiting, queued))

    @staticmethod
    def _lane(job: Job) -> rules.LaneKey:
        return (job.tenant, job.workflow_id, job.branch)
