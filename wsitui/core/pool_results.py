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
import shutil
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wsitui.core.pool_worker import alive

PREFIX = "wsitui-results-"


def results_folder() -> Path:
    """A new folder for one pool's result files (in the system's temporary folder)."""
    tmp = Path(tempfile.gettempdir())
    for old in tmp.glob(f"{PREFIX}*-*"):
        pid = old.name[len(PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=tmp))


def to_file(folder: str | Path, fn: Callable[..., Any], *args: Any) -> tuple[str, str]:
    """In a worker: `fn(*args)`; ("ok" or "raised", the file its result or exception was
    pickled into), or ("lost", why) when that file could not be written."""
    try:
        outcome: tuple[str, Any] = ("ok", fn(*args))
    except Exception as exc:  # raised again in the job's process by `from_file`
        outcome = ("raised", _picklable(exc))
    try:
        fd, path = tempfile.mkstemp(suffix=".pickle", dir=folder)
        with os.fdopen(fd, "wb") as f:
            pickle.dump(outcome[1], f, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # a full disk, the folder removed by a cancel
        return "lost", f"{type(exc).__name__}: {exc}"[:300]
    return outcome[0], path


def from_file(sent: tuple[str, str]) -> Any:
    """In the job's process: the result `to_file` sent (its file removed), or its exception
    raised."""
    status, where = sent
    if status == "lost":
        raise RuntimeError(f"a worker process could not hand its result back: {where}")
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
