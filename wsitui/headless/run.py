"""`wsitui run CONFIG.toml`: check everything, submit (or resume), show progress, summarise.

Exit codes: 0 every job succeeded, 1 a job failed or was canceled, 2 config or input error
(nothing ran), 130 interrupted (state saved; run again to resume).
"""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import anyio
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from wsitui.core.engine import Engine, EngineError
from wsitui.core.eventlog import JsonlEventLog
from wsitui.core.models import Job, JobState, WorkflowStatus
from wsitui.core.paths import DataDirInUse, default_data_dir
from wsitui.core.store import StoreError
from wsitui.headless.config import Config, ConfigError, load_config
from wsitui.headless.display import STATE_STYLE, PlainLines, ProgressBars
from wsitui.headless.plan import InputError, Plan, check_and_plan, make_samples, submit_or_resume
from wsitui.jobs.registry import default_executors
from wsitui.slides.errors import SlideError

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass(frozen=True)
class RunOptions:
    config: Path
    data_dir: Path | None = None
    out: Path | None = None
    events: Path | None = None
    json: bool = False
    quiet: bool = False


class JobSummary(BaseModel):
    id: str
    key: str
    type: str
    branch: str
    slide: str
    depends_on: list[str]  # job ids
    state: str
    blocked: bool
    attempt: int
    tiles_done: int
    tiles_total: int
    error: str | None
    results_dir: str
    started_at: float | None
    finished_at: float | None


class WorkflowSummary(BaseModel):
    id: str
    tenant: str
    name: str
    state: str
    progress: float
    jobs: list[JobSummary]


class RunSummary(BaseModel):
    exit_code: int
    interrupted: bool
    data_dir: str
    workflows: list[WorkflowSummary]


def run(opts: RunOptions) -> int:
    err = Console(stderr=True)
    log: JsonlEventLog | None = None
    try:
        config = load_config(opts.config)
        if not config.workflows:
            raise InputError(
                f"{opts.config}: no [[workflows]] to run; add one (see sample_config.toml)"
            )
        data_dir = opts.data_dir or config.paths.data_dir or default_data_dir()
        engine = Engine(
            data_dir,
            default_executors(),
            max_workers=config.scheduler.max_workers,
            max_active_users=config.scheduler.max_active_users,
            results_root=opts.out or config.paths.results,
        )
        make_samples(config, None if opts.quiet else err.print)
        plan = check_and_plan(engine, config, data_dir)
        events_path = opts.events or config.paths.events
        if events_path:
            try:
                log = JsonlEventLog(events_path)
            except OSError as exc:
                raise InputError(
                    f"event log {events_path} cannot be written ({exc.strerror}); "
                    "give a file path in a writable directory"
                ) from None
    except (ConfigError, InputError, SlideError, EngineError, StoreError) as exc:
        print(f"wsitui: {exc}", file=sys.stderr)  # one line, never wrapped
        return EXIT_INPUT
    try:
        return anyio.run(_run, engine, config, plan, opts, log)
    except (DataDirInUse, EngineError) as exc:
        print(f"wsitui: {exc}", file=sys.stderr)
        return EXIT_INPUT
    finally:
        if log:
            log.close()


