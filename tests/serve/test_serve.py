"""`wsitui serve` over its websocket: the first tab gets the TUI, a second one a clear notice
(never a second engine on the data dir), and the TUI is free again once the first tab closes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tests.serve.terminal import Served, open_tab, start_serve
from wsitui.core.paths import DataDirLock
from wsitui.observability.server import bind

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

BUSY = "already open in another browser tab"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Served, Path]]:
    data = tmp_path / "data"
    server = start_serve("--data-dir", data, "--tenant", "alice")
    try:
        yield server, data
    finally:
        server.stop()


async def test_one_tab_owns_the_data_dir_a_second_gets_a_notice(served):
    server, _ = served
    async with open_tab(server) as first:
        text = await first.wait_for("tenant alice")  # the TUI drew its tenant bar
        assert "Traceback" not in text
        async with open_tab(server) as second:
            notice = await second.wait_for(BUSY)
            assert "One session owns a data dir at a time" in notice
            assert "Traceback" not in notice
        # The first tab's TUI is untouched by the second tab.
        assert not first.ws.closed
    # Once the first tab's TUI has stopped (it takes a moment), a new tab gets the TUI again.
    with anyio.fail_after(90):
        while True:
            async with open_tab(server) as again:
                if "tenant alice" in await again.wait_for("tenant alice", BUSY):
                    break
            await anyio.sleep(1)


async def test_a_data_dir_open_in_a_terminal_gives_the_notice_too(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    lock = DataDirLock(data)
    lock.acquire()  # as a `wsitui` in a terminal would
    server = start_serve("--data-dir", data)
    try:
        async with open_tab(server) as tab:
            await tab.wait_for(BUSY)
    finally:
        server.stop()
        lock.release()


def test_a_busy_port_is_one_line_and_exit_2(tmp_path):
    import subprocess
    import sys

    from tests.serve.terminal import REPO

    taken = bind("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "wsitui.cli", "--data-dir", str(tmp_path), "serve", "--port",
             str(port)],
            capture_output=True, text=True, timeout=60, cwd=REPO, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        taken.close()
    assert out.returncode == 2, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "--port" in lines[0]
