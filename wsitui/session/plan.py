"""Shared by `wsitui run` and the TUI: make samples, check a config's inputs, submit or resume.

A config workflow is matched to a stored one by (tenant, name): running the same config again
on the same data dir resumes it instead of redoing finished jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wsitui.core.engine import Engine, EngineError
from wsitui.core.models import JobState
from wsitui.core.store import Store
from wsitui.headless.config import Config, WorkflowConfig
from wsitui.slides.reader import open_slide
from wsitui.slides.sample import parse_size, write_sample_slide


class InputError(Exception):
    """A problem with the config's inputs found before anything runs (exit 2)."""


def make_samples(config: Config, say: Callable[[str], object] | None = None) -> None:
    """Generate each missing sample slide the config names."""
    for sample in config.samples:
        if sample.path.exists():
            continue
        try:
            size = parse_size(sample.size)
        except ValueError as exc:
            raise InputError(f"samples: {exc}") from None
        if say is not None:
            say(f"generating sample slide {sample.path} ({sample.size}, seed {sample.seed})")
        sample.path.parent.mkdir(parents=True, exist_ok=True)
        write_sample_slide(sample.path, size=size, seed=sample.seed)


@dataclass
class Plan:
    """Per config workflow: the stored workflow id to resume, or None to submit it new."""

    resume: dict[int, str]


def check_and_plan(engine: Engine, config: Config, data_dir: Path) -> Plan:
    """Validate every workflow and open every slide before anything runs."""
    for i, wf in enumerate(config.workflows):
        try:
            engine.validate(wf.tenant, wf.spec())
        except EngineError as exc:
            raise InputError(f"workflows[{i}] ({wf.tenant}/{wf.name}): {exc}") from None
    for slide in sorted({j.slide for wf in config.workflows for j in wf.jobs}):
        open_slide(slide).close()
    return Plan(resume=_match_stored(config, data_dir))


def _match_stored(config: Config, data_dir: Path) -> dict[int, str]:
    """Find workflows a previous run on this data dir submitted (same tenant and name)."""
    if not (data_dir / "state.db").exists():
        return {}
    store = Store(data_dir / "state.db")
    try:
        stored = {(w.tenant, w.name): w.id for w in store.workflows()}
        jobs = {(j.workflow_id, j.key): j for j in store.jobs()}
    finally:
        store.close()
    resume: dict[int, str] = {}
    for i, wf in enumerate(config.workflows):
        wf_id = stored.get((wf.tenant, wf.name))
        if wf_id is None:
            continue
        for j in wf.jobs:
            old = jobs.get((wf_id, j.id))
            if old is None:
                continue
            now = (str(j.type), str(j.slide), j.branch, tuple(f"{wf_id}.{d}" for d in j.depends_on))
            before = (str(old.job_type), old.slide, old.branch, old.depends_on)
            if now != before or j.params != old.params:
                raise InputError(
                    f"workflows[{i}] ({wf.tenant}/{wf.name}): job {j.id!r} differs from the one "
                    f"already in {data_dir}; rename the workflow or use a fresh --data-dir"
                )
        resume[i] = wf_id
    return resume


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
