"""What every worker process of a job's pool runs first: exit when the job's process is gone.

A `ProcessPoolExecutor` worker waits on its pool's queue, whose write end it holds itself, so a
`kill -9` of wsitui (or a crash) never reached it: it stayed for good, with its memory and its
open slide, one more set at every crash. `exit_with(pid)` (the pool's `initializer`, given the
job's process id) starts a thread that ends the worker within about a second of that process.
It watches the process itself, not the worker's parent: under `forkserver` the parent is the
fork server, which outlives the job's process.

A worker also ignores Ctrl-C: a terminal sends it to the whole foreground process group, workers
included, and the job's process answers it (it stops the job and ends its workers). Before, each
worker of `wsitui run` printed the line its re-imported `wsitui.cli` sets up for a Ctrl-C during
start-up ("interrupted while starting; nothing was run"), once per worker, under a run's own
answer.

That takes effect only once the initializer runs: a worker starts by re-importing the program
(`wsitui.cli`, whose start-up handler prints "interrupted while starting" and exits) and
unpickling its job, ~0.1-1 s in which a Ctrl-C killed it, a line per worker, and the pool was
broken (every tile of the job then on its own thread). So pools are started inside
`ctrl_c_blocked()`: SIGINT is blocked in the thread that starts the processes, and a process
inherits the blocking from its first instruction (the fork server its first pool starts, so
every worker forked from it later, and every `spawn` worker).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

POLL_S = 1.0  # how often a worker checks that the job's process is still there


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True  # no /proc (macOS): kill(0) is the answer


def exit_with(pid: int) -> None:
    if hasattr(signal, "SIGINT"):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the job's process answers Ctrl-C

    def watch() -> None:
        while alive(pid):
            time.sleep(POLL_S)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-job", daemon=True).start()


@contextlib.contextmanager
def ctrl_c_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread meanwhile (a Ctrl-C then goes to the process's other
    threads, or waits until the block ends): the processes started meanwhile, and the fork
    server with all its later children, never see it."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no Ctrl-C to a process group
        yield
        return
    # multiprocessing's resource tracker, started by a process's first pool, unblocks SIGINT
    # in the thread that starts it (it blocks it around its own start): started first.
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
