"""A face's terminal stream after a hangup: a write failing with EIO is the hangup itself."""

from __future__ import annotations

import errno
import io
import signal

import pytest

from wsitui.session import terminal
from wsitui.session.terminal import HangupAwareStream

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX terminals only")


class _DeadTerminal(io.StringIO):
    def __init__(self, err: int) -> None:
        super().__init__()
        self.err = err

    def write(self, text: str) -> int:
        raise OSError(self.err, "write failed")

    def flush(self) -> None:
        raise OSError(self.err, "flush failed")

    def isatty(self) -> bool:
        return True


def test_eio_detaches_and_sends_the_hangup_once(monkeypatch: pytest.MonkeyPatch):
    calls: list[object] = []
    monkeypatch.setattr(terminal, "detach_from_terminal", lambda: calls.append("detach"))
    monkeypatch.setattr(terminal.os, "kill", lambda pid, sig: calls.append(sig))
    stream = HangupAwareStream(_DeadTerminal(errno.EIO))  # type: ignore[arg-type]
    assert stream.isatty()  # everything else is the wrapped stream's
    assert stream.write("frame") == 5
    stream.flush()
    assert stream.write("next") == 4
    assert stream.hung_up and calls == ["detach", signal.SIGHUP]


def test_other_write_errors_are_not_a_hangup(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(terminal.os, "kill", lambda pid, sig: pytest.fail("no hangup"))
    stream = HangupAwareStream(_DeadTerminal(errno.ENOSPC))  # type: ignore[arg-type]
    with pytest.raises(OSError, match="write failed"):
        stream.write("x")
    assert not stream.hung_up
