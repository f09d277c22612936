"""A job's worker processes send their results back through files, not the pool's pipe.

`concurrent.futures.ProcessPoolExecutor` sends each task's result (or exception) back through
one pipe, a message of any size written in pieces. A worker ended while it writes one (a
cancel's terminate, the OOM killer, a `kill`) leaves half a message there, and the pool's own
thread (CPython 3.11) then waits for the rest for good: every task of the pool waits with it,
and the process hangs at exit, where Python joins that thread. Found 2026-12-06: a cancelled
cells job with its tiles on worker processes left its threads waiting forever, and CI's test
process never exited after its last test.

So a task runs as `to_file(folder, fn, *args)`: its result, or its exception, is pickled into a
new file of `folder`, and what goes through the pipe is that file's name, a few hundred bytes
sent in one write (under PIPE_BUF, so all or nothing). `from_file` in the job's process reads
the file, removes it and returns the result or raises the exception. `results_folder()` makes
the folder (named for the job's process; those of processes that are gone, a `kill -9` leaves a
few files behind, are removed first); the pool's owner removes it when the pool is done.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import shutil
import socket
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import wait as mp_wait
from pathlib import Path
from typing import Any

from wsitui.core.pool_worker import alive

PREFIX = "wsitui-results-"
POLL_S = 1.0


class ResultLost(RuntimeError):
    """A worker could not write its result (a full or small temporary disk): the task can be
    run again elsewhere."""


def _host() -> str:
    # A temporary folder shared by several machines (or PID namespaces): only this host's
    # folders are judged by their process ids.
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:40] or "host"


def results_folder() -> Path:
    """A new folder for one pool's result files (in the system's temporary folder)."""
    tmp = Path(tempfile.gettempdir())
    host = _host()
    for old in tmp.glob(f"{PREFIX}*-{host}-*"):
        pid = old.name[len(PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-{host}-", dir=tmp))


def to_file(folder: str | Path, fn: Callable[..., Any], *args: Any) -> tuple[str, str]:
    """In a worker: `fn(*args)`; ("ok" or "raised", the file its result or exception was
    pickled into), or ("lost", why) when that file could not be written."""
    try:
        outcome: tuple[str, Any] = ("ok", fn(*args))
    except Exception as exc:  # raised again in the job's process by `from_file`
        outcome = ("raised", _picklable(exc))
    path = ""
    try:
        fd, path = tempfile.mkstemp(suffix=".pickle", dir=folder)
        with os.fdopen(fd, "wb") as f:
            pickle.dump(outcome[1], f, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # a full disk, the folder removed by a cancel
        if path:
            with contextlib.suppress(OSError):
                Path(path).unlink()  # not the last free space left to a half-written file
        return "lost", f"{type(exc).__name__}: {exc} (in {folder})"[:400]
    return outcome[0], path


def from_file(sent: tuple[str, str]) -> Any:
    """In the job's process: the result `to_file` sent (its file removed), or its exception
    raised."""
    status, where = sent
    if status == "lost":
        raise ResultLost(
            f"a worker process could not hand its result back: {where}; free some space in "
            "the system's temporary folder, or set TMPDIR to a folder with room"
        )
    try:
        with Path(where).open("rb") as f:
            value = pickle.load(f)
    finally:
        with contextlib.suppress(OSError):
            Path(where).unlink()
    if status == "raised":
        raise value
    return value


def _picklable(exc: Exception) -> Exception:
    """`exc` with its worker-side traceback as a note, or, when it does not survive a pickle
    round trip, a RuntimeError naming it."""
    exc.add_note("in a worker process:\n" + "".join(traceback.format_exception(exc)).rstrip())
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def result_of(pool: ProcessPoolExecutor, future: Future[Any], poll: float = POLL_S) -> Any:
    """`future.result()`, never waiting for good: a task submitted while the pool broke (a
    worker died) can be left pending with nobody to settle it (CPython 3.11 clears the pool's
    tasks without its submit lock); that one raises BrokenProcessPool too."""
    while True:
        try:
            return future.result(timeout=poll)
        except TimeoutError:
            if broken_for_good(pool, future):
                raise BrokenProcessPool(getattr(pool, "_broken", "") or "broken") from None


def broken_for_good(pool: ProcessPoolExecutor, future: Future[Any]) -> bool:
    """Whether `future` is pending in a broken pool whose thread that settles tasks is gone
    (implementation details of CPython's pool, read defensively: absent, it is not)."""
    thread = getattr(pool, "_executor_manager_thread", None)
    gone = thread is None or not thread.is_alive()
    return bool(getattr(pool, "_broken", False)) and gone and not future.done()


def pool_processes(pool: ProcessPoolExecutor | None) -> list[Any]:
    """The worker processes of `pool` (CPython's pool has no public handle on them; none once it
    is shut down or when there is no pool)."""
    return list((getattr(pool, "_processes", None) or {}).values())


def wait_gone(processes: Iterable[Any], seconds: float) -> None:
    """Return once `processes` (multiprocessing Process objects) have all ended, or after
    `seconds`. Sentinels only (never `join`): the pool's own thread reaps its workers. A closed
    Process object is long gone."""
    waiting = []
    for p in processes:
        with contextlib.suppress(ValueError):
            waiting.append(p.sentinel)
    deadline = time.monotonic() + seconds
    while waiting and time.monotonic() < deadline:
        done = mp_wait(waiting, timeout=max(0.0, deadline - time.monotonic()))
        waiting = [w for w in waiting if w not in done]


def remove_when_gone(folder: Path, processes: Iterable[Any]) -> None:
    """`folder` removed once `processes` (multiprocessing Process objects: their sentinels)
    have ended (at most 600 s), on a daemon thread: a worker still finishing a tile writes its
    result there, and a folder removed before it may be left with that file."""
    processes = list(processes)

    def remove() -> None:
        wait_gone(processes, 600)
        shutil.rmtree(folder, ignore_errors=True)

    if not processes:
        shutil.rmtree(folder, ignore_errors=True)
        return
    threading.Thread(target=remove, name="remove-results", daemon=True).start()


def discard(futures: Iterable[Future[Any]]) -> None:
    """The result files of `futures` removed as each ends (a batch whose first tile failed:
    the others' labels would stay until the job's end, on a tmpfs in memory)."""
    for f in futures:
        f.add_done_callback(_discard_one)


def _discard_one(f: Future[Any]) -> None:
    if f.cancelled() or f.exception() is not None:
        return
    status, where = f.result()
    if status != "lost":
        with contextlib.suppress(OSError):
            Path(where).unlink()
