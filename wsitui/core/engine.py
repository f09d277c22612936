"""The embedded async engine: tenant-scoped commands in, committed transitions and events out.

Commands are plain methods called on the event-loop thread. Each one changes the pure scheduler
(`rules.Scheduler`), commits the result to the store, publishes events, and dispatches — all
without awaiting, so no other task sees a half-applied change and one dispatch pass can never
start two jobs of a lane (R1) or over-admit tenants (R3). Dispatch runs on submit, finish, cancel
and retry; there is no polling tick (R8).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from anyio.abc import TaskGroup
from pydantic import BaseModel, ValidationError

from wsitui.core import rules
from wsitui.core.admission import Admission, Decision, Limits, Refusal
from wsitui.core.events import (
    Event,
    EventBus,
    JobProgress,
    JobStateChanged,
    TenantAdmitted,
    TenantReleased,
    TenantWaiting,
    WorkflowProgress,
)
from wsitui.core.executor import (
    Executor,
    JobCanceled,
    JobError,
    UpstreamJob,
    UpstreamSpec,
)
from wsitui.core.paths import DataDirLock, results_dir
from wsitui.core.pydantic_errors import first_problem
from wsitui.core.records import (
    SAFE_ID,
    SAFE_ID_HINT,
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
from wsitui.core.store import Store, StoreError

T = TypeVar("T")

PROGRESS_COMMIT_S = 2.0  # a running job's progress is committed at most this often (and at stages)

_PHASE = {
    JobState.SUCCEEDED: rules.Phase.SUCCEEDED,
    JobState.FAILED: rules.Phase.FAILED,
    JobState.CANCELED: rules.Phase.CANCELED,
}


class EngineError(Exception):
    """A refused command; str() is a one-line message for the user."""


class NotFound(EngineError):
    pass


class InvalidRequest(EngineError):
    pass


class RateLimited(EngineError):
    """The tenant submitted faster than its token bucket allows; nothing was submitted."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueueFull(EngineError):
    """Too many PENDING jobs (the tenant's or in total); nothing was submitted."""


@dataclass(frozen=True, slots=True)
class EngineStats:
    active: tuple[str, ...]
    waiting: tuple[str, ...]
    running: int
    queued: int
    max_workers: int
    max_active_users: int
    resources: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # name: (used, cap)


class _Tally:
    """Running totals of one workflow's jobs, so status is O(1) per event, not O(jobs)."""

    __slots__ = ("jobs", "progress", "runnable", "states")

    def __init__(self) -> None:
        self.jobs = 0
        self.progress = 0.0
        self.runnable = 0  # PENDING and not blocked
        self.states: dict[JobState, int] = dict.fromkeys(JobState, 0)

    def add(self, job: Job, sign: int) -> None:
        self.jobs += sign
        self.progress += sign * job.progress
        self.states[job.state] += sign
        self.runnable += sign * (job.state is JobState.PENDING and not job.blocked)


class _Revoked:
    """Shared by a run's context parts: set once the engine gave up waiting for the run."""

    __slots__ = ("is_set",)

    def __init__(self) -> None:
        self.is_set = False


class _Checkpoint:
    def __init__(self, store: Store, job: Job, revoked: _Revoked) -> None:
        self._store, self._job, self._revoked = store, job, revoked
        # The total the run last reported (set from its thread by `report`, so never behind
        # a report the loop has not applied yet); saved with every checkpoint.
        self.tiles_total = job.tiles_total

    def load(self) -> dict[str, Any] | None:
        found = self._store.load_checkpoint(self._job.id, self._job.attempt)
        return None if found is None else found[0]

    def save(self, state: Mapping[str, Any], tiles_done: int) -> None:
        if self._revoked.is_set:  # a run past its cancel deadline must not write any more
            raise JobCanceled(self._job.id)
        # The total goes with the done count: the job row's total is otherwise only saved with
        # throttled progress, and a resume after a kill showed "48 of 0".
        total = max(self.tiles_total, tiles_done)
        self._store.save_checkpoint(self._job.id, self._job.attempt, state, tiles_done, total)


