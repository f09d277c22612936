"""One start-up sequence for every face: config → checks → engine → samples → plan → event log.

`prepare_session` does everything that can be refused before anything runs, and turns every
known failure into one `SessionError` (an escaped line and an exit code). `Session.open` then
starts the engine and submits or resumes the config's workflows; every face opens through it
(`wsitui run` starts the workflows, the TUI submits them held).

Order matters: cheap checks that create nothing come first (the data dir, the results dir and
the event log path are checked, not made), then a probe of the data-dir lock (a busy data dir is
refused before slow sample generation), then samples, slides and the stored-state plan.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from wsitui.core.engine import Engine, EngineError, QueueFull, RateLimited
from wsitui.core.eventlog import EventLogError, JsonlEventLog, check_event_log
from wsitui.core.events import Listener
from wsitui.core.paths import (
    DataDirInUse,
    DataDirLock,
    UnusableDir,
    check_writable_dir,
    default_data_dir,
)
from wsitui.core.store import StoreError
from wsitui.jobs.registry import default_executors
from wsitui.observability.logs import LogError
from wsitui.observability.server import MetricsError
from wsitui.observability.setup import Observability, ObserveOptions
from wsitui.session.cohort import Cohort, CohortError, expand_cohorts, write_index
from wsitui.session.cohort_summary import CohortSummaryWriter
from wsitui.session.config import Config, ConfigError, WorkflowConfig, load_config
from wsitui.session.errors import EXIT_INPUT, EXIT_LIMITED, SessionError
from wsitui.session.plan import (
    InputError,
    Plan,
    admission_requests,
    check_and_plan,
    make_samples,
    submit_or_resume,
)
from wsitui.slides.errors import SlideError

# Every failure a session knows how to explain in one line: all are input errors (exit 2).
_KNOWN = (
    ConfigError,
    CohortError,
    InputError,
    SlideError,
    EngineError,
    StoreError,
    UnusableDir,
    EventLogError,
    DataDirInUse,
    LogError,
    MetricsError,
)


@dataclass(frozen=True)
class SessionOptions:
    config: Path | None = None  # None: built-in defaults (the TUI without --config)
    data_dir: Path | None = None  # overrides [paths] data_dir
    out: Path | None = None  # overrides [paths] results
    events: Path | None = None  # overrides [paths] events
    require_workflows: bool = False  # `wsitui run` has nothing to do without one
    observe: ObserveOptions = field(default_factory=ObserveOptions)  # metrics endpoint, logs


@dataclass
class Session:
    config: Config
    data_dir: Path
    engine: Engine
    plan: Plan
    event_log: JsonlEventLog | None
    observability: Observability
    # Per config workflow that runs (the skipped ones left out), once submitted.
    runs: list[tuple[WorkflowConfig, str]] = field(default_factory=list)
    cohorts: dict[int, Cohort] = field(default_factory=dict)  # by config workflow index
    cohort_ids: dict[str, Cohort] = field(default_factory=dict)  # by workflow id, once submitted
    summaries: list[CohortSummaryWriter] = field(default_factory=list)

    @property
    def workflow_ids(self) -> list[str]:
        return [wf_id for _, wf_id in self.runs]

    def skipped(self) -> list[str]:
        """One line per config workflow not run (its stored twin no longer matches it)."""
        return [self.plan.skipped[i] for i in sorted(self.plan.skipped)]

    def submit(self, *, start: bool) -> list[str]:
        """Submit or resume every config workflow on the open engine; return their ids.

        `start=False` (the TUI) leaves new jobs held and old ones as they are. The whole config
        passes admission control before any of it is submitted: a refusal leaves nothing half
        started. Workflows in `plan.skipped` are left out.
        """
        try:
            self.engine.check_admission(
                admission_requests(self.engine, self.config, self.plan, start=start)
            )
            self.runs = [
                (wf, submit_or_resume(self.engine, i, wf, self.plan, start=start))
                for i, wf in enumerate(self.config.workflows)
                if i not in self.plan.skipped
            ]
            self._cohorts_submitted()
        except (RateLimited, QueueFull) as exc:
            # A workflow larger than a limit says its own fix: "or retry later" would not help.
            fix = (
                ""
                if getattr(exc, "never", False)
                else ": raise [limits] in the config, or retry later"
            )
            raise SessionError(
                f"{exc}; nothing of the config was submitted (its workflows are submitted "
                f"at once){fix}",
                EXIT_LIMITED,
            ) from None
        except (EngineError, StoreError) as exc:
            raise SessionError(exc, EXIT_INPUT) from None
        return self.workflow_ids

    def _cohorts_submitted(self) -> None:
        """Record each cohort's slides and start its summary, written as slides finish."""
        indexes = [i for i in range(len(self.config.workflows)) if i not in self.plan.skipped]
        for i, (_, wf_id) in zip(indexes, self.runs, strict=True):
            cohort = self.cohorts.get(i)
            if cohort is None:
                continue
            write_index(self.data_dir, wf_id, cohort)
            self.cohort_ids[wf_id] = cohort
            writer = CohortSummaryWriter(self.engine, cohort, wf_id)
            self.summaries.append(writer)
            self.engine.bus.add_listener(writer)
            writer.start()

    def finish_summaries(self) -> None:
        """Write every cohort's complete summary (once the engine has stopped)."""
        for writer in self.summaries:
            self.engine.bus.remove_listener(writer)
            writer.finish()

    def listeners(self) -> list[Listener]:
        """What a face attaches to the engine's bus: the event log, metrics and job log."""
        return [
            *([self.event_log] if self.event_log is not None else []),
            *self.observability.listeners(),
        ]

    @asynccontextmanager
    async def open(self, *, start: bool = True) -> AsyncIterator[Session]:
        """Start the engine, attach the event log, submit or resume; stop the engine on exit.

        A refusal while submitting stops the engine first and is raised after it, as itself:
        raised inside the engine's task group it would come out as an exception group.
        """
        engine = self.engine
        # Listeners go in before the engine opens: what it commits while it recovers (jobs
        # resumed, "interrupted", poison jobs failed) and the starts of resumed jobs are logged.
        listeners = self.listeners()
        for listener in listeners:
            engine.bus.add_listener(listener)
        if self.event_log is not None and self.event_log.backfill not in engine.on_open:
            engine.on_open.append(self.event_log.backfill)
        try:
            await engine.__aenter__()
        except (DataDirInUse, StoreError, UnusableDir, OSError) as exc:
            for listener in listeners:
                engine.bus.remove_listener(listener)
            raise SessionError(_message(exc), EXIT_INPUT) from None
        failure: SessionError | None = None
        try:
            await self.observability.start()
            try:
                self.submit(start=start)
            except SessionError as exc:
                failure = exc
            if failure is None:
                yield self
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await self.observability.aclose()
            with _state_write_failure():
                if not await engine.__aexit__(type(exc), exc, exc.__traceback__):
                    raise
            return
        await self.observability.aclose()
        with _state_write_failure():
            await engine.__aexit__(None, None, None)
        self.finish_summaries()
        if failure is not None:
            raise failure

    def warnings(self) -> list[str]:
        """One-line problems found while the session ran (e.g. the event log's disk filled)."""
        out = [self.event_log.error] if self.event_log and self.event_log.error else []
        if self.observability.logs.error:
            out.append(self.observability.logs.error)
        return out + [w.error for w in self.summaries if w.error]

    def cohort_notes(self) -> list[str]:
        """A rerun's news per cohort: how many slides are new, changed or no longer listed."""
        return [line for i in sorted(self.cohorts) for line in self.cohorts[i].notes()]

    def close(self) -> None:
        if self.event_log is not None:
            self.event_log.close()
        self.observability.close()


