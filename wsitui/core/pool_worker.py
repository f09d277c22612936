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
"""

from __future__ import annotations

import os
import signal
import threading
import time
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