class _JobContext:
    """What an executor sees of the engine; every method is safe from any thread."""

    def __init__(
        self,
        engine: Engine,
        job: Job,
        out_dir: Path,
        cancel: threading.Event,
        params: BaseModel,
        upstream: tuple[UpstreamJob, ...],
        limiter: anyio.CapacityLimiter,
    ) -> None:
        self.job = job
        self.params = params
        self.results_dir = out_dir
        self.shards_dir = out_dir / "shards"
        self.upstream = upstream
        self.revoked = _Revoked()
        self.checkpoint = _Checkpoint(engine.store, job, self.revoked)
        self._engine = engine
        self._cancel = cancel
        self._limiter = limiter
        self.threads_lock = threading.Lock()
        self.threads = 0  # worker threads running this job's code now
        self.on_threads_done: Callable[[], None] | None = None  # set once the run is abandoned

    def _send(self, **change: Any) -> None:
        if self.revoked.is_set:
            raise JobCanceled(self.job.id)
        self._engine._call_in_loop(self._engine._on_progress, self.job.id, self.job.attempt, change)

    def report(
        self, tiles_done: int, tiles_total: int, counters: Mapping[str, int] | None = None
    ) -> None:
        self.checkpoint.tiles_total = int(tiles_total)
        self._send(
            tiles_done=int(tiles_done),
            tiles_total=int(tiles_total),
            counters=None if counters is None else {str(k): int(v) for k, v in counters.items()},
        )

    def restart_progress(self, reason: str) -> None:
        self._send(restart=reason)

    def set_stage(self, stage: str) -> None:
        self._send(stage=" ".join(str(stage).split())[:80])

    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def check_cancel(self) -> None:
        if self._cancel.is_set():
            raise JobCanceled(self.job.id)

    async def to_thread(self, fn: Callable[..., T], *args: Any) -> T:
        def tracked() -> T:
            with self.threads_lock:
                self.threads += 1
            try:
                return fn(*args)
            finally:
                with self.threads_lock:
                    self.threads -= 1
                    done = self.on_threads_done if self.threads == 0 else None
                if done is not None:
                    done()

        # abandon_on_cancel: a run the engine gave up on must not pin shutdown to its thread.
        return await anyio.to_thread.run_sync(
            tracked, limiter=self._limiter, abandon_on_cancel=True
        )


@dataclass(slots=True)
class _Run:
    """One RUNNING job's controls."""

    cancel: threading.Event  # seen by executor threads
    stop: asyncio.Event  # the same request, awaitable on the loop
    ctx: _JobContext | None = None

    def request_stop(self) -> None:
        self.cancel.set()
        self.stop.set()