async def _run(
    engine: Engine, config: Config, plan: Plan, opts: RunOptions, log: JsonlEventLog | None
) -> int:
    human = Console(stderr=opts.json)
    if not human.is_terminal:  # logs and pipes: don't squeeze the summary into 80 columns
        human = Console(stderr=opts.json, width=160)
    if log:
        engine.bus.add_listener(log)
    bars: ProgressBars | None = None
    if not opts.quiet:
        if human.is_terminal:
            bars = ProgressBars(human)
            engine.bus.add_listener(bars)
        else:
            engine.bus.add_listener(PlainLines(human.file))
    interrupted = False
    waiting = anyio.CancelScope()

    async def watch_signals() -> None:
        # Stays open until the engine has stopped, so a second Ctrl-C during the stop is
        # answered here instead of raising KeyboardInterrupt mid-shutdown.
        nonlocal interrupted
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                if interrupted and not opts.quiet:
                    human.print("[yellow]still stopping:[/] waiting for jobs to reach a tile")
                interrupted = True
                waiting.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch_signals)
        async with engine:
            ids = [submit_or_resume(engine, i, w, plan) for i, w in enumerate(config.workflows)]
            if bars:
                bars.add(
                    [
                        engine.workflow(w.tenant, i)
                        for w, i in zip(config.workflows, ids, strict=True)
                    ]
                )
                bars.progress.start()
            try:
                with waiting:
                    await engine.wait_idle()
            finally:
                if bars:
                    bars.progress.stop()
            if interrupted and not opts.quiet:
                human.print(
                    "[yellow]interrupted:[/] running jobs stop at their next tile; their state is "
                    "saved. Run the same command again to resume."
                )
        tg.cancel_scope.cancel()
    # After the engine stopped, so interrupted jobs show as they are on disk (PENDING).
    statuses = [engine.workflow(w.tenant, i) for w, i in zip(config.workflows, ids, strict=True)]
    code = EXIT_INTERRUPTED if interrupted else _exit_code(statuses)
    if opts.json:
        summary = RunSummary(
            exit_code=code,
            interrupted=interrupted,
            data_dir=str(engine.data_dir),
            workflows=[_workflow_summary(engine, s) for s in statuses],
        )
        sys.stdout.write(summary.model_dump_json(indent=2) + "\n")
    elif not opts.quiet:
        human.print(_table(engine, statuses))
    return code


def _exit_code(statuses: list[WorkflowStatus]) -> int:
    jobs = [j for s in statuses for j in s.jobs]
    return EXIT_OK if all(j.state is JobState.SUCCEEDED for j in jobs) else EXIT_FAILED


def _job_summary(engine: Engine, job: Job) -> JobSummary:
    return JobSummary(
        id=job.id,
        key=job.key,
        type=str(job.job_type),
        branch=job.branch,
        slide=job.slide,
        depends_on=list(job.depends_on),
        state=str(job.state),
        blocked=job.blocked,
        attempt=job.attempt,
        tiles_done=job.tiles_done,
        tiles_total=job.tiles_total,
        error=job.error,
        results_dir=str(engine.results_dir(job)),
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def _workflow_summary(engine: Engine, status: WorkflowStatus) -> WorkflowSummary:
    wf = status.workflow
    return WorkflowSummary(
        id=wf.id,
        tenant=wf.tenant,
        name=wf.name,
        state=str(status.state),
        progress=status.progress,
        jobs=[_job_summary(engine, j) for j in status.jobs],
    )


def _table(engine: Engine, statuses: list[WorkflowStatus]) -> Table:
    table = Table(
        title="wsitui run summary",
        title_justify="left",
        caption=f"outputs under {engine.results_root}",
        caption_justify="left",
    )
    for col in ("tenant", "workflow", "job", "type", "branch", "state", "tiles", "time"):
        table.add_column(col, no_wrap=True)
    table.add_column("output / error", overflow="fold", ratio=1)
    for status in sorted(statuses, key=lambda s: s.workflow.tenant):
        for job in status.jobs:
            elapsed = ""
            if job.started_at and job.finished_at:
                elapsed = f"{job.finished_at - job.started_at:.1f}s"
            state = "BLOCKED" if job.blocked and job.state is JobState.PENDING else str(job.state)
            detail = job.error or ""
            if job.state is JobState.SUCCEEDED:
                detail = str(engine.results_dir(job).relative_to(engine.results_root.resolve()))
            table.add_row(
                status.workflow.tenant,
                status.workflow.name,
                job.key,
                str(job.job_type),
                job.branch,
                f"[{STATE_STYLE.get(state, 'red')}]{state}[/]",
                f"{job.tiles_done}/{job.tiles_total}",
                elapsed,
                detail,
            )
    return table
