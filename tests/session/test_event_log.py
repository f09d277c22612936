"""The JSONL event log: what it refuses to open, and a write that fails later."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from wsitui.core import eventlog
from wsitui.core.eventlog import EventLogError, JsonlEventLog
from wsitui.core.events import TenantAdmitted


def test_appends_to_an_existing_event_log_and_starts_an_empty_file(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"ts": 1, "event": "tenant_admitted", "tenant": "a"}\n')
    log = JsonlEventLog(path)
    log(TenantAdmitted(2.0, "b"))
    log.close()
    assert [json.loads(line)["tenant"] for line in path.read_text().splitlines()] == ["a", "b"]
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    JsonlEventLog(empty).close()


@pytest.mark.parametrize(
    "content",
    [b"II*\x00binary slide", b'{"not": "an event"}\n', b"[1, 2]\n", b"plain text\n"],
    ids=["tiff", "json_without_event", "json_array", "text"],
)
def test_refuses_to_append_to_a_file_that_is_not_an_event_log(tmp_path, content):
    path = tmp_path / "victim"
    path.write_bytes(content)
    with pytest.raises(EventLogError, match="not a wsitui event log"):
        JsonlEventLog(path)
    assert path.read_bytes() == content


def test_refuses_a_fifo_without_opening_it(tmp_path):
    fifo = tmp_path / "events.jsonl"
    os.mkfifo(fifo)
    raised: list[BaseException] = []

    def attempt() -> None:
        try:
            JsonlEventLog(fifo)
        except EventLogError as exc:
            raised.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=20)
    if worker.is_alive():  # it opened the FIFO and waits for a reader: unblock it, then fail
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        pytest.fail("opening a FIFO as the event log blocked")
    assert len(raised) == 1 and "FIFO" in str(raised[0])


def test_refuses_a_path_under_a_regular_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(EventLogError, match="not a directory"):
        JsonlEventLog(tmp_path / "f" / "events.jsonl")


def test_a_write_that_fails_later_stops_the_log_and_is_reported(tmp_path):
    path = tmp_path / "events.jsonl"
    log = JsonlEventLog(path)
    log(TenantAdmitted(1.0, "a"))
    # The disk fills up: from now on the file's descriptor writes to /dev/full.
    full = os.open("/dev/full", os.O_WRONLY)
    fileno = log._file.fileno() if log._file else -1
    os.dup2(full, fileno)
    os.close(full)
    log(TenantAdmitted(2.0, "b"))  # must not raise: the engine goes on
    log(TenantAdmitted(3.0, "c"))
    log.close()
    assert log.error is not None and "No space left on device" in log.error
    assert str(path) in log.error and "\n" not in log.error
    assert Path(path).read_text().count("\n") == 1  # what was written before is intact


_WRITER = """
import sys
from pathlib import Path
from wsitui.core.eventlog import JsonlEventLog
from wsitui.core.events import TenantAdmitted
log = JsonlEventLog(Path(sys.argv[1]))
n, width = int(sys.argv[3]), int(sys.argv[4])
for i in range(n):
    log(TenantAdmitted(float(i), sys.argv[2], passed_over=(sys.argv[2] * width,)))