class _Crash(Exception):
    """An executor raised something that is not an Exception (SystemExit, a stray cancel...)."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"{type(exc).__name__}: {exc}".rstrip(": "))


class _Abandoned(Exception):
    """The run ignored a stop request for longer than the grace period."""


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
        self._limiters = {
            t: anyio.CapacityLimiter(max(1, e.threads)) for t, e in self.executors.items()
        }
        self._store: Store | None = None
        self._lock = DataDirLock(self.data_dir)
        self._jobs: dict[str, Job] = {}
        self._workflows: dict[str, Workflow] = {}
        self._wf_jobs: dict[str, list[str]] = {}
        self._tally: dict[str, _Tally] = {}
        self.admission = Admission(limits or Limits(), clock)
        self._pending: dict[str, int] = {}  # tenant -> PENDING jobs, for admission in O(1)
        self._pending_total = 0
        self._runs: dict[str, _Run] = {}  # one per RUNNING job
        self._user_canceled: set[str] = set()  # so shutdown cannot turn a cancel into a resume
        self._abandoned: set[asyncio.Task[Any]] = set()  # runs past their cancel deadline
        self._progress_saved: dict[str, float] = {}  # job id -> when its progress was committed
        self._holds: dict[str, rules.Needs] = {}  # resources of abandoned runs still working
        self._tg: TaskGroup | None = None
        self._closing = False
        self._changed = anyio.Event()
        self._loop_thread: int | None = None
        self._token: Any = None
        self._opened: list[Executor] = []

    # ---- lifecycle -----------------------------------------------------------------------------
    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("engine is not open: use `async with engine:`")
        return self._store

    async def __aenter__(self) -> Engine:
        self._lock.acquire()
        try:
            self._store = Store(self.data_dir / "state.db")
            self._loop_thread = threading.get_ident()
            self._token = anyio.lowlevel.current_token()
            self._recover()
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
        for run in self._runs.values():
            run.request_stop()
        try:
            assert self._tg is not None
            # If this exit is itself a cancellation, job tasks are cancelled instead; their
            # rows stay RUNNING and the next start resumes them from their checkpoints.
            return await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            self._tg = None
            with anyio.CancelScope(shield=True):
                await self._close_executors()
            for task in self._abandoned:
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

    def _recover(self) -> None:
        """Rebuild in-memory state; jobs found RUNNING were interrupted and resume first.

        A job found RUNNING means the process died while it ran. One that died twice in a row
        without saving a checkpoint in between, each time as the only job running, is failed
        instead of resumed a third time: it is likely what kills the process (a poison job).
        A death with several jobs running counts against none of them: an external SIGKILL (or
        the OOM killer) while innocent jobs run must not fail them, and a real poison job is
        caught once it dies alone (interrupted jobs resume first, so that comes soon).
        """
        for wf in self.store.workflows():
            self._workflows[wf.id] = wf
            self._wf_jobs[wf.id] = []
        interrupted: list[Job] = []
        poisoned: list[Job] = []
        unfit: list[Job] = []
        queued: list[Job] = []
        now = self.clock()
        stored = self.store.jobs()
        alone = sum(j.state is JobState.RUNNING for j in stored) == 1
        for job in stored:
            if job.workflow_id not in self._wf_jobs:
                raise StoreError(
                    f"state database {self.store.path}: job {job.id!r} belongs to no workflow; "
                    "restore a backup of state.db, or move it aside to start afresh"
                )
            needs = self._needs(job)
            as_stored = job
            if job.state in (JobState.RUNNING, JobState.PENDING) and not self.scheduler.fits(
                needs.items()
            ):  # e.g. a GPU job stored on a machine that had one: it could never start here
                job = replace(
                    job,
                    state=JobState.FAILED,
                    finished_at=now,
                    error=f"{self._unfit_reason(needs)}; this job cannot run on this machine",
                )
                unfit.append(job)
            elif job.state is JobState.RUNNING:
                job = replace(job, crashes=job.crashes + alone)
                if job.crashes >= 2:
                    job = replace(
                        job,
                        state=JobState.FAILED,
                        finished_at=now,
                        error="the process died while this job ran, twice in a row with no "
                        "progress saved: failed instead of resumed again; see its error.log "
                        "or the log, fix the cause, then retry it",
                    )
                    poisoned.append(job)
                else:
                    interrupted.append(job)
            elif job.state is JobState.PENDING and job.enqueued:
                queued.append(job)
            # A job failed here is kept as stored in memory until its FAILED commit, so that
            # event says what it was.
            failing = job.state is JobState.FAILED and as_stored.state is not JobState.FAILED
            self._put(replace(as_stored, crashes=job.crashes) if failing else job)
            self._wf_jobs[job.workflow_id].append(job.id)
            phase = _PHASE.get(job.state, rules.Phase.HELD)
            self.scheduler.add(
                job.id, job.tenant, self._lane(job), job.depends_on, job.seq, phase, needs
            )
        resumed = []
        for job in interrupted:
            found = self.store.load_checkpoint(job.id, job.attempt)
            resumed.append(
                replace(job, state=JobState.PENDING, tiles_done=found[1] if found else 0, stage="")
            )
        # Interrupted jobs go back to the head of their lanes (their old seqs are lowest).
        for job in sorted(interrupted, key=lambda j: j.seq) + sorted(queued, key=lambda j: j.seq):
            self.scheduler.enqueue(job.id, job.seq)
        # Which tenants were active, and the waiting order, continue from the stored state.
        self.scheduler.restore_tenants(self.store.tenant_rows())
        for job_id, job in self._jobs.items():
            if self.scheduler.jobs[job_id].blocked != job.blocked:
                self._put(replace(job, blocked=self.scheduler.jobs[job_id].blocked))
        self._commit(
            resumed,
            "interrupted: the engine stopped while it ran; resumes from its last checkpoint",
            now,
        )
        self._commit(poisoned, "failed: crashed the process on two consecutive starts", now)
        self._commit(unfit, "failed: needs a resource this engine does not have", now)
        for job in unfit:
            logging.getLogger("wsitui").warning("job %s failed: %s", job.id, job.error)

    # ---- tenant-scoped reads -----------------------------------------------------------------
    def tenants(self) -> list[str]:
        return sorted({wf.tenant for wf in self._workflows.values()})

    def workflows(self, tenant: str) -> list[WorkflowStatus]:
        return [
            self._status(wf.id, with_jobs=False)
            for wf in self._workflows.values()
            if wf.tenant == tenant
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
        _check_tenant(tenant)
        return self._validate_jobs(spec.jobs, existing={})

    def submit(self, tenant: str, spec: WorkflowSpec, *, start: bool = True) -> WorkflowStatus:
        """Create a workflow with its jobs; `start=False` leaves them held until `start`."""
        _check_tenant(tenant)
        ordered = self._validate_jobs(spec.jobs, existing={})
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
        ordered = self._validate_jobs((spec,), existing=existing)
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
                    + ("; retry it instead" if job.state in _PHASE else "")
                )
        to_start: set[str] = set()
        stack = [job.id for job in requested]
        while stack:
            job = self._jobs[stack.pop()]
            if not _held(job) or job.id in to_start:
                continue  # queued, running or finished upstreams need nothing
            to_start.add(job.id)
            stack.extend(job.depends_on)
        creation = {job_id: i for i, job_id in enumerate(self._jobs)}  # topological
        self._enqueue(sorted(to_start, key=creation.__getitem__))

    def start_workflow(self, tenant: str, workflow_id: str) -> None:
        self.workflow(tenant, workflow_id)
        self._enqueue([j for j in self._wf_jobs[workflow_id] if _held(self._jobs[j])])

    def cancel(self, tenant: str, job_id: str) -> None:
        """Cancel a pending job now, or ask a running one to stop at its next tile (it ends
        CANCELED at the latest `cancel_grace` seconds later)."""
        job = self.job(tenant, job_id)
        if job.state is JobState.RUNNING:
            self._user_canceled.add(job.id)
            self._runs[job.id].request_stop()
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
        self._check_fits(job, "retry")
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
        self._check_fits(job, "rerun")
        self.scheduler.rerun(job.id)
        return self._new_attempt(job, "rerun")

    def _check_fits(self, job: Job, verb: str) -> None:
        needs = self._needs(job)
        if not self.scheduler.fits(needs.items()):  # it would wait forever
            raise InvalidRequest(
                f"job {job.key!r} {self._unfit_reason(needs)}: it cannot run on this machine; "
                f'submit it anew with device = "cpu", or {verb} it on a machine that has it'
            )

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

    # ---- internals: validation and creation --------------------------------------------------
    def _admit(self, tenant: str, jobs: int) -> None:
        """Admission control, before anything changes: raise RateLimited / QueueFull."""
        refused = self.admission.admit(
            tenant, jobs, self._pending.get(tenant, 0), self._pending_total
        )
        if refused is not None:
            self._raise_refusal(refused)

    @staticmethod
    def _raise_refusal(refused: Decision) -> None:
        if refused.refusal is Refusal.RATE_LIMITED:
            raise RateLimited(refused.message, refused.retry_after)
        raise QueueFull(refused.message)

    def _parse_params(self, spec: JobSpec) -> BaseModel:
        executor = self.executors.get(str(spec.type))
        if executor is None:
            raise InvalidRequest(
                f"job {spec.id!r}: {spec.type} jobs cannot run yet (no executor is "
                f"installed for them); available: {', '.join(sorted(self.executors)) or 'none'}"
            )
        try:
            return executor.params_model.model_validate(spec.params)
        except ValidationError as exc:
            raise InvalidRequest(f"job {spec.id!r}: {_params_error(exc)}") from None

    def _validate_jobs(
        self, specs: Sequence[JobSpec], existing: Mapping[str, Job]
    ) -> list[JobSpec]:
        """Check ids, types, params, resources, upstreams and the DAG; return specs in a stable
        topological order."""
        keys: dict[str, JobSpec] = {}
        for spec in specs:
            if spec.id in keys or spec.id in existing:
                raise InvalidRequest(f"job id {spec.id!r} is used twice in the workflow")
            keys[spec.id] = spec
        for spec in specs:
            upstream: list[UpstreamSpec] = []
            for dep in spec.depends_on:
                if dep in keys:
                    upstream.append(UpstreamSpec(dep, keys[dep].type, keys[dep].slide))
                elif dep in existing:
                    up = existing[dep]
                    upstream.append(UpstreamSpec(dep, up.job_type, up.slide))
                else:
                    raise InvalidRequest(
                        f"job {spec.id!r} depends on unknown job {dep!r}: depends_on names "
                        "jobs of the same workflow"
                    )
            params = self._parse_params(spec)
            executor = self.executors[str(spec.type)]
            needs = executor.resources(params)
            if not self.scheduler.fits(needs.items()):
                raise InvalidRequest(
                    f"job {spec.id!r}: {self._unfit_reason(needs)}: "
                    'run it on the CPU (device = "cpu") or on a machine that has it'
                )
            try:
                executor.validate(spec, Path(spec.slide), params, tuple(upstream))
            except ValueError as exc:
                raise InvalidRequest(f"job {spec.id!r}: {exc}") from None
        ordered: list[JobSpec] = []
        state: dict[str, int] = {}  # 1 visiting, 2 done

        def visit(key: str, path: list[str]) -> None:
            if key in existing or state.get(key) == 2:
                return
            if state.get(key) == 1:
                cycle = [*path[path.index(key) :], key]
                raise InvalidRequest(
                    f"dependency cycle (x -> y: x depends on y): {' -> '.join(cycle)}"
                )
            state[key] = 1
            for dep in keys[key].depends_on:
                visit(dep, [*path, key])
            state[key] = 2
            ordered.append(keys[key])

        for spec in specs:
            visit(spec.id, [])
        return ordered

    def _unfit_reason(self, needs: Mapping[str, int]) -> str:
        have = ", ".join(f"{k}={v}" for k, v in sorted(self.scheduler.capacity.items()))
        want = ", ".join(f"{k}={v}" for k, v in sorted(needs.items()) if v > 0)
        return f"needs {want} but this engine has {have or 'none'}"

    def _needs(self, job: Job) -> dict[str, int]:
        """Resources a job holds while running (R9); params were validated at submission."""
        executor = self.executors.get(str(job.job_type))
        if executor is None:
            return {}
        try:
            return dict(executor.resources(executor.params_model.model_validate(job.params)))
        except ValidationError:
            return {}  # the job fails with the message when it starts

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
            self.scheduler.add(
                job.id,
                job.tenant,
                self._lane(job),
                job.depends_on,
                0,
                rules.Phase.HELD,
                self._needs(job),
            )
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

    # ---- internals: running jobs -------------------------------------------------------------
    def _dispatch(self) -> None:
        """Start what the rules allow; commit the starts with any admissions, then publish."""
        running = self._tg is not None and not self._closing
        starts = self.scheduler.next_starts() if running else []
        now = self.clock()
        started = [
            replace(self._jobs[j], state=JobState.RUNNING, started_at=now, finished_at=None)
            for j in starts
        ]
        self._commit(started, "started", now)
        if self._tg is None:
            return
        for job in started:
            self._runs[job.id] = _Run(threading.Event(), asyncio.Event())
            self._tg.start_soon(self._run_job, job.id, name=f"job {job.id}")

    def _prepare_results(self, job: Job) -> Path:
        """The job's results dir: kept when it resumes within an attempt; for a new attempt
        everything but `shards/` is removed (each shard records the job, plan and checksum it
        belongs to and is checked before use, so a retry reuses the valid ones)."""
        out_dir = self.results_dir(job)
        marker = out_dir / ".attempt"
        try:
            current = marker.read_text().strip() if marker.is_file() else None
        except OSError:
            current = None
        if out_dir.exists() and current != str(job.attempt):
            for entry in list(out_dir.iterdir()):
                if entry.name == "shards" and entry.is_dir() and not entry.is_symlink():
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        out_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{job.attempt}\n")
        return out_dir

    def _upstream(self, job: Job) -> tuple[UpstreamJob, ...]:
        return tuple(
            UpstreamJob(
                key=up.key,
                job_id=up.id,
                job_type=up.job_type,
                slide=up.slide,
                state=up.state,
                results_dir=self.results_dir(up),
            )
            for up in (self._jobs[d] for d in job.depends_on)
        )

    async def _run_job(self, job_id: str) -> None:
        job = self._jobs[job_id]
        run = self._runs[job_id]
        state, error, reason = JobState.SUCCEEDED, None, "completed"
        left_behind: _JobContext | None = None
        try:
            # A stored job of a type this engine has no executor for fails here, in one line.
            params = self._parse_params(
                JobSpec(id=job.key, type=job.job_type, slide=job.slide, params=job.params)
            )
            executor = self.executors[str(job.job_type)]
            out_dir = self._prepare_results(job)
            run.ctx = _JobContext(
                self,
                job,
                out_dir,
                run.cancel,
                params,
                self._upstream(job),
                self._limiters[str(job.job_type)],
            )
            await self._supervise(executor, run)
        except JobCanceled:
            if self._closing and job_id not in self._user_canceled:
                self._interrupt(job_id)
                return
            state, reason = JobState.CANCELED, "canceled while running"
        except _Abandoned:
            if self._closing and job_id not in self._user_canceled:
                self._interrupt(job_id, late=True)
                return
            state = JobState.CANCELED
            reason = (
                f"canceled: it did not stop within {self.cancel_grace:g} s of the request; its "
                "late result is discarded and its partial outputs removed"
            )
            self._discard_results(job)
            left_behind = run.ctx
        except (JobError, EngineError) as exc:
            state, error, reason = JobState.FAILED, str(exc), "failed"
        except _Crash as exc:  # a BaseException from executor code: its own name and message
            state, error, reason = JobState.FAILED, str(exc).splitlines()[0], "failed"
            self._write_traceback(job, exc)
        except Exception as exc:  # an executor bug must fail its job, never the engine
            state, reason = JobState.FAILED, "failed"
            error = (f"{type(exc).__name__}: {exc}".splitlines() or [type(exc).__name__])[0]
            self._write_traceback(job, exc)
        finally:
            self._runs.pop(job_id, None)
            self._user_canceled.discard(job_id)
            self._progress_saved.pop(job_id, None)
        self._finish(job_id, state, error, reason, left_behind=left_behind)

    async def _supervise(self, executor: Executor, run: _Run) -> None:
        """Run the executor as its own task, so a run that ignores a stop request can be left
        behind after `cancel_grace` (its threads cannot be killed) while its worker is freed.

        Whatever the executor raises (SystemExit, KeyboardInterrupt, a stray CancelledError)
        fails only its own job; only a real cancellation of this task propagates.
        """
        assert run.ctx is not None
        ctx = run.ctx

        async def guarded() -> BaseException | None:
            try:
                await executor.run(ctx)
            except Exception:
                raise
            except asyncio.CancelledError as exc:
                if ctx.revoked.is_set:
                    raise  # a real cancellation: the engine abandoned the run (or shuts down)
                # A stray cancel from executor code (even of its own task): its job fails.
                task = asyncio.current_task()
                while task is not None and task.cancelling():
                    task.uncancel()
                return _Crash(exc)
            except BaseException as exc:  # SystemExit, KeyboardInterrupt from executor code
                return _Crash(exc)
            return None

        task = asyncio.get_running_loop().create_task(guarded(), name=f"executor {ctx.job.id}")
        stop_wait = asyncio.ensure_future(run.stop.wait())
        try:
            done, _ = await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if task not in done:  # asked to stop: it has `cancel_grace` seconds to do so
                done, _ = await asyncio.wait({task}, timeout=self.cancel_grace)
            if task not in done:
                ctx.revoked.is_set = True
                self._abandon(task)
                raise _Abandoned
        finally:
            stop_wait.cancel()
            if not task.done():  # this task itself was cancelled (hard stop): leave it behind
                ctx.revoked.is_set = True
                self._abandon(task)
            elif not task.cancelled():
                task.exception()  # mark it retrieved; `result()` below still raises it
        if task.cancelled():  # cancelled from outside its own code but not by the engine
            raise _Crash(asyncio.CancelledError())
        crash = task.result()
        if crash is not None:
            raise crash

    def _abandon(self, task: asyncio.Task[Any]) -> None:
        task.cancel()
        self._abandoned.add(task)
        task.add_done_callback(_forget(self._abandoned))

    def _discard_results(self, job: Job) -> None:
        """A run left behind may still write: move its results dir out of the way, then drop it."""
        out_dir = self.results_dir(job)
        if not out_dir.exists():
            return
        trash = out_dir.with_name(f".{out_dir.name}.discarded-{secrets.token_hex(4)}")
        try:
            out_dir.rename(trash)
        except OSError:
            return
        threading.Thread(target=shutil.rmtree, args=(trash, True), daemon=True).start()

    def _finish(
        self,
        job_id: str,
        state: JobState,
        error: str | None,
        reason: str,
        *,
        left_behind: _JobContext | None = None,
    ) -> None:
        self.scheduler.finish(job_id, _PHASE[state])
        if left_behind is not None:
            self._hold_while_busy(job_id, left_behind)
        job = self._jobs[job_id]
        now = self.clock()
        tiles_done = job.tiles_total if state is JobState.SUCCEEDED else job.tiles_done
        self._commit(
            [
                replace(
                    job,
                    state=state,
                    error=error,
                    finished_at=now,
                    tiles_done=tiles_done,
                    stage="",
                    crashes=0,
                )
            ],
            reason if error is None else f"{reason}: {error}",
            now,
        )
        self._after_change()

    def _hold_while_busy(self, job_id: str, ctx: _JobContext) -> None:
        """A run left behind after `cancel_grace` frees its worker, but the resources it holds
        (a GPU) stay reserved until its threads return: the next GPU job never overlaps it.
        Called before the dispatch that would hand them out."""
        needs = self.scheduler.jobs[job_id].needs
        if not needs:
            return
        loop = asyncio.get_running_loop()
        with ctx.threads_lock:
            if ctx.threads == 0:
                return  # its work has stopped already
            ctx.on_threads_done = lambda: _call_soon(loop, self._release_hold, job_id)
        self.scheduler.reserve(needs)
        self._holds[job_id] = needs
        logging.getLogger("wsitui").warning(
            "job %s was left running in a thread after it was canceled; %s stay in use until "
            "that thread returns",
            job_id,
            ", ".join(f"{k}={v}" for k, v in needs),
        )

    def _release_hold(self, job_id: str) -> None:
        needs = self._holds.pop(job_id, None)
        if needs is None or self._store is None:
            return  # already released, or the engine has closed
        self.scheduler.unreserve(needs)
        self._after_change()

    def _interrupt(self, job_id: str, *, late: bool = False) -> None:
        self.scheduler.interrupt(job_id)
        now = self.clock()
        self._commit(
            [
                replace(
                    self._jobs[job_id], state=JobState.PENDING, started_at=None, stage="", crashes=0
                )
            ],
            "interrupted: the engine stopped"
            + (f" (it did not stop within {self.cancel_grace:g} s)" if late else "")
            + "; resumes from its last checkpoint",
            now,
        )
        self._notify()

    def _on_progress(self, job_id: str, attempt: int, change: Mapping[str, Any]) -> None:
        job = self._jobs.get(job_id)
        if job is None or job.state is not JobState.RUNNING or job.attempt != attempt:
            return  # a late report of a run that already ended
        restarted = "restart" in change
        tiles_done = 0 if restarted else job.tiles_done
        if "tiles_done" in change:
            # Within one attempt progress never goes backwards, unless the executor said so.
            tiles_done = max(tiles_done, change["tiles_done"])
        updated = replace(
            job,
            tiles_done=tiles_done,
            tiles_total=change.get("tiles_total", job.tiles_total),
            counters=change["counters"] if change.get("counters") is not None else job.counters,
            stage=change.get("stage", job.stage),
        )
        if updated == job and not restarted:
            return
        self._put(updated)
        self._save_progress(updated, force=restarted or updated.stage != job.stage)
        now = self.clock()
        self.bus.publish(JobProgress(now, updated, restarted=restarted))
        self._publish_workflow(updated.workflow_id, now)
        self._notify()

    def _save_progress(self, job: Job, *, force: bool) -> None:
        """Commit a running job's progress for readers of the database (`wsitui status`): at
        its first report, at each stage change or restart, else at most every
        PROGRESS_COMMIT_S seconds, so a status read lags the live figure by that much at most.
        Best effort: a failed write here is logged, the next commit says it to the user."""
        at = time.monotonic()
        last = self._progress_saved.get(job.id)
        if not force and last is not None and at - last < PROGRESS_COMMIT_S:
            return
        self._progress_saved[job.id] = at
        try:
            self.store.save_progress(job)
        except StoreError as exc:
            logging.getLogger("wsitui").warning("progress of %s not saved: %s", job.id, exc)

    def _notify(self) -> None:
        """Wake `wait_until` callers: something changed."""
        self._changed.set()
        self._changed = anyio.Event()

    def _call_in_loop(self, fn: Callable[..., None], *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            anyio.from_thread.run_sync(fn, *args, token=self._token)

    def _write_traceback(self, job: Job, exc: BaseException) -> None:
        try:
            path = self.results_dir(job) / "error.log"
            path.write_text("".join(traceback.format_exception(exc)))
        except Exception:  # best effort: the job already failed with its own message
            pass

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
    ) -> None:
        """Persist a change, then publish it: the jobs a command changed with their
        transitions, every job the scheduler moved or (un)blocked as a consequence, and the
        tenant state — one transaction, so a restart never sees half of it."""
        effects = self.scheduler.take_effects()
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
            self._publish_tenants(effects, now, admitted=True)
            self._publish_tenants(effects, now, admitted=False)
            return
        transitions = [Transition(j.id, now, j.state, j.attempt, reason) for j in main]
        self.store.apply(
            [*main, *side], transitions, workflow=workflow, tenants=tenants, clear=clear
        )
        events: list[Event] = []
        for job in main:
            before = None if created else self._jobs[job.id].state
            self._put(job)
            events.append(JobStateChanged(now, job, before, reason))
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
        self._publish_tenants(effects, now, admitted=True)
        for event in events:
            self.bus.publish(event)
        self._publish_tenants(effects, now, admitted=False)
        touched = [j.workflow_id for j in [*main, *side]]
        if workflow is not None:
            touched.append(workflow.id)  # a new workflow is news even with no jobs yet
        for wf_id in dict.fromkeys(touched):
            self._publish_workflow(wf_id, now)

    def _after_change(self) -> None:
        self._dispatch()
        self._notify()

    def _publish_tenants(self, effects: rules.Effects, now: float, *, admitted: bool) -> None:
        if admitted:  # a slot given up (R3) is released before it is taken
            for tc in effects.tenants:
                if tc.yielded:
                    self.bus.publish(TenantReleased(now, tc.tenant, yielded=True))
        for tc in effects.tenants:
            if tc.admitted and admitted:
                self.bus.publish(TenantAdmitted(now, tc.tenant, passed_over=tc.passed_over))
            elif not tc.admitted and not tc.yielded and not admitted:
                self.bus.publish(TenantReleased(now, tc.tenant))
        if effects.waiting_changed and not admitted:
            for pos, tenant in enumerate(self.scheduler.waiting, start=1):
                self.bus.publish(TenantWaiting(now, tenant, pos))

    def _publish_workflow(self, workflow_id: str, now: float) -> None:
        status = self._status(workflow_id, with_jobs=False)
        self.bus.publish(WorkflowProgress(now, status.workflow, status.state, status.progress))

    def _put(self, job: Job) -> None:
        """Replace a job's snapshot, keeping its workflow's tally in step."""
        tally = self._tally.setdefault(job.workflow_id, _Tally())
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
        tally = self._tally.get(workflow_id) or _Tally()
        n, states = tally.jobs, tally.states
        if states[JobState.RUNNING]:
            state = WorkflowState.RUNNING
        elif n and states[JobState.SUCCEEDED] == n:
            state = WorkflowState.SUCCEEDED
        elif tally.runnable or not n:
            state = WorkflowState.PENDING
        elif states[JobState.FAILED]:
            state = WorkflowState.FAILED
        else:
            state = WorkflowState.CANCELED
        jobs = tuple(self._jobs[j] for j in self._wf_jobs[workflow_id]) if with_jobs else ()
        # Clamp: the running sum accumulates float error over many updates.
        progress = max(0.0, min(1.0, tally.progress / n)) if n else 0.0
        if state is WorkflowState.SUCCEEDED:
            progress = 1.0
        return WorkflowStatus(self._workflows[workflow_id], state, progress, jobs)

    @staticmethod
    def _lane(job: Job) -> rules.LaneKey:
        return (job.tenant, job.workflow_id, job.branch)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    """From any thread; nothing if the loop has closed (the engine stopped meanwhile)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)


def _forget(tasks: set[asyncio.Task[Any]]) -> Callable[[asyncio.Task[Any]], None]:
    def done(task: asyncio.Task[Any]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a late failure of a run left behind is not news

    return done


def _params_error(exc: ValidationError) -> str:
    """First pydantic error as one line: `params.tile_size: Input should be ...`."""
    problem = first_problem(exc)
    where = problem.dotted or "params"
    return f"params.{where}: {problem.msg}".replace("params.params", "params")


def _held(job: Job) -> bool:
    return job.state is JobState.PENDING and not job.enqueued


def _check_tenant(tenant: str) -> None:
    if not isinstance(tenant, str) or not SAFE_ID.match(tenant):
        raise InvalidRequest(f"tenant {tenant!r} is not allowed: {SAFE_ID_HINT}")
