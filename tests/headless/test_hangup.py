"""`wsitui run` in a terminal that goes away (the SSH connection drops): the kernel sends
SIGHUP, and every later write to the terminal fails. The run must stop like Ctrl-C (jobs at
their next tile, state kept, exit 130), not die with its job RUNNING on disk (a crash to the
next start; two early ones fail the job) or with a traceback from writing to the dead terminal.
"""

from __future__ import annotations

import os
import pty
import signal
import sqlite3
import sys
import threading
import time

import pytest

from tests.headless.helpers import REPO, write_config
from tests.headless.test_run_cli import running_so_far, succeeded_so_far
from wsitui.session.terminal import detach_from_terminal, is_terminal

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX terminals only")


def _drain(fd: int, out: list[bytes]) -> None:
    """Read the terminal's output (a full pty buffer would block the program's writes) into
    `out`, for the failure message."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return
        if not chunk:
            return
        out.append(chunk)


def test_a_dropped_terminal_stops_the_run_like_ctrl_c_and_keeps_state(tmp_path, slides):
    jobs = "".join(
        f'  [[workflows.jobs]]\n  id = "m{i}"\n  type = "TISSUE_MASK"\n  slide = "{slides[0]}"\n'
        "  params = { tile_size = 64 }\n"
        for i in range(30)
    )
    config = write_config(tmp_path / "c.toml", f'[[workflows]]\ntenant = "t"\nname = "s"\n{jobs}')
    data = tmp_path / "data"
    argv = [sys.executable, "-m", "wsitui.cli", "run", str(config), "--data-dir", str(data)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm-256color"}
    pid, master = pty.fork()  # the child's controlling terminal is this pty, as over SSH
    if pid == 0:  # pragma: no cover - the child
        # As an SSH login starts it: SIGHUP at its default, nothing blocked. A disposition is
        # inherited through exec, and in full suite runs this test process had SIGHUP ignored
        # by something run before it: the child then kept running like under `nohup` (exit 0).
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        os.execve(sys.executable, argv, env)
    seen: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(master, seen), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        db = data / "state.db"
        while time.monotonic() < deadline and not (
            succeeded_so_far(db) >= 1 and running_so_far(db) >= 1
        ):
            time.sleep(0.1)
        assert running_so_far(db) >= 1, "no job ran"
    finally:
        os.close(master)  # the terminal goes away: SIGHUP to the child, its writes now fail
    deadline = time.monotonic() + 30
    while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.1)
    if done == (0, 0):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("wsitui run did not end within 30 s of its terminal going away")
    status = done[1]
    assert not os.WIFSIGNALED(status), f"killed by signal {os.WTERMSIG(status)}"
    tail = b"".join(seen)[-3000:].decode(errors="replace")
    code = os.WEXITSTATUS(status)
    assert code == 130, f"exit {code}; the terminal saw:\n{tail}"
    con = sqlite3.connect(db)
    rows = con.execute("SELECT state, crashes FROM jobs").fetchall()
    con.close()
    assert all(state != "RUNNING" for state, _ in rows), rows  # stopped, not left running
    assert all(crashes == 0 for _, crashes in rows), rows
    assert any(state == "PENDING" for state, _ in rows)  # the rest resumes next time


def test_detach_moves_only_terminals(tmp_path):
    """Output redirected to a file keeps going to the file after a hangup."""
    f = (tmp_path / "out.txt").open("w")
    r, w = os.pipe()
    try:
        assert not is_terminal(f.fileno()) and not is_terminal(r)
        assert detach_from_terminal((f.fileno(), r)) == []
        master, slave = pty.openpty()
        os.close(master)  # hung up: os.isatty says no, and yet it is the terminal to move
        try:
            assert is_terminal(slave)
            assert detach_from_terminal((slave,)) == [slave]
            assert not is_terminal(slave)  # now /dev/null
            os.write(slave, b"the last progress frame")  # harmless, where it raised EIO
        finally:
            os.close(slave)
    finally:
        f.close()
        os.close(r)
        os.close(w)
