"""Recovery: what each stored job becomes when the engine opens on its data dir.

A job found RUNNING means the process died while it ran: it resumes from its last checkpoint,
first in its lane. One that died twice in a row without saving a checkpoint in between, each
time as the only job running, is failed instead of resumed a third time: it is likely what
kills the process (a poison job). A death with several jobs running counts against none of
them: an external SIGKILL (or the OOM killer) while innocent jobs run must not fail them, and a
real poison job is caught once it dies alone (interrupted jobs resume first, so that comes soon).
A RUNNING or PENDING job whose resources this engine can never give (e.g. a GPU job stored on a
machine that had one) fails, so it holds no slot (R9). Params an earlier, lax version stored
(`tile_size = "512"`) are read once as what they plainly mean and stored so
(`upgrade_params`), instead of failing their jobs at start now that params are strict.

`triage` and the helpers are pure; `recover` applies their result to the engine as it opens and
commits it in one transaction, with the releases it causes and the admissions they allow (R3):
a kill during the open leaves state.db as it was or as recovered, never a slot free while a
tenant waits.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from wsitui.core import rules
from wsitui.core.records import Job, JobState
from wsitui.core.store import Store, StoreError
from wsitui.core.supervisor import FINAL_SCHED_STATE

if TYPE_CHECKING:
    from wsitui.core.engine import Engine

INTERRUPTED = "interrupted: the engine stopped while it ran; resumes from its last checkpoint"
POISONED = "failed: crashed the process on two consecutive starts"
UNFIT = "failed: needs a resource this engine does not have"


@dataclass(slots=True)
class Triage:
    # (snapshot held in memory until its commit, the job as recovered), in stored order. A job
    # failed here is held as stored until its FAILED commit, so that event says what it was.
    jobs: list[tuple[Job, Job]] = field(default_factory=list)
    interrupted: list[Job] = field(default_factory=list)  # found RUNNING: resume
    poisoned: list[Job] = field(default_factory=list)  # died alone twice: failed
    unfit: list[Job] = field(default_factory=list)  # can never run here: failed
    queued: list[Job] = field(default_factory=list)  # PENDING and started by the user


def triage(stored: Sequence[Job], unfit_reason: Callable[[Job], str | None], now: float) -> Triage:
    """Sort stored jobs by what recovery does to them; `unfit_reason(job)` says why a job can
    never run on this engine, or None when it can."""
    out = Triage()
    alone = sum(j.state is JobState.RUNNING for j in stored) == 1
    for job in stored:
        as_stored = job
        why = unfit_reason(job) if job.state in (JobState.RUNNING, JobState.PENDING) else None
        if why is not None:
            job = replace(
                job,
                state=JobState.FAILED,
                finished_at=now,
                error=f"{why}; this job cannot run on this machine",
            )
            out.unfit.append(job)
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
                out.poisoned.append(job)
            else:
                out.interrupted.append(job)
        elif job.state is JobState.PENDING and job.enqueued:
            out.queued.append(job)
        failing = job.state is JobState.FAILED and as_stored.state is not JobState.FAILED
        out.jobs.append((replace(as_stored, crashes=job.crashes) if failing else job, job))
    return out


def newly_blocked(found: Triage, blocked: Callable[[str], bool]) -> set[str]:
    """Jobs `blocked` now only because `triage` failed an upstream (poison, unfit): news the
    log must say. A job blocked by an upstream that had ended before was said so then (R4)."""
    bad = (JobState.FAILED, JobState.CANCELED)
    stored = {kept.id: kept for kept, _ in found.jobs}  # as stored: failing ones not FAILED
    before: dict[str, bool] = {}
    for job_id, kept in stored.items():  # stored order is topological
        before[job_id] = any(before[d] or stored[d].state in bad for d in kept.depends_on)
    return {job_id for job_id, was in before.items() if blocked(job_id) and not was}


def resumed(interrupted: Sequence[Job], store: Store) -> list[Job]:
    """Interrupted jobs as they resume: PENDING again, at their last checkpoint's tile."""
    out = []
    for job in interrupted:
        found = store.load_checkpoint(job.id, job.attempt)
        tiles = found[1] if found else 0
        # Live counters (cells so far) were counted with the row's tiles: kept only with them,
        # so a job back at tile 0 never reads "0/340 tiles, 259 cells" until it runs again.
        counters = job.counters if tiles == job.tiles_done else {}
        out.append(
            replace(job, state=JobState.PENDING, tiles_done=tiles, counters=counters, stage="")
        )
    return out


