"""The test process ends once its results are in (tests/exit_watchdog.py): a session that
leaves a thread Python's exit waits on for good, or a process holding its output pipe, is named
and the process exits with pytest's status, instead of CI waiting into its time limit."""

from __future__ import annotations

import os
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


def test_a_session_that_would_hang_at_exit_ends_naming_what_it_waited_on(tmp_path: Path):
    (tmp_path / "test_hangs.py").write_text(HANGS)
    started = time.monotonic()
    proc = subprocess.run(
        # -s: no capture, so the child below gets the run's real output pipe, as a process left
        # by a session-wide fixture or started outside capture would
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "tests.exit_watchdog", "-p",
         "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path / "test_hangs.py")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "WSITUI_TEST_EXIT_GRACE_S": "3"},
    )  # fmt: skip
    took = time.monotonic() - started
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out  # pytest's own status: both tests passed
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
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.exit_watchdog", "-p",
         "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path / "test_fails.py")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "WSITUI_TEST_EXIT_GRACE_S": "2"},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "had not exited" in proc.stderr
