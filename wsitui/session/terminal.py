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
import stat


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
