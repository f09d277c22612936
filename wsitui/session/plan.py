"""Make samples, check a config's inputs, and submit or resume its workflows.

A config workflow is matched to a stored one by (tenant, name): running the same config again
on the same data dir resumes it instead of redoing finished jobs. A stored job whose definition
changed in the config (type, slide, branch, depends_on, params) is not resumed: resuming it would
keep results made with the old definition under the new one's name. That workflow is skipped
with one line saying why and how to run it anew; the config's other workflows run (a stored
workflow never blocks the others). Only when every workflow is skipped is it an input error.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from wsitui.core.engine import Engine, EngineError
from wsitui.core.records import Job, JobState
from wsitui.core.store import Store, nothing_stored
from wsitui.core.validation import lenient_params
from wsitui.session.config import Config, JobConfig, WorkflowConfig
from wsitui.slides.errors import SlideError
from wsitui.slides.reader import open_slide
from wsitui.slides.sample import check_sample_target, parse_size, write_sample_slide


class InputError(Exception):
    """A problem with the config's inputs found before anything runs (exit 2)."""


def make_samples(config: Config, say: Callable[[str], object] | None = None) -> None:
    """Generate each missing sample slide the config names; reuse one that is there.

    Never overwrites: the slide writer refuses to replace a file the project did not make
    (e.g. a user's own truth file next to the slide) and that refusal is an input error; a
    sample whose slide was deleted but whose truth file is ours is simply made again.
    """
    for i, sample in enumerate(config.samples):
        where = f"samples[{i}] {sample.path}"
        try:
            st = sample.path.stat()
        except (FileNotFoundError, NotADirectoryError):
            st = None
        except OSError as exc:
            raise InputError(f"{where}: cannot be checked ({exc.strerror}); fix the path") from None
        if st is not None:
            if not stat.S_ISREG(st.st_mode):
                raise InputError(f"{where}: exists and is not a regular file; fix the path")
            continue  # an existing slide is reused
        try:
            size = parse_size(sample.size)
        except ValueError as exc:
            raise InputError(f"samples[{i}]: {exc}") from None
        try:
            check_sample_target(sample.path)  # a user's file in the way: say so, make nothing
        except SlideError as exc:
            raise InputError(f"{where}: {exc}") from None
        try:
            sample.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(
                f"{where}: cannot create its directory {sample.path.parent} "
                f"({exc.strerror}); fix the path"
            ) from None
        if say is not None:
            say(f"generating sample slide {sample.path} ({sample.size}, seed {sample.seed})")
        try:
            write_sample_slide(sample.path, size=size, seed=sample.seed)
        except (SlideError, ValueError, OSError) as exc:
            raise InputError(f"{where}: {exc}") from None


@dataclass
class Plan:
    """Per config workflow: the stored workflow id to resume, or None to submit it new; and
    the workflows skipped because their stored twin no longer matches (index: one line)."""

    resume: dict[int, str]
    skipped: dict[int, str] = field(default_factory=dict)


def check_and_plan(engine: Engine, config: Config, data_dir: Path) -> Plan:
    """Validate every workflow and open every slide before anything runs (a cohort's
    slides excepted: one that cannot be opened fails only its own chain)."""
    for i, wf in enumerate(config.workflows):
        try:
            engine.validate(wf.tenant, wf.spec())
        except EngineError as exc:
            raise InputError(f"workflows[{i}] ({wf.tenant}/{wf.name}): {exc}") from None
    for slide in sorted(
        {j.slide for wf in config.workflows if wf.slides is None for j in wf.jobs if j.slide}
    ):
        open_slide(slide).close()
    plan = _match_stored(engine, config, data_dir)
    if config.workflows and len(plan.skipped) == len(config.workflows):
        raise InputError(plan.skipped[0])
    return plan


