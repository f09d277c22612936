"""Starting the TUI's image support on terminals users meet over SSH must not crash or scribble.

Each case imports the preview widgets (which ask the terminal about graphics) in a child process
whose stdout is a real pty that never answers a query, as a silent terminal does.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import sys
import termios
import time

import pytest

CHILD = "import wsitui.tui.widgets.preview as p; print('imported', p.ImageProtocol.__args__)"


def _run_on_pty(rows: int, cols: int, timeout: float = 120.0) -> tuple[int, str]:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its terminal
        os.execv(sys.executable, [sys.executable, "-c", CHILD])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    out = b""
    deadline = time.monotonic() + timeout
    status: int | None = None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        chunk = b""
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the pty
                chunk = b""
            out += chunk
        if status is None:
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status = code
        if status is not None and not chunk:  # exited and drained
            break
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail(f"the import did not finish in {timeout} s: {out[-500:]!r}")
    os.close(fd)
    assert status is not None
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


@pytest.mark.parametrize(
    ("rows", "cols"), [(0, 0), (24, 80)], ids=["zero-sized pty", "silent 80x24 terminal"]
)
def test_image_support_starts_on_an_unhelpful_terminal(rows: int, cols: int) -> None:
    code, out = _run_on_pty(rows, cols)
    assert code == 0, out
    assert "imported" in out
    assert "Traceback" not in out
    assert "Failed to get cell size" not in out