@contextmanager
def _state_write_failure() -> Iterator[None]:
    """The engine stopped because it could not commit (a disk that filled mid-run): raised
    from a job's task, it came out of the engine's task group as a traceback. It is one line:
    what was committed before is kept and the same command resumes."""
    try:
        yield
    except BaseExceptionGroup as group:
        found = group.subgroup(StoreError)
        if found is None:
            raise
        leaf: BaseException = found
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        raise SessionError(
            f"{leaf}; the engine stopped: what it committed before is kept, and the same "
            "command resumes once that is fixed",
            EXIT_INPUT,
        ) from None


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, _KNOWN):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    return str(exc)


def prepare_session(opts: SessionOptions, say: Callable[[str], object] | None = None) -> Session:
    """Check everything and build the engine; raise SessionError (exit 2) with one line."""
    try:
        return _prepare(opts, say)
    except (*_KNOWN, OSError) as exc:
        raise SessionError(_message(exc), EXIT_INPUT) from None
    except RecursionError:
        raise SessionError("input nested too deeply to read; simplify it", EXIT_INPUT) from None


_CONFIG_KEYS = ("workflows[", "samples[")  # errors that name a key of the config file


def _prepare(opts: SessionOptions, say: Callable[[str], object] | None) -> Session:
    config = load_config(opts.config) if opts.config else Config()
    if opts.require_workflows and not config.workflows:
        raise InputError(
            f"{opts.config}: no [[workflows]] to run; add one (see sample_config.toml)"
        )
    data_dir = opts.data_dir or config.paths.data_dir or default_data_dir()
    check_writable_dir(data_dir, "data dir")
    _check_state_files(data_dir)
    engine = Engine(
        data_dir,
        default_executors(),
        max_workers=config.scheduler.max_workers,
        max_active_users=config.scheduler.max_active_users,
        results_root=opts.out or config.paths.results,
        cancel_grace=config.scheduler.cancel_grace,
        limits=config.limits.limits(),
    )
    check_writable_dir(engine.results_root, "results dir")
    events = opts.events or config.paths.events
    if events is not None:
        check_event_log(events)
    DataDirLock(data_dir).probe()  # refuse a busy data dir before slow work
    observability = Observability(engine, opts.observe)  # a port in use is refused here
    try:
        make_samples(config, say)
        config, cohorts = expand_cohorts(config, data_dir)  # after samples: a glob sees them
        plan = check_and_plan(engine, config, data_dir)
        log = JsonlEventLog(events) if events is not None else None
    except (InputError, CohortError) as exc:
        observability.close()
        if opts.config is not None and str(exc).startswith(_CONFIG_KEYS):
            # "workflows[0] (t/w): dependency cycle ..." named no file, as the config's own
            # errors ("c.toml: workflows[0].name: ...") do: with two configs, which one?
            raise type(exc)(f"{opts.config}: {exc}") from None
        raise
    except BaseException:
        observability.close()
        raise
    return Session(
        config=config,
        data_dir=data_dir,
        engine=engine,
        plan=plan,
        event_log=log,
        observability=observability,
        cohorts=cohorts,
    )


def _check_state_files(data_dir: Path) -> None:
    """What the engine opens in the data dir must be regular files it can write, if present.

    A state.db or lock file that is a FIFO would hang SQLite or the lock; a read-only state.db
    would fail at the first write, mid-run.
    """
    for name in ("state.db", "engine.lock"):
        path = data_dir / name
        if not (path.exists() or path.is_symlink()):
            continue
        if not path.is_file():
            raise InputError(
                f"{path} is not a regular file; move it aside or use another --data-dir"
            )
        if not os.access(path, os.R_OK | os.W_OK):
            raise InputError(f"{path} is read-only; make it writable or use another --data-dir")
