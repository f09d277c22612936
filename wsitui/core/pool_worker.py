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
broken (every tile of the job then on its own thread). A hang-up (SIGHUP: the terminal or SSH
connection went away, sent to the whole group too) killed every worker, the fork server and
multiprocessing's resource tracker, whose successor, started by the stopping job's process,
printed a traceback per semaphore it was told to forget. So pools are started inside
`terminal_signals_blocked()`: SIGINT and SIGHUP are blocked in the thread that starts the
processes, and a process inherits the blocking from its first instruction (the resource tracker
and the fork server the first pool starts, so every worker forked from it later, and every
`spawn` worker); the job's process answers both.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
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
def terminal_signals_blocked() -> Iterator[None]:
    """SIGINT and SIGHUP blocked in this thread meanwhile (they go to the process's other
    threads, or wait until the block ends): the processes started meanwhile, and the fork
    server and resource tracker with all their later children, never see them."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signals to a process group
        yield
        return
    from multiprocessing import resource_tracker

    signals = {signal.SIGINT, signal.SIGHUP}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        # multiprocessing's resource tracker, started by a process's first pool, blocks
        # SIGINT and SIGTERM around its start and then unblocks them in the calling thread:
        # started first (inheriting SIGHUP blocked), then blocked again.
        resource_tracker.ensure_running()
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def start_pool(
    processes: int, first: Callable[..., object], *args: object, preload: Iterable[str] = ()
) -> ProcessPoolExecutor:
    """`processes` worker processes of a job, started now, each running `first(*args)` before
    the job's first task reaches it. forkserver, not fork, where there is one: this process has
    threads (and CUDA once a GPU job ran), and a forked child of such a process may hang.
    `preload`: modules the fork server imports once, so each worker forked from it starts with
    them (no effect once a fork server runs). Each worker ends with the job's process
    (`exit_with`) and never sees a Ctrl-C or hang-up sent to the process group
    (`terminal_signals_blocked`)."""
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if preload and "forkserver" in methods:
        ctx.set_forkserver_preload(list(preload))
    with terminal_signals_blocked():  # the workers (and the fork server) start here
        pool = ProcessPoolExecutor(
            processes, mp_context=ctx, initializer=exit_with, initargs=(os.getpid(),)
        )
        for _ in range(processes):
            pool.submit(first, *args)
    return pool
