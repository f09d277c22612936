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

Pure: the engine applies the result (`Engine._recover`) and commits it in one step per reason.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from wsitui.core.records import Job, JobState
from wsitui.core.store import Store

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
