"""Driving `wsitui serve` from tests: the server process, tabs over its websocket, and the
terminal output they receive as plain text."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[2]

_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI (colours, cursor moves)
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC
    r"|\x1bP.*?\x1b\\"  # DCS (sixel, queries)
    r"|\x1b[@-Z\\-_]"  # other two-byte escapes
    r"|\x1b[()][0-9A-Za-z]",
    re.DOTALL,
)


def plain(data: str) -> str:
    """Terminal output without escape sequences (text of one span stays together)."""
    return _ESCAPES.sub("", data)


@dataclass
class Served:
    """A `wsitui serve` subprocess in its own process group."""

    proc: subprocess.Popen[str]
    url: str  # the origin, http://HOST:PORT
    token: str  # "" with --no-token
    banner: str = ""  # the line serve printed with its URL

    @property
    def page_url(self) -> str:
        """The URL serve printed: the page, with its token."""
        return f"{self.url}/" + (f"?token={self.token}" if self.token else "")

    def ws_url(self, width: int = 120, height: int = 36, token: str | None = None) -> str:
        token = self.token if token is None else token
        ws = self.url.replace("http://", "ws://") + (f"/ws/{token}" if token else "/ws")
        return ws + f"?width={width}&height={height}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # tab processes left behind, if any
        self.proc.wait(timeout=15)


def start_serve(*args: str | Path, timeout: float = 60) -> Served:
    """Start `wsitui ARGS serve --port 0 SERVE_ARGS` and wait for the line with its URL."""
    return start_serve_with(args, (), timeout)


def start_serve_with(
    args: tuple[str | Path, ...], serve_args: tuple[str, ...], timeout: float = 60
) -> Served:
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsitui.cli", *map(str, args), "serve", "--port", "0", *serve_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        start_new_session=True,
    )
    found: list[tuple[str, str, str]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if m := re.search(r"(http://\S+?:\d+)/(?:\?token=([\w-]+))?", line):
                found.append((m.group(1), m.group(2) or "", line))
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not found:
        proc.kill()
        raise AssertionError(
            f"wsitui serve did not start: {proc.stderr.read() if proc.stderr else ''}"
        )
    return Served(proc, *found[0])


class Tab:
    """A browser tab's websocket to the served app, without the browser."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.raw: list[str] = []

    @property
    def text(self) -> str:
        return plain("".join(self.raw))

    async def wait_for(self, *needles: str, timeout: float = 60) -> str:
        """Read until one of `needles` is in the text; return the text."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not any(n in self.text for n in needles):
            left = end - loop.time()
            if left <= 0:
                raise AssertionError(f"{needles!r} never came; got: {self.text[-2000:]!r}")
            try:
                msg = await asyncio.wait_for(self.ws.receive(), left)
            except TimeoutError:
                continue
            if msg.type == aiohttp.WSMsgType.BINARY:
                self.raw.append(msg.data.decode("utf-8", "replace"))
            elif msg.type != aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"tab closed before {needles!r}: {self.text[-2000:]!r}")
        return self.text


@contextlib.asynccontextmanager
async def open_tab(served: Served, width: int = 120, height: int = 36) -> AsyncIterator[Tab]:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(served.ws_url(width, height)) as ws,
    ):
        await ws.send_json(["resize", {"width": width, "height": height}])
        yield Tab(ws)
