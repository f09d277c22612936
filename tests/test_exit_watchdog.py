"""The test process ends once its results are in (tests/exit_watchdog.py): a session that
leaves a thread Python's exit waits on for good, or a process holding its output pipe, is named
and the process exits with pytest's status, instead of CI waiting into its time limit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).parents[1]

HANGS = """
import subprocess, sys, threading

def test_passes():
    threading.Thread(target=threading.Event().wait, name="stuck-forever").start()  # not daemon

def test_leaves_a_process_with_the_output():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
"""


def _pytest(
    where: Path, test_file: str, *, grace_s: float, no_capture: bool = False
) -> subprocess.CompletedProcess[str]:
    """pytest with only the watchdog plugin on `where/test_file`, its grace `grace_s`."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *(["-s"] if no_capture else []), "-p",
         "tests.exit_watchdog", "-p", "no:cacheprovider", "--rootdir", str(where),
         str(where / test_file)],
        capture_output=True, text=True, timeout=120, cwd=where,
        env={**os.environ, "PYTHONPATH": str(REPO), "WSITUI_TEST_EXIT_GRACE_S": str(grace_s)},
    )  # fmt: skip


def test_a_session_that_would_hang_at_exit_ends_naming_what_it_waited_on(tmp_path: Path):
    (tmp_path / "test_hangs.py").write_text(HANGS)
    # Anywhere on the machine, a process whose name is not UTF-8 (it broke the look-up once)
    odd = tmp_path / os.fsdecode(b"sl\xff")
    shutil.copy("/bin/sleep", odd)
    other = subprocess.Popen([odd, "60"])
    started = time.monotonic()
    try:
        # -s: no capture, so the child below gets the run's real output pipe, as a process left
        # by a session-wide fixture or started outside capture would
        proc = _pytest(tmp_path, "test_hangs.py", grace_s=3, no_capture=True)
    finally:
        other.kill()
        other.wait()
    took = time.monotonic() - started
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out  # pytest's own status: both tests passed
    assert "could not look" not in out, out
    assert "2 passed" in out, out
    assert "still held the test run's output, ended" in out and "time.sleep(30)" in out, out
    assert "had not exited 3 s after its last test" in out, out
    assert "stuck-forever" in out, out  # the stuck thread's stack is printed
    assert took < 25, f"the run took {took:.0f} s (the pipe holder sleeps 30 s)"


def test_a_failing_session_keeps_its_failing_status(tmp_path: Path):
    (tmp_path / "test_fails.py").write_text(
        "import threading\n\ndef test_fails():\n"
        "    threading.Thread(target=threading.Event().wait).start()\n    assert False\n"
    )
    # and a status a plugin raises after the session's end (syrupy's unused snapshots) counts
    (tmp_path / "test_passes_but.py").write_text(
        "import threading\n\ndef test_passes():\n"
        "    threading.Thread(target=threading.Event().wait).start()\n"
    )
    (tmp_path / "conftest.py").write_text(
        "import pytest\n\n@pytest.hookimpl(trylast=True)\n"
        "def pytest_sessionfinish(session, exitstatus):\n"
        "    if 'test_passes_but' in str(session.config.args):\n"
        "        session.exitstatus = 1\n"
    )
    proc = _pytest(tmp_path, "test_passes_but.py", grace_s=2)
    assert proc.returncode == 1 and "1 passed" in proc.stdout, proc.stdout + proc.stderr
    assert "had not exited" in proc.stderr
    proc = _pytest(tmp_path, "test_fails.py", grace_s=2)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "had not exited" in proc.stderr


def test_what_ci_started_before_the_tests_is_named_never_ended(tmp_path: Path):
    """A process the harness started before pytest (a heartbeat, a service) holding the same
    output pipe is not the tests': named, left running, and so are the children it starts
    meanwhile (ending one ended the heartbeat's loop and failed the harness)."""
    (tmp_path / "test_ok.py").write_text("def test_ok():\n    pass\n")
    pidfile = tmp_path / "holder.pid"
    script = (
        # a heartbeat: a shell started before pytest, starting a `sleep` every 0.2 s (a child
        # started after pytest, but of a process that was not)
        f"( while sleep 0.2; do :; done ) & echo $! > {pidfile}; {sys.executable} -m pytest -q -p "
        f"tests.exit_watchdog -p no:cacheprovider --rootdir {tmp_path} {tmp_path / 'test_ok.py'}"
        "; exit $?"  # not exec'd by bash as its last command: pytest is the sleep's sibling
    )
    proc = subprocess.Popen(
        ["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        assert proc.wait(timeout=120) == 0
        holder = int(pidfile.read_text())
        assert _alive(holder), "the harness's own process was ended"
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), 9)
    out = proc.stdout.read()  # type: ignore[union-attr]
    assert "left running (not started by the tests)" in out and " ended" not in out, out


def _alive(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