def upgrade_params(
    stored: Sequence[Job], upgraded: Callable[[Job], dict[str, Any] | None], store: Store
) -> list[Job]:
    """Stored jobs with the params `upgraded(job)` reads anew (None: as they are), those
    rewritten in the store in one transaction and each said in one log line."""
    new = {job.id: p for job in stored if (p := upgraded(job)) is not None}
    if not new:
        return list(stored)
    store.rewrite_params(new)
    out = []
    for job in stored:
        if job.id in new:
            was = {k: v for k, v in job.params.items() if type(new[job.id].get(k)) is not type(v)}
            logging.getLogger("wsitui").warning(
                "job %s: params %s, stored by an earlier version, read as %s",
                job.id,
                json.dumps(was, sort_keys=True),
                json.dumps({k: new[job.id][k] for k in was}, sort_keys=True),
            )
            job = replace(job, params=new[job.id])
        out.append(job)
    return out


def recover(engine: Engine) -> None:
    """Rebuild the engine's in-memory state from its store as it opens (`triage` decides what
    each stored job becomes: jobs found RUNNING were interrupted and resume first), and commit
    what changed in one transaction."""
    store, scheduler = engine.store, engine.scheduler
    for wf in store.workflows():
        engine._workflows[wf.id] = wf
        engine._wf_jobs[wf.id] = []
    now = engine.clock()
    stored = upgrade_params(store.jobs(), engine._validator.upgraded, store)
    for job in stored:
        if job.workflow_id not in engine._wf_jobs:
            raise StoreError(
                f"state database {store.path}: job {job.id!r} belongs to no workflow; "
                "restore a backup of state.db, or move it aside to start afresh"
            )
    # What each job holds while running, as this engine's executors say now (R9).
    stored = [replace(job, needs=engine._validator.needs(job)) for job in stored]

    def unfit(job: Job) -> str | None:
        fits = scheduler.fits(job.needs.items())
        return None if fits else engine._validator.unfit_reason(job.needs)

    found = triage(stored, unfit, now)
    for kept, job in found.jobs:
        engine._put(kept)
        engine._wf_jobs[job.workflow_id].append(job.id)
        state = FINAL_SCHED_STATE.get(job.state, rules.SchedState.HELD)
        lane = engine._lane(job)
        scheduler.add(job.id, job.tenant, lane, job.depends_on, job.seq, state, job.needs)
    back = resumed(found.interrupted, store)
    # Interrupted jobs go back to the head of their lanes (their old seqs are lowest).
    for job in sorted(found.interrupted, key=lambda j: j.seq) + sorted(
        found.queued, key=lambda j: j.seq
    ):
        scheduler.enqueue(job.id, job.seq)
    # Which tenants were active, and the waiting order, continue from the stored state.
    released = scheduler.restore_tenants(store.tenant_rows())
    # What was running (at a crash or a clean stop) runs again first (R6 unchanged).
    again = [*found.interrupted, *(j for j in found.queued if j.interrupted)]
    scheduler.resume_first(j.id for j in sorted(again, key=lambda j: j.seq))
    fresh = newly_blocked(found, lambda j: scheduler.jobs[j].blocked)
    for job_id, job in engine._jobs.items():  # blocks news to the log come with a commit
        if scheduler.jobs[job_id].blocked != job.blocked and job_id not in fresh:
            engine._put(replace(job, blocked=scheduler.jobs[job_id].blocked))
    scheduler.effects.tenants += released  # R3: published after the ends that caused them
    scheduler.effects.blocks += [rules.BlockChange(j, True) for j in sorted(fresh)]
    reasons = {j.id: INTERRUPTED for j in back}
    reasons |= {j.id: POISONED for j in found.poisoned} | {j.id: UNFIT for j in found.unfit}
    engine._commit([*back, *found.poisoned, *found.unfit], INTERRUPTED, now, reasons=reasons)
    for job in found.unfit:
        logging.getLogger("wsitui").warning("job %s failed: %s", job.id, job.error)
