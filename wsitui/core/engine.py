"""The embedded async engine: tenant-scoped commands in, committed transitions and events out.

Commands are plain methods called on the event-loop thread. Each one changes the pure scheduler
(`rules.Scheduler`), commits the result to the store, publishes events, and dispatches — all
without awaiting, so no other task sees a half-applied change and one dispatch pass can never
start two jobs of a lane (R1) or over-admit tenants (R3). Dispatch runs on submit, finish, cancel
and retry; there is no polling tick (R8).
"""

from __future__ import annotations

import secrets
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.abc import TaskGroup

from wsitui.core import rules
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
from wsitui.core.executor import Executor, JobCanceled, JobError
from wsitui.core.models import (
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
from wsitui.core.paths import DataDirLock, results_dir
from wsitui.core.store import Store

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


@dataclass(frozen=True, slots=True)
class EngineStats:
    active: tuple[str, ...]
    waiting: tuple[str, ...]
    running: int
    queued: int
    max_workers: int
    max_active_users: int


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


class _Checkpoint:
    def __init__(self, store: Store, job: Job) -> None:
        self._store, self._job = store, job

    def load(self) -> dict[str, Any] | None:
        found = self._store.load_checkpoint(self._job.id, self._job.attempt)
        return None if found is None else found[0]

    def save(self, state: Mapping[str, Any], tiles_done: int) -> None:
        self._store.save_checkpoint(self._job.id, self._job.attempt, state, tiles_done)


class _JobContext:
    """What an executor sees of the engine; every method is safe from any thread."""

    def __init__(self, engine: Engine, job: Job, out_dir: Path, cancel: threading.Event) -> None:
        self.job = job
        self.results_dir = out_dir
        self.checkpoint = _Checkpoint(engine.store, job)
        self._engine = engine
        self._cancel = cancel

    def report(self, tiles_done: int, tiles_total: int) -> None:
        self._engine._call_in_loop(self._engine._on_progress, self.job.id, tiles_done, tiles_total)

    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def check_cancel(self) -> None:
        if self._cancel.is_set():
            raise JobCanceled(self.job.id)


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
    ) -> None:
        self.data_dir = Path(data_dir)
        self.results_root = Path(results_root) if results_root else self.data_dir / "results"
        self.bus = bus or EventBus()
        self.clock = clock
        self._new_id = new_id  # deterministic in snapshot tests
        self.executors: dict[str, Executor] = {str(e.job_type): e for e in executors}
        self.scheduler = rules.Scheduler(max_workers, max_active_users)
        self._store: Store | None = None
        self._lock = DataDirLock(self.data_dir)
        self._jobs: dict[str, Job] = {}
        self._workflows: dict[str, Workflow] = {}
        self._wf_jobs: dict[str, list[str]] = {}
        self._tally: dict[str, _Tally] = {}
        self._cancel: dict[str, threading.Event] = {}  # one per RUNNING job
        self._user_canceled: set[str] = set()  # so shutdown cannot turn a cancel into a resume
        self._tg: TaskGroup | None = None
        self._closing = False
        self._changed = anyio.Event()
        self._loop_thread: int | None = None
        self._token: Any = None

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
        except BaseException:
            self._lock.release()
            raise
        self._loop_thread = threading.get_ident()
        self._token = anyio.lowlevel.current_token()
        self._recover()
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
        """Stop: running jobs stop at their next tile and go back to the head of their lane."""
        self._closing = True
        for event in self._cancel.values():
            event.set()
        try:
            assert self._tg is not None
            # If this exit is itself a cancellation, job tasks are cancelled instead; their
            # rows stay RUNNING and the next start resumes them from their checkpoints.
            return await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            self._tg = None
            self.store.close()
            self._store = None
            self._lock.release()

    def _recover(self) -> None:
        """Rebuild in-memory state; jobs found RUNNING were interrupted and resume first."""
        for wf in self.store.workflows():
            self._workflows[wf.id] = wf
            self._wf_jobs[wf.id] = []
        interrupted: list[Job] = []
        queued: list[Job] = []
        for job in self.store.jobs():
            self._put(job)
            self._wf_jobs[job.workflow_id].append(job.id)
            if job.state is JobState.RUNNING:
                interrupted.append(job)
            elif job.state is JobState.PENDING and job.enqueued:
                queued.append(job)
            phase = _PHASE.get(job.state, rules.Phase.HELD)
            self.scheduler.add(job.id, job.tenant, self._lane(job), job.depends_on, job.seq, phase)
        now = self.clock()
        resumed = []
        for job in interrupted:
            found = self.store.load_checkpoint(job.id, job.attempt)
            resumed.append(
                replace(job, state=JobState.PENDING, tiles_done=found[1] if found else 0)
            )
        self._commit(
            resumed,
            "interrupted: the engine stopped while it ran; resumes from its last checkpoint",
            now,
        )
        # Interrupted jobs go back to the head of their lanes, and their tenants were active.
        for job in sorted(interrupted, key=lambda j: j.seq) + sorted(queued, key=lambda j: j.seq):
            self.scheduler.enqueue(job.id, job.seq)
        for job_id, job in self._jobs.items():
            if self.scheduler.jobs[job_id].blocked:
                self._put(replace(job, blocked=True))
        self._publish_effects(now)

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
        )

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
        existing = {self._jobs[j].key: j for j in self._wf_jobs[workflow_id]}
        ordered = self._validate_jobs((spec,), existing=existing)
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
        """Cancel a pending job now, or ask a running one to stop at its next tile."""
        job = self.job(tenant, job_id)
        if job.state is JobState.RUNNING:
            self._user_canceled.add(job.id)
            self._cancel[job.id].set()
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
        self.scheduler.retry(job.id)
        self.store.clear_checkpoint(job.id)
        now = self.clock()
        sj = self.scheduler.jobs[job.id]
        retried = replace(
            job,
            state=JobState.PENDING,
            attempt=job.attempt + 1,
            tiles_done=0,
            error=None,
            started_at=None,
            finished_at=None,
            seq=sj.seq,
            enqueued=True,
            blocked=sj.blocked,
        )
        self._commit([retried], f"retry: attempt {retried.attempt}", now)
        self._after_change()
        return self._jobs[job.id]

    # ---- internals: validation and creation --------------------------------------------------
    def _validate_jobs(
        self, specs: Sequence[JobSpec], existing: Mapping[str, str]
    ) -> list[JobSpec]:
        """Check ids, types, params and the DAG; return specs in a stable topological order."""
        keys: dict[str, JobSpec] = {}
        for spec in specs:
            if spec.id in keys or spec.id in existing:
                raise InvalidRequest(f"job id {spec.id!r} is used twice in the workflow")
            keys[spec.id] = spec
        for spec in specs:
            for dep in spec.depends_on:
                if dep not in keys and dep not in existing:
                    raise InvalidRequest(
                        f"job {spec.id!r} depends on unknown job {dep!r}: depends_on names "
                        "jobs of the same workflow"
                    )
            executor = self.executors.get(str(spec.type))
            if executor is None:
                raise InvalidRequest(
                    f"job {spec.id!r}: {spec.type} jobs cannot run yet (no executor is "
                    f"installed for them); available: {', '.join(sorted(self.executors)) or 'none'}"
                )
            try:
                executor.validate(spec, Path(spec.slide))
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
                job.id, job.tenant, self._lane(job), job.depends_on, 0, rules.Phase.HELD
            )
            if start:
                self.scheduler.enqueue(job.id)
            sj = self.scheduler.jobs[job.id]
            created.append(replace(job, seq=sj.seq, enqueued=start, blocked=sj.blocked))
            self._wf_jobs[workflow.id].append(job.id)
        self._commit(
            created, "submitted", now, created=True, workflow=workflow if new_workflow else None
        )
        self._after_change()

    def _enqueue(self, job_ids: list[str]) -> None:
        now = self.clock()
        changed = []
        for job_id in job_ids:
            self.scheduler.enqueue(job_id)
            sj = self.scheduler.jobs[job_id]
            changed.append(
                replace(self._jobs[job_id], enqueued=True, seq=sj.seq, blocked=sj.blocked)
            )
        self._commit(changed, "started by user", now)
        self._after_change()

    # ---- internals: running jobs -------------------------------------------------------------
    def _dispatch(self) -> None:
        """Start what the rules allow, then publish what changed (admissions included)."""
        running = self._tg is not None and not self._closing
        starts = self.scheduler.next_starts() if running else []
        now = self.clock()
        self._publish_effects(now)
        if not starts or self._tg is None:
            return
        started = [
            replace(self._jobs[j], state=JobState.RUNNING, started_at=now, finished_at=None)
            for j in starts
        ]
        self._commit(started, "started", now)
        for job in started:
            self._cancel[job.id] = threading.Event()
            self._tg.start_soon(self._run_job, job.id, name=f"job {job.id}")

    async def _run_job(self, job_id: str) -> None:
        job = self._jobs[job_id]
        cancel = self._cancel[job_id]
        state, error, reason = JobState.SUCCEEDED, None, "completed"
        try:
            out_dir = self.results_dir(job)
            out_dir.mkdir(parents=True, exist_ok=True)
            await self.executors[str(job.job_type)].run(_JobContext(self, job, out_dir, cancel))
        except JobCanceled:
            if self._closing and job_id not in self._user_canceled:
                self._interrupt(job_id)
                return
            state, reason = JobState.CANCELED, "canceled while running"
        except JobError as exc:
            state, error, reason = JobState.FAILED, str(exc), "failed"
        except Exception as exc:  # an executor bug must fail its job, never the engine
            state, reason = JobState.FAILED, "failed"
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            self._write_traceback(job)
        finally:
            self._cancel.pop(job_id, None)
            self._user_canceled.discard(job_id)
        self._finish(job_id, state, error, reason)

    def _finish(self, job_id: str, state: JobState, error: str | None, reason: str) -> None:
        self.scheduler.finish(job_id, _PHASE[state])
        job = self._jobs[job_id]
        now = self.clock()
        tiles_done = job.tiles_total if state is JobState.SUCCEEDED else job.tiles_done
        self._commit(
            [replace(job, state=state, error=error, finished_at=now, tiles_done=tiles_done)],
            reason if error is None else f"{reason}: {error}",
            now,
        )
        self._after_change()

    def _interrupt(self, job_id: str) -> None:
        self.scheduler.interrupt(job_id)
        now = self.clock()
        self._commit(
            [replace(self._jobs[job_id], state=JobState.PENDING, started_at=None)],
            "interrupted: the engine stopped; resumes from its last checkpoint",
            now,
        )
        self._notify()

    def _on_progress(self, job_id: str, tiles_done: int, tiles_total: int) -> None:
        job = self._jobs.get(job_id)
        if job is None or job.state is not JobState.RUNNING:
            return
        job = replace(job, tiles_done=tiles_done, tiles_total=tiles_total)
        self._put(job)
        now = self.clock()
        self.bus.publish(JobProgress(now, job))
        self._publish_workflow(job.workflow_id, now)
        self._notify()

    def _notify(self) -> None:
        """Wake `wait_until` callers: something changed."""
        self._changed.set()
        self._changed = anyio.Event()

    def _call_in_loop(self, fn: Callable[..., None], *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            anyio.from_thread.run_sync(fn, *args, token=self._token)

    def _write_traceback(self, job: Job) -> None:
        try:
            path = self.results_dir(job) / "error.log"
            path.write_text(traceback.format_exc())
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
    ) -> None:
        """Persist new job snapshots with their transitions, then publish them."""
        if not jobs and workflow is None:
            return
        transitions = [Transition(j.id, now, j.state, j.attempt, reason) for j in jobs]
        self.store.apply(jobs, transitions, workflow=workflow)
        events: list[Event] = []
        for job in jobs:
            before = None if created else self._jobs[job.id].state
            self._put(job)
            events.append(JobStateChanged(now, job, before, reason))
        for event in events:
            self.bus.publish(event)
        for wf_id in dict.fromkeys(j.workflow_id for j in jobs):
            self._publish_workflow(wf_id, now)

    def _after_change(self) -> None:
        self._dispatch()
        self._notify()

    def _publish_effects(self, now: float) -> None:
        effects = self.scheduler.take_effects()
        # Unblocked jobs re-entered their lanes with new seqs: commit those before publishing,
        # or a restart would rebuild lanes in a stale order.
        changed = [
            replace(self._jobs[c.job_id], blocked=c.blocked, seq=self.scheduler.jobs[c.job_id].seq)
            for c in effects.blocks
        ]
        if changed:
            self.store.apply(changed)
        for job in changed:
            self._put(job)
            reason = (
                "blocked: an upstream job failed or was canceled"
                if job.blocked
                else "unblocked: upstream retried"
            )
            self.bus.publish(JobStateChanged(now, job, job.state, reason))
        for tc in effects.tenants:
            self.bus.publish(
                TenantAdmitted(now, tc.tenant) if tc.admitted else TenantReleased(now, tc.tenant)
            )
        if effects.waiting_changed:
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
        tally.add(job, +1)
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


def _held(job: Job) -> bool:
    return job.state is JobState.PENDING and not job.enqueued


def _check_tenant(tenant: str) -> None:
    if not isinstance(tenant, str) or not SAFE_ID.match(tenant):
        raise InvalidRequest(f"tenant {tenant!r} is not allowed: {SAFE_ID_HINT}")
