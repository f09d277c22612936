"""The test process ends once its results are in.

CI on 2026-12-06 printed "1642 passed ... in 1757.46s" and then did not end: it ran into its
90-minute limit an hour after pytest's summary, so the run did not count. Something the
process waited on at exit (a thread joined by Python's shutdown, a worker process joined by
`multiprocessing` or `concurrent.futures` at exit), or a process holding CI's output pipe, never
went away, and nothing said which.

So, from the end of the session on:
- a process still holding this process's output (CI's pipe: CI waits until every holder closes
  it) is named at once, with its command line, and ended if this session started it;
- if this process has not exited `GRACE_S` after its summary, every thread's stack and every
  child process is printed, and the process exits with pytest's own status (its results are
  all in by then; what hangs is named for a fix instead of a silent timeout).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.procs import live_processes, stat_fields

# A clean exit (pools shut down, threads joined) takes well under 10 s here; the variable is
# for this plugin's own test.
GRACE_S = float(os.environ.get("WSITUI_TEST_EXIT_GRACE_S", "120"))
_status = {"code": 1}
_session: list[pytest.Session] = []
# multiprocessing's own helpers end by themselves when this process does (their pipes close)
_SELF_ENDING = ("multiprocessing.resource_tracker import main", "multiprocessing.forkserver")


def pytest_sessionstart(session: pytest.Session) -> None:
    _session.append(session)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _status["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if _session:  # plugins may raise the status after sessionfinish (syrupy's unused snapshots)
        _status["code"] = int(_session[0].exitstatus)
    try:
        _end_leftovers()
    except Exception as exc:  # never the run's own failure: said, and the watch still starts
        _say(f"tests: could not look for processes holding the output: {exc!r}")
    threading.Thread(target=_watch, name="exit-watchdog", daemon=True).start()


def _end_leftovers() -> None:
    for pid, cmd, ours in _holding_my_output():
        # CI reads the output until every writer has closed it: one left behind holds CI until
        # its time limit. Ended when the tests started it (see `_holding_my_output`), never
        # what the harness started before pytest.
        if ours:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        done = "ended" if ours else "left running (not started by the tests)"
        _say(f"tests: process {pid} still held the test run's output, {done}: {cmd}")


def _watch() -> None:
    time.sleep(GRACE_S)
    _say(
        f"tests: the test process had not exited {GRACE_S:.0f} s after its last test; "
        "what it waits on (threads, then child processes) follows; exiting with pytest's status"
    )
    frames = sys._current_frames()
    for t in threading.enumerate():
        if t is threading.current_thread() or t.ident not in frames:
            continue
        kind = "daemon" if t.daemon else "joined at exit"
        _say(f"  thread {t.name!r} ({kind}):")
        _say("".join(traceback.format_stack(frames[t.ident])).rstrip())
    for pid, cmd in _processes(lambda stat: int(stat[1]) == os.getpid()):
        _say(f"  child {pid}: {cmd}")
    os._exit(_status["code"])


def _say(line: str) -> None:
    stream = sys.__stderr__ or sys.stderr
    print(line, file=stream, flush=True)


def _holding_my_output() -> list[tuple[int, str, bool]]:
    """(pid, command line, whether the tests started it) of the processes of this process's
    terminal session, or its descendants, other than it and its ancestors, with its stdout or
    stderr pipe open for writing: after the last test, only what the session left behind."""
    try:
        mine = {str(Path(f"/proc/self/fd/{fd}").readlink()) for fd in (1, 2)}
    except OSError:
        return []  # no /proc (macOS): nothing to check
    mine = {m for m in mine if m.startswith("pipe:")}  # a terminal or a file is not waited on
    if not mine:
        return []
    me, session = os.getpid(), os.getsid(0)
    ancestors = set(_chain(me))
    born = _started(me)
    found = []
    for pid, cmd in _processes(lambda stat: True):
        chain = _chain(pid)
        if pid in ancestors or (len(chain) > 1 and chain[1] == me and _self_ending(cmd)):
            continue  # this process's own multiprocessing helpers end when it does
        descendant = me in chain
        if not descendant and _sid(pid) != session:
            continue
        if any(_writes(fd, mine) for fd in _fds(pid)):
            # The tests': a descendant, or an orphan whose every ancestor short of init (or the
            # harness) started after pytest; a harness's heartbeat's `sleep` is not (its shell,
            # started before pytest, is its parent).
            late = all(_started(c) > born for c in chain if c not in ancestors)
            found.append((pid, cmd, descendant or late))
    return found


def _self_ending(cmd: str) -> bool:
    return any(s in cmd for s in _SELF_ENDING)


def _started(pid: int) -> int:
    """When `pid` started (clock ticks after boot; /proc stat field 22)."""
    try:
        return int(stat_fields(pid)[19])
    except (OSError, IndexError, ValueError):
        return 0


def _chain(pid: int) -> list[int]:
    """`pid` and its ancestors."""
    out = []
    while pid > 1 and pid not in out:
        out.append(pid)
        try:
            pid = int(stat_fields(pid)[1])
        except (OSError, IndexError, ValueError):
            break
    return out


def _sid(pid: int) -> int:
    try:
        return os.getsid(pid)
    except OSError:
        return -1


def _fds(pid: int) -> list[Path]:
    try:
        return list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return []


def _writes(fd: Path, pipes: set[str]) -> bool:
    """Whether `fd` (/proc/PID/fd/N) is one of `pipes` open for writing (a pipe's reader, CI's
    own, waits on nobody)."""
    try:
        if str(fd.readlink()) not in pipes:
            return False
        info = (fd.parent.parent / "fdinfo" / fd.name).read_text()
    except OSError:
        return False
    flags = next((ln.split()[1] for ln in info.splitlines() if ln.startswith("flags:")), "0")
    return int(flags, 8) & 3 != 0  # O_WRONLY or O_RDWR


def _processes(keep: Callable[[list[str]], bool]) -> list[tuple[int, str]]:
    """(pid, command line) of the live processes whose /proc stat fields after the name
    (state, ppid, ...) `keep` accepts."""
    return [
        (pid, cmd.replace(b"\0", b" ").decode(errors="replace")[:200])
        for pid, stat, cmd in live_processes()
        if keep(stat)
    ]