log.close()
"""


def _writer(path: Path, name: str, n: int, width: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), name, str(n), str(width)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )


def test_a_line_is_written_under_the_files_lock(tmp_path):
    """Two runs sharing one `--events` file wrote without a lock: nothing kept one's line from
    landing inside the other's. A writer now waits for the lock another holds."""
    path = tmp_path / "events.jsonl"
    path.write_text('{"ts": 1, "event": "tenant_admitted", "tenant": "a"}\n')
    with path.open("a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        proc = _writer(path, "b", 1, 1)
        time.sleep(1.5)  # the writer starts and reaches its write (imports take ~0.3 s)
        waiting = proc.poll() is None
        lines_meanwhile = path.read_text().splitlines()
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
    assert proc.wait(timeout=30) == 0
    assert waiting and len(lines_meanwhile) == 1
    assert [json.loads(line)["tenant"] for line in path.read_text().splitlines()] == ["a", "b"]


def test_two_processes_writing_long_lines_to_one_log_never_mix_them(tmp_path):
    path = tmp_path / "events.jsonl"
    path.touch()
    procs = [_writer(path, name, 150, 40_000) for name in ("x", "y")]  # ~40 KB a line
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted((e["tenant"], e["ts"]) for e in events) == sorted(
        (name, float(i)) for name in ("x", "y") for i in range(150)
    )
    assert all(e["passed_over"] == [e["tenant"] * 40_000] for e in events)


def test_a_lock_held_for_good_is_waited_on_only_so_long(tmp_path, monkeypatch):
    """A writer stopped mid-line (SIGSTOP) must not stall this engine's event loop."""
    monkeypatch.setattr(eventlog, "LOCK_WAIT_S", 0.2)
    path = tmp_path / "events.jsonl"
    log = JsonlEventLog(path)
    with path.open("a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        start = time.monotonic()
        log(TenantAdmitted(2.0, "b"))
        waited = time.monotonic() - start
    log.close()
    assert 0.2 <= waited < 2.0
    assert json.loads(path.read_text())["tenant"] == "b" and log.error is None


def test_an_event_log_that_cannot_be_opened_for_writing_says_the_fix(tmp_path, monkeypatch):
    """On a read-only mount it said only "event log ev.jsonl cannot be written (Read-only
    file system)"."""
    import errno

    path = tmp_path / "ev.jsonl"
    path.write_text('{"ts": 1, "event": "tenant_admitted", "tenant": "a"}\n')
    real_open = os.open

    def read_only_mount(p, flags, *a):  # type: ignore[no-untyped-def]
        if flags & os.O_WRONLY:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(p, flags, *a)

    monkeypatch.setattr(eventlog.os, "open", read_only_mount)
    with pytest.raises(EventLogError) as err:
        JsonlEventLog(path)
    assert str(err.value) == (
        f"event log {path} cannot be written (Read-only file system); make it writable or give "
        "another path"
    )


def test_a_line_another_run_is_writing_is_not_taken_for_a_cut_one(tmp_path):
    """Opening the log while another run held the lock mid-line saw a line without its end
    and added a newline after it: an empty line in the middle of the log."""
    path = tmp_path / "events.jsonl"
    path.write_text('{"ts": 1, "event": "tenant_admitted", "tenant": "a"}\n')
    with path.open("a") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        other.write('{"ts": 2, "event": "tenant_admitted", ')  # its line, half written
        other.flush()
        proc = _writer(path, "b", 1, 1)
        time.sleep(1.5)
        other.write('"tenant": "c"}\n')  # the rest of it, then the lock goes
        other.flush()
        fcntl.flock(other.fileno(), fcntl.LOCK_UN)
    assert proc.wait(timeout=30) == 0
    lines = path.read_text().splitlines()
    assert [json.loads(line)["tenant"] for line in lines] == ["a", "c", "b"], lines


def test_a_lock_held_for_good_stalls_only_the_first_line_not_every_one(tmp_path, monkeypatch):
    """Each line waited the full LOCK_WAIT_S for a peer stopped holding the lock, on the
    engine's event loop: N events stalled it N x LOCK_WAIT_S. After one timed-out wait, lines
    go on at once (in order, none lost), and once the peer lets go they are locked again."""
    wait_s = 0.5
    monkeypatch.setattr(eventlog, "LOCK_WAIT_S", wait_s)
    path = tmp_path / "events.jsonl"
    log = JsonlEventLog(path)
    n = 20
    with path.open("a") as held:  # its own open file description: flock conflicts with ours
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        start = time.monotonic()
        for i in range(n):
            log(TenantAdmitted(float(i), "b"))
        took = time.monotonic() - start
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
        assert took < n * wait_s / 4, f"{n} events took {took:.1f} s"  # was >= 10 s
        log(TenantAdmitted(float(n), "b"))  # finds the lock free: the stall is over

        # The peer is back: a line waits for the lock again while it is briefly held.
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        held.write('{"ts": 99, "event": "tenant_admitted", "tenant": "peer"}\n')
        held.flush()
        timer = threading.Timer(0.2, fcntl.flock, (held.fileno(), fcntl.LOCK_UN))
        timer.start()
        start = time.monotonic()
        log(TenantAdmitted(100.0, "b"))
        waited = time.monotonic() - start
        timer.join()
    log.close()
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["ts"] for e in events] == [float(i) for i in range(n + 1)] + [99, 100.0]
    assert waited >= 0.15 and log.error is None
