"""`wsitui serve` leaves no tab process behind (issue #26 item 2): a tab ends when its socket
does (even one closed before its app started), and every tab ends with serve (SIGTERM, and
SIGKILL too, through the tab's own watch on its parent)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import anyio
import pytest

from tests.procs import live_processes
from tests.serve.terminal import open_tab, start_serve

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def tab_pids(marker: Path) -> list[int]:
    """Live `python -m wsitui.serve.tab` processes whose arguments name `marker`."""
    want = (b"wsitui.serve.tab", str(marker).encode())
    return [pid for pid, _, cmd in live_processes() if all(w in cmd.split(b"\0") for w in want)]


async def _until(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    """Wait for `condition`; fail naming `what` after `timeout` s."""
    try:
        with anyio.fail_after(timeout):
            while not condition():
                await anyio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"no {what} within {timeout:.0f} s") from None


async def test_a_tab_whose_socket_closes_before_start_up_ends(tmp_path: Path):
    data = tmp_path / "data"
    server = start_serve("--data-dir", data)
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(server.ws_url())
            await _until(lambda: tab_pids(data), "tab process started")
            await ws.close()  # as a headless screenshot that leaves at once
        await _until(lambda: not tab_pids(data), "end of the tab process")
        assert server.proc.poll() is None  # serve itself goes on
    finally:
        server.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
async def test_tabs_end_with_serve(tmp_path: Path, sig: signal.Signals):
    data = tmp_path / "data"
    server = start_serve("--data-dir", data, "--tenant", "alice")
    try:
        async with open_tab(server) as tab:
            await tab.wait_for("tenant alice")
            pids = tab_pids(data)
            assert pids
            os.kill(server.proc.pid, sig)  # serve alone, not its group
            server.proc.wait(timeout=60)
            await _until(lambda: not tab_pids(data), f"end of the tabs after serve got {sig.name}")
    finally:
        for pid in tab_pids(data):  # never leave one behind, even when the test fails
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
        server.stop()


async def test_a_tab_app_that_ignores_quit_and_sigterm_is_still_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """What a tab spinning in its render loop looks like to serve: the quit message and SIGTERM
    change nothing. textual-serve's own stop() waits for it forever; end() does not."""
    import shlex
    import sys

    from textual_serve.download_manager import DownloadManager

    from wsitui.serve import server as srv

    monkeypatch.setattr(srv, "QUIT_GRACE_S", 0.5)
    monkeypatch.setattr(srv, "TERM_GRACE_S", 0.5)
    marker = tmp_path / "stubborn"
    code = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('started', flush=True); time.sleep(600)"
    )

    async def ignore(*_: object) -> None:
        return None

    tab = srv.TabService(
        "exec " + shlex.join([sys.executable, "-c", code, "wsitui.serve.tab", str(marker)]),
        write_bytes=ignore, write_str=ignore, close=ignore, download_manager=DownloadManager(),
    )  # fmt: skip
    await tab.start(80, 24)
    await _until(lambda: tab_pids(marker), "stubborn tab started")
    with anyio.fail_after(30):
        await tab.end()
    await _until(lambda: not tab_pids(marker), "end of the stubborn tab", timeout=10)
