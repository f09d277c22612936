"""After a hangup: the terminal is gone, and every write to it fails (EIO).

SIGHUP (the SSH connection dropped, the terminal closed) asks a face to stop the way Ctrl-C
does: running jobs stop at their next tile and their state is kept. But the stop itself writes
(the last progress frame, the closing lines) to a terminal that no longer exists, and a write
that raises there aborted the stop half-way, leaving the job RUNNING on disk: a crash to the next
start. Pointing the terminal's file descriptors at /dev/null first makes those writes harmless;
output redirected to a file or a pipe (`--json > out.json`) is left alone.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
from typing import Any, TextIO


def is_terminal(fd: int) -> bool:
    """A terminal, hung up or not (`os.isatty` says False for one that hung up: its query of
    the terminal fails with EIO, where a file, a pipe or /dev/null fail with ENOTTY)."""
    try:
        if not stat.S_ISCHR(os.fstat(fd).st_mode):
            return False
        import termios  # POSIX only, like SIGHUP

        termios.tcgetattr(fd)
    except ImportError:
        return os.isatty(fd)
    except OSError:
        return False
    except Exception as exc:  # termios.error: (errno, message)
        return bool(exc.args) and exc.args[0] == errno.EIO
    return True


def detach_from_terminal(fds: tuple[int, ...] = (0, 1, 2)) -> list[int]:
    """Point each of `fds` that is a terminal at /dev/null; return the ones it moved."""
    moved = []
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in fds:
            if is_terminal(fd):
                os.dup2(null, fd)
                moved.append(fd)
    finally:
        os.close(null)
    return moved


class HangupAwareStream:
    """A face's terminal stream that takes a write or flush failing with EIO (the terminal hung
    up) as the hangup itself: the terminal's descriptors go to /dev/null (`detach_from_terminal`)
    and the process is sent the SIGHUP the hangup means, so the face stops as on a hangup (or
    goes on under `nohup`, which ignores it) instead of dying on the write. Seen in a test suite
    whose process had SIGHUP ignored (the disposition goes through exec): the hangup's SIGHUP
    was ignored, and `wsitui run` ended on its next write's OSError (exit 1) instead of going
    on as under `nohup`. Everything else is the wrapped stream's."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.hung_up = False

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            self._hang_up()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            self._hang_up()

    def _hang_up(self) -> None:
        if self.hung_up:
            return
        self.hung_up = True
        detach_from_terminal()
        hup = getattr(signal, "SIGHUP", None)
        if hup is not None:
            os.kill(os.getpid(), hup)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
