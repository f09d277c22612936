"""Running-job supervision: each started job runs as its own task, stops when asked (or is left
behind after `cancel_grace`), reports progress, and ends in exactly one commit.

The supervisor is the engine's part for RUNNING jobs; it changes the engine's state only
through the engine's commit (`Engine._commit`), like the commands do.
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
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from wsitui.core import rules
from wsitui.core.errors import EngineError, InvalidRequest
from wsitui.core.events import JobProgress
from wsitui.core.executor import Executor, JobCanceled, JobError, UpstreamJob
from wsitui.core.records import Job, JobSpec, JobState
from wsitui.core.run_context import RunContext, RunningJob
from wsitui.core.store import StoreError

if TYPE_CHECKING:
    from wsitui.core.engine import Engine

PROGRESS_COMMIT_S = 2.0  # a running job's progress is committed at most this often (and at stages)

# A finished job's state as the scheduler records it (rules.SchedState relates the two).
FINAL_SCHED_STATE = {
    JobState.SUCCEEDED: rules.SchedState.SUCCEEDED,
    JobState.FAILED: rules.SchedState.FAILED,
    JobState.CANCELED: rules.SchedState.CANCELED,
}


class _Crash(Exception):
    """An executor raised something that is not an Exception (SystemExit, a stray cancel...)."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"{type(exc).__name__}: {exc}".rstrip(": "))


class _Abandoned(Exception):
    """The run ignored a stop request for longer than the grace period."""


def _results_dir_problem(out_dir: Path, exc: OSError) -> str:
    """One line for a results dir that cannot be made: the file in its way, or the OS reason."""
    for part in (*reversed(out_dir.parents), out_dir):
        if (part.exists() or part.is_symlink()) and not part.is_dir():
            return (
                f"results folder {out_dir} cannot be made: {part} is a file, not a folder; "
                "move it aside, then retry the job"
            )
    return (
        f"results folder {out_dir} cannot be prepared ({exc.strerror or exc}); check that it is "
        "writable and the disk has room, then retry the job"
    )


