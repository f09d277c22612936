"""`wsitui run CONFIG.toml`: check everything, submit (or resume), show progress, summarise.

Exit codes: 0 every job succeeded, 1 a job failed or was canceled (or a config workflow was
skipped: its stored twin no longer matches it), 2 config or input error
(nothing ran), 3 a config workflow refused by admission control (rate limited or queue full;
nothing of it submitted), 130 interrupted (state saved; run again to resume).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.abc import TaskStatus
from pydantic import BaseModel
from rich.console import Console, Group
from rich.text import Text

from wsitui.core.records import JobState, WorkflowStatus
from wsitui.core.text import one_line
from wsitui.headless.cohort_progress import CohortProgress, cohort_table
from wsitui.headless.cohort_run import (
    cohort_trackers,
    hide_cohort_jobs,
    summary_files,
    with_cohort,
)
from wsitui.headless.display import PlainLines, ProgressBars, summary_table
from wsitui.observability.setup import ObserveOptions
from wsitui.session.cohort_tracker import CohortTracker
from wsitui.session.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    SessionError,
)
from wsitui.session.session import Session, SessionOptions, prepare_session
from wsitui.session.summary import WorkflowSummary, summarize
from wsitui.session.terminal import HangupAwareStream, detach_from_terminal


@dataclass(frozen=True)
class RunOptions:
    config: Path
    data_dir: Path | None = None
    out: Path | None = None
    events: Path | None = None
    json: bool = False
    quiet: bool = False
    verbose: bool = False  # a cohort's jobs shown one by one, not as one line
    observe: ObserveOptions = field(default_factory=lambda: ObserveOptions(errors_to_stderr=True))
    # The process is `wsitui` itself (not a test calling `run`): once the engine has stopped, a
    # signal ends it at once, in one line.
    program: bool = False


class RunSummary(BaseModel):
    exit_code: int
    interrupted: bool
    data_dir: str
    workflows: list[WorkflowSummary]
    skipped: list[str] = []  # config workflows not run: their stored twin no longer matches


def _error(message: str) -> None:
    print(f"wsitui: {one_line(message)}", file=sys.stderr)  # one line, never wrapped


def _exit_now(signum: int, frame: object) -> None:
    """After the engine stopped (or past the stop's deadline): a signal ends the process now,
    in one line. Everything is committed already; nothing is left to wait for."""
    _error("interrupted again: exiting now; state is saved, run the same command to resume")
    os._exit(EXIT_INTERRUPTED)


def stop_signals() -> tuple[int, ...]:
    """What stops a run (jobs at their next tile, state kept): Ctrl-C, SIGTERM, and SIGHUP (the
    SSH connection or terminal went away; the default would kill the process mid-job, which
    recovery counts as a crash), unless SIGHUP is ignored (`nohup`: keep running)."""
    hup = getattr(signal, "SIGHUP", None)
    keep = hup is not None and signal.getsignal(hup) is not signal.SIG_IGN
    return (signal.SIGINT, signal.SIGTERM, *((hup,) if keep and hup is not None else ()))


def _answer_signals_by_exiting(opts: RunOptions) -> None:
    if opts.program and threading.current_thread() is threading.main_thread():
        for sig in stop_signals():
            signal.signal(sig, _exit_now)


def run(opts: RunOptions) -> int:
    if threading.current_thread() is threading.main_thread():
        # `wsitui` ignores Ctrl-C while it imports (cli.py); from here on it is ours to answer.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _run_command(opts)
    finally:
        _answer_signals_by_exiting(opts)  # a second Ctrl-C while Python exits: no traceback


def _run_command(opts: RunOptions) -> int:
    err = Console(stderr=True)
    say = None if opts.quiet else (lambda line: err.print(one_line(line), markup=False))
    try:
        session = prepare_session(
            SessionOptions(
                config=opts.config,
                data_dir=opts.data_dir,
                out=opts.out,
                events=opts.events,
                require_workflows=True,
                observe=opts.observe,
            ),
            say,
        )
    except SessionError as exc:
        _error(exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        _error("interrupted before any job ran; run the same command again to start")
        return EXIT_INTERRUPTED
    for line in session.skipped():  # a stored workflow the config no longer matches
        _error(line)
    for line in session.cohort_notes():  # new, changed and removed slides of a rerun
        if not opts.quiet:
            print(one_line(line), file=sys.stderr)
    server = session.observability.server
    if server is not None and say is not None:
        say(f"metrics: {server.url}")
    try:
        code = anyio.run(_run, session, opts)
    except SessionError as exc:
        _error(exc.message)
        code = exc.exit_code
    except (KeyboardInterrupt, BaseExceptionGroup) as exc:
        # Before the signal watcher was up, or after it stopped (a group: raised in a task).
        if isinstance(exc, BaseExceptionGroup) and exc.subgroup(KeyboardInterrupt) is None:
            raise
        _error("interrupted: state is saved; run the same command again to resume")
        code = EXIT_INTERRUPTED
    finally:
        _answer_signals_by_exiting(opts)
        session.close()
    for warning in session.warnings():
        _error(warning)
    return code


async def _run(session: Session, opts: RunOptions) -> int:
    engine = session.engine
    stream = HangupAwareStream(sys.stderr if opts.json else sys.stdout)
    human = Console(file=stream)  # type: ignore[arg-type]  # a TextIO in all it is asked for
    if not human.is_terminal:  # logs and pipes: don't squeeze the summary into 80 columns
        human = Console(file=stream, width=160)  # type: ignore[arg-type]
    bars: ProgressBars | None = None
    if not opts.quiet:
        if human.is_terminal:
            bars = ProgressBars(human)
            engine.bus.add_listener(hide_cohort_jobs(session, bars, opts.verbose))
        else:
            engine.bus.add_listener(
                hide_cohort_jobs(session, PlainLines(human.file, engine), opts.verbose)
            )
    interrupted = False
    failure: SessionError | None = None
    waiting = anyio.CancelScope()

    async def watch_signals(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        # Stays open until the engine has stopped, so a second Ctrl-C during the stop is
        # answered here instead of raising KeyboardInterrupt mid-shutdown.
        nonlocal interrupted
        with anyio.open_signal_receiver(*stop_signals()) as signals:
            task_status.started()  # before the engine opens: no signal finds no handler
            async for received in signals:
                if received == getattr(signal, "SIGHUP", None):
                    detach_from_terminal()  # the terminal is gone: the stop must not write to it
                if interrupted and not opts.quiet:
                    human.print("[yellow]still stopping:[/] waiting for jobs to reach a tile")
                if not interrupted and opts.program:
                    _deadline(engine.cancel_grace + STOP_MARGIN_S)
                interrupted = True
                waiting.cancel()

    async with anyio.create_task_group() as tg:
        await tg.start(watch_signals)
        try:
            # Opened inside the task group but caught here: a refusal (busy data dir, a store
            # that cannot be written) stays one SessionError, never an exception group.
            async with session.open(start=True):
                trackers = [] if opts.verbose else cohort_trackers(session)
                if bars:
                    bars.add(_statuses(session, without=trackers), engine.stats().waiting, engine)
                    bars.progress.start()
                if trackers and not opts.quiet:
                    engine.bus.add_listener(
                        CohortProgress(trackers, bars=bars, out=None if bars else human.file)
                    )
                try:
                    with waiting:
                        await engine.wait_idle()
                finally:
                    if bars:
                        bars.progress.stop()
                if interrupted and not opts.quiet:
                    human.print(
                        "[yellow]interrupted:[/] running jobs stop at their next tile; their "
                        "state is saved. Run the same command again to resume."
                    )
        except SessionError as exc:
            failure = exc
        tg.cancel_scope.cancel()
    if failure is not None:
        raise failure
    # After the engine stopped, so interrupted jobs show as they are on disk (PENDING).
    statuses = _statuses(session)
    code = EXIT_INTERRUPTED if interrupted else _exit_code(statuses)
    if code == EXIT_OK and session.skipped():
        code = EXIT_FAILED  # not everything the config asks for ran
    if opts.json:
        waiting_tenants = engine.stats().waiting
        summary = RunSummary(
            exit_code=code,
            interrupted=interrupted,
            data_dir=str(engine.data_dir),
            skipped=session.skipped(),
            workflows=[
                with_cohort(
                    session,
                    summarize(
                        s.workflow,
                        s.jobs,
                        waiting=waiting_tenants,
                        results_root=engine.results_root,
                        resources=engine.stats().resources,
                    ),
                    s.jobs,
                )
                for s in statuses
            ],
        )
        sys.stdout.write(summary.model_dump_json(indent=2) + "\n")
    elif not opts.quiet:
        trackers = [] if opts.verbose else cohort_trackers(session)
        others = _statuses(session, without=trackers)
        if others or not trackers:
            print_closing(human, summary_table(engine, others, interrupted=interrupted))
        if trackers:
            print_closing(human, cohort_table(trackers, summary_files(session)))
        # Said when it started (stderr), since scrolled away: a summary of nothing but
        # SUCCEEDED jobs then read as all done, exit 1 with no word of what did not run.
        if session.skipped():
            lines = "\n".join(f"  ⚠ {one_line(line)}" for line in session.skipped())
            print_closing(human, Group(Text("not run:"), Text(lines, style="yellow")))
    return code


def print_closing(console: Console, closing: Group) -> None:
    """The closing table, then its lines (paths, errors). Off a terminal (a log, a pipe) a
    line is never wrapped: a slide's error split over two lines no longer greps whole."""
    for part in closing.renderables:
        console.print(part, soft_wrap=isinstance(part, Text) and not console.is_terminal)


STOP_MARGIN_S = 0.8  # a stop ends the process within cancel_grace plus this, whatever runs


def _deadline(seconds: float) -> None:
    """The process ends within `seconds` of a stop request whatever a thread is doing: the
    engine leaves a run behind after `cancel_grace`; this covers what could still hang
    (an executor's close, a thread the interpreter would join at exit). What is committed is
    consistent at any instant (SQLite transactions), so exiting here loses nothing."""

    def expire() -> None:
        _error(
            f"still stopping {seconds:g} s after the interrupt: exiting now; state is saved, "
            "run the same command again to resume"
        )
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def _statuses(session: Session, without: Sequence[CohortTracker] = ()) -> list[WorkflowStatus]:
    skip = {t.workflow_id for t in without}
    return [session.engine.workflow(w.tenant, i) for w, i in session.runs if i not in skip]


def _exit_code(statuses: list[WorkflowStatus]) -> int:
    jobs = [j for s in statuses for j in s.jobs]
    return EXIT_OK if all(j.state is JobState.SUCCEEDED for j in jobs) else EXIT_FAILED