def _match_stored(engine: Engine, config: Config, data_dir: Path) -> Plan:
    """Find workflows a previous run on this data dir submitted (same tenant and name)."""
    db = data_dir / "state.db"
    if nothing_stored(db):  # nothing stored yet: the engine starts it
        return Plan(resume={})
    store = Store(db, readonly=True)
    try:
        # The first stored of a (tenant, name): a later one of the same name (made in the TUI,
        # whose workflows may share names) never takes the place of the config's own.
        stored: dict[tuple[str, str], str] = {}
        for w in store.workflows():  # oldest first
            stored.setdefault((w.tenant, w.name), w.id)
        jobs = {(j.workflow_id, j.key): j for j in store.jobs()}
    finally:
        store.close()
    plan = Plan(resume={})
    for i, wf in enumerate(config.workflows):
        wf_id = stored.get((wf.tenant, wf.name))
        if wf_id is None:
            continue
        for j in wf.jobs:
            old = jobs.get((wf_id, j.id))
            if old is None:
                continue
            changed = changed_fields(engine, wf_id, j, old)
            if changed:
                plan.skipped[i] = (
                    f"workflows[{i}] ({wf.tenant}/{wf.name}) skipped: job {j.id!r} changed its "
                    f"{', '.join(changed)} since it was stored in {data_dir}; rename the "
                    "workflow to run it anew, or use another --data-dir"
                )
                break
        else:
            plan.resume[i] = wf_id
    return plan


def changed_fields(engine: Engine, wf_id: str, new: JobConfig, old: Job) -> list[str]:
    """Which parts of a stored job's definition the config now gives differently."""
    changed = []
    if str(new.type) != str(old.job_type):
        changed.append("type")
    if str(new.slide) != old.slide:
        changed.append("slide")
    if new.branch != old.branch:
        changed.append("branch")
    if tuple(f"{wf_id}.{d}" for d in new.depends_on) != tuple(old.depends_on):
        changed.append("depends_on")
    if _params(engine, str(new.type), new.params) != _params(engine, str(new.type), old.params):
        changed.append("params")
    return changed


def _params(engine: Engine, job_type: str, params: Mapping[str, Any]) -> object:
    """Params as the executor reads them (defaults filled in), else as written."""
    executor = engine.executors.get(job_type)
    if executor is not None:
        try:
            out = executor.params_model.model_validate(dict(params)).model_dump()
        except ValidationError:
            # Stored by an earlier, lax version (`tile_size = "512"`): compared as the engine
            # reads it when it opens (and stores it anew), so the config's 512 resumes it.
            fixed = lenient_params(executor.params_model, dict(params))
            if fixed is None:
                return dict(params)
            out = executor.params_model.model_validate(fixed).model_dump()
        # What changes no result (e.g. where tiles run: moving a job to a cluster) is not
        # "changed": the executor says which params those are.
        for key in executor.result_neutral:
            out.pop(key, None)
        return out
    return dict(params)


def admission_requests(
    engine: Engine, config: Config, plan: Plan, *, start: bool = True
) -> list[tuple[str, int, int]]:
    """The submissions `submit_or_resume` will make for the whole config, in order, as
    (tenant, jobs submitted, jobs made PENDING without a submission): what
    `Engine.check_admission` needs to refuse the config before any of it is submitted."""
    out: list[tuple[str, int, int]] = []
    for i, wf in enumerate(config.workflows):
        if i in plan.skipped:
            continue
        wf_id = plan.resume.get(i)
        if wf_id is None:
            out.append((wf.tenant, len(wf.jobs), 0))
            continue
        have = {j.key: j for j in engine.workflow(wf.tenant, wf_id).jobs}
        for j in wf.jobs:
            job = have.get(j.id)
            if job is None:
                out.append((wf.tenant, 1, 0))  # add_job: one submission each
            elif start and job.state in (JobState.FAILED, JobState.CANCELED):
                out.append((wf.tenant, 1, 0))  # a retry is admitted like a submission
    return out


def submit_or_resume(
    engine: Engine, index: int, wf: WorkflowConfig, plan: Plan, *, start: bool = True
) -> str:
    """Submit a config workflow, or bring its stored twin up to date; return its id."""
    wf_id = plan.resume.get(index)
    if wf_id is None:
        return engine.submit(wf.tenant, wf.spec(), start=start).workflow.id
    have = {j.key: j for j in engine.workflow(wf.tenant, wf_id).jobs}
    for spec in engine.validate(wf.tenant, wf.spec()):  # dependencies first
        job = have.get(spec.id)
        if job is None:
            engine.add_job(wf.tenant, wf_id, spec, start=start)
        elif not start:
            continue  # the TUI leaves what is there for the user to start or retry
        elif job.state in (JobState.FAILED, JobState.CANCELED):
            engine.retry(wf.tenant, job.id)
        elif job.state is JobState.PENDING and not job.enqueued:
            engine.start(wf.tenant, [job.id])
    return wf_id