class Supervisor:
    """The engine's part for RUNNING jobs; `Engine._dispatch` hands it each job it starts."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.runs: dict[str, RunningJob] = {}  # one per RUNNING job
        self.user_canceled: set[str] = set()  # so shutdown cannot turn a cancel into a resume
        self.abandoned: set[asyncio.Task[Any]] = set()  # runs past their cancel deadline
        self._progress_saved: dict[str, float] = {}  # job id -> when its progress was committed
        # Runs that start from an earlier run's work and have not reported their count yet.
        self._resuming: set[str] = set()
        self._holds: dict[str, rules.Needs] = {}  # resources of abandoned runs still working

    def cancel(self, job_id: str) -> None:
        """Ask a running job to stop at its next tile; it ends CANCELED."""
        self.user_canceled.add(job_id)
        self.runs[job_id].request_stop()

    def stop_all(self) -> None:
        """Shutdown: every running job stops at its next tile (and resumes at the next start)."""
        for run in self.runs.values():
            run.request_stop()

    def _prepare_results(self, job: Job) -> Path:
        """The job's results dir: kept when it resumes within an attempt; for a new attempt
        everything but `shards/` is removed (each shard records the job, plan and checksum it
        belongs to and is checked before use, so a retry reuses the valid ones)."""
        out_dir = self.engine.results_dir(job)
        marker = out_dir / ".attempt"
        try:
            current = marker.read_text().strip() if marker.is_file() else None
        except OSError:
            current = None
        try:
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
        except OSError as exc:
            raise JobError(_results_dir_problem(out_dir, exc)) from None
        return out_dir

    def _earlier_work(self, job: Job, out_dir: Path) -> bool:
        """Did an earlier run leave work this one starts from (a resume, or a retry reusing
        valid shards)? Then the run's first count is that work, not its own."""
        try:
            shards = out_dir / "shards"
            if shards.is_dir() and not shards.is_symlink() and any(shards.iterdir()):
                return True
        except OSError:
            pass
        try:
            return self.engine.store.load_checkpoint(job.id, job.attempt) is not None
        except StoreError:
            return False

    def _upstream(self, job: Job) -> tuple[UpstreamJob, ...]:
        jobs = self.engine._jobs
        return tuple(
            UpstreamJob(
                key=up.key,
                job_id=up.id,
                job_type=up.job_type,
                slide=up.slide,
                state=up.state,
                results_dir=self.engine.results_dir(up),
            )
            for up in (jobs[d] for d in job.depends_on)
        )

    def _stored_params(self, job: Job) -> BaseModel:
        spec = JobSpec(id=job.key, type=job.job_type, slide=job.slide, params=job.params)
        try:
            return self.engine._validator.params(spec)
        except InvalidRequest as exc:
            if str(job.job_type) not in self.engine.executors:
                raise
            raise InvalidRequest(
                f"{exc}; an earlier version of wsitui stored these params and a stored "
                "job's params cannot change: give the job anew with the param fixed (in a "
                "config: fix it there and rename the workflow)"
            ) from None

    async def run_job(self, job_id: str) -> None:
        engine = self.engine
        job = engine._jobs[job_id]
        run = self.runs[job_id]
        state, error, reason = JobState.SUCCEEDED, None, "completed"
        left_behind: RunContext | None = None
        try:
            # A stored job of a type this engine has no executor for fails here, in one line;
            # so does one whose params an earlier, lax version stored and that could not be
            # read as what they plainly mean when the engine opened (`tile_size = "big"`).
            params = self._stored_params(job)
            executor = engine.executors[str(job.job_type)]
            out_dir = self._prepare_results(job)
            if self._earlier_work(job, out_dir):
                self._resuming.add(job_id)

            def send(change: Mapping[str, Any]) -> None:
                engine._call_in_loop(self.on_progress, job.id, job.attempt, change)

            run.ctx = RunContext(
                engine.store,
                send,
                job,
                out_dir,
                run.cancel,
                params,
                self._upstream(job),
                engine._limiters[str(job.job_type)],
            )
            await self._supervise(executor, run)
        except JobCanceled:
            if engine._closing and job_id not in self.user_canceled:
                self._interrupt(job_id)
                return
            state, reason = JobState.CANCELED, "canceled while running"
        except _Abandoned:
            if engine._closing and job_id not in self.user_canceled:
                self._interrupt(job_id, late=True)
                return
            state = JobState.CANCELED
            reason = (
                f"canceled: it did not stop within {engine.cancel_grace:g} s of the request; its "
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
            self.runs.pop(job_id, None)
            self.user_canceled.discard(job_id)
            self._progress_saved.pop(job_id, None)
            self._resuming.discard(job_id)
        self._finish(job_id, state, error, reason, left_behind=left_behind)

    async def _supervise(self, executor: Executor, run: RunningJob) -> None:
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
                done, _ = await asyncio.wait({task}, timeout=self.engine.cancel_grace)
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
        self.abandoned.add(task)
        task.add_done_callback(_forget(self.abandoned))

    def _discard_results(self, job: Job) -> None:
        """A run left behind may still write: move its results dir out of the way, then drop it."""
        out_dir = self.engine.results_dir(job)
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
        left_behind: RunContext | None = None,
    ) -> None:
        engine = self.engine
        engine.scheduler.finish(job_id, FINAL_SCHED_STATE[state])
        if left_behind is not None:
            self._hold_while_busy(job_id, left_behind)
        job = engine._jobs[job_id]
        now = engine.clock()
        tiles_done = job.tiles_total if state is JobState.SUCCEEDED else job.tiles_done
        engine._commit(
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
        engine._after_change()

    def _hold_while_busy(self, job_id: str, ctx: RunContext) -> None:
        """A run left behind after `cancel_grace` frees its worker, but the resources it holds
        (a GPU) stay reserved until its threads return: the next GPU job never overlaps it.
        Called before the dispatch that would hand them out."""
        needs = self.engine.scheduler.jobs[job_id].needs
        if not needs:
            return
        loop = asyncio.get_running_loop()
        with ctx.threads_lock:
            if ctx.threads == 0:
                return  # its work has stopped already
            ctx.on_threads_done = lambda: _call_soon(loop, self._release_hold, job_id)
        self.engine.scheduler.reserve(needs)
        self._holds[job_id] = needs
        logging.getLogger("wsitui").warning(
            "job %s was left running in a thread after it was canceled; %s stay in use until "
            "that thread returns",
            job_id,
            ", ".join(f"{k}={v}" for k, v in needs),
        )

    def _release_hold(self, job_id: str) -> None:
        needs = self._holds.pop(job_id, None)
        if needs is None or self.engine._store is None:
            return  # already released, or the engine has closed
        self.engine.scheduler.unreserve(needs)
        self.engine._after_change()

    def _interrupt(self, job_id: str, *, late: bool = False) -> None:
        engine = self.engine
        engine.scheduler.interrupt(job_id)
        now = engine.clock()
        engine._commit(
            [
                replace(
                    engine._jobs[job_id],
                    state=JobState.PENDING,
                    started_at=None,
                    stage="",
                    crashes=0,
                    interrupted=True,
                )
            ],
            "interrupted: the engine stopped"
            + (f" (it did not stop within {engine.cancel_grace:g} s)" if late else "")
            + "; resumes from its last checkpoint",
            now,
        )
        engine._notify()

    def on_progress(self, job_id: str, attempt: int, change: Mapping[str, Any]) -> None:
        engine = self.engine
        job = engine._jobs.get(job_id)
        if job is None or job.state is not JobState.RUNNING or job.attempt != attempt:
            return  # a late report of a run that already ended
        restarted = "restart" in change
        # The first count of a run that starts from earlier work says what was done before it.
        counted = change.get("tiles_total", 0) > 0  # a count of planned work, not a stage
        resumed = counted and job_id in self._resuming and not restarted
        if counted or restarted:
            self._resuming.discard(job_id)
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
        engine._put(updated)
        self._save_progress(updated, force=restarted or updated.stage != job.stage)
        now = engine.clock()
        engine.bus.publish(JobProgress(now, updated, restarted=restarted, resumed=resumed))
        engine._publish_workflow(updated.workflow_id, now)
        engine._notify()

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
            self.engine.store.save_progress(job)
        except StoreError as exc:
            logging.getLogger("wsitui").warning("progress of %s not saved: %s", job.id, exc)

    def _write_traceback(self, job: Job, exc: BaseException) -> None:
        try:
            path = self.engine.results_dir(job) / "error.log"
            path.write_text("".join(traceback.format_exception(exc)))
        except Exception:  # best effort: the job already failed with its own message
            pass


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
