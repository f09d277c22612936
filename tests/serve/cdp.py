"""A headless Chromium driven over the Chrome DevTools Protocol (no browser download: the
system's `chromium`), for testing and screenshotting `wsitui serve` in a real browser.

What the page receives over its websocket is read from the Network domain's frame events, so
a check sees exactly what the browser got, whatever renderer xterm.js picked.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from tests.serve.terminal import plain

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
)


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.received: list[str] = []  # terminal output the page got, decoded
        self.sent: list[str] = []  # what the page sent to the app (keys, resizes)
        self.loaded = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @property
    def text(self) -> str:
        return plain("".join(self.received))

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = msg.json()
            if "id" in data:
                future = self._waiting.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
                continue
            method, params = data.get("method"), data.get("params", {})
            if method == "Network.webSocketFrameReceived":
                frame = params["response"]
                payload = frame["payloadData"]
                if frame.get("opcode") == 2:
                    payload = base64.b64decode(payload).decode("utf-8", "replace")
                self.received.append(payload)
            elif method == "Network.webSocketFrameSent":
                self.sent.append(params["response"]["payloadData"])
            elif method == "Page.loadEventFired":
                self.loaded.set()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        key = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        await self.ws.send_json({"id": key, "method": method, "params": params})
        reply = await asyncio.wait_for(future, 60)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def wait_for_text(self, *needles: str, timeout: float = 60) -> str:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not any(n in self.text for n in needles):
            if loop.time() > end:
                raise AssertionError(f"{needles!r} never reached the page: {self.text[-1500:]!r}")
            await asyncio.sleep(0.2)
        return self.text

    async def press(self, key: str) -> None:
        """Type one character into the focused terminal, as a user's key press."""
        await self.send("Input.dispatchKeyEvent", type="keyDown", key=key, text=key)
        await self.send("Input.dispatchKeyEvent", type="keyUp", key=key)

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))


@contextlib.asynccontextmanager
async def browser(width: int = 1280, height: int = 800) -> AsyncIterator[Page]:
    """A fresh headless Chromium (its own profile dir) with one page, closed afterwards."""
    exe = chromium_path()
    if exe is None:
        raise RuntimeError("chromium is not installed (apt-get install chromium)")
    profile = Path(tempfile.mkdtemp(prefix="wsitui-chromium-"))
    proc = subprocess.Popen(
        [
            exe,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        for _ in range(600):  # Chromium writes its port here once it listens
            if port_file.is_file() and port_file.read_text().strip():
                break
            if proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {proc.returncode}")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json()
            page_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            async with http.ws_connect(page_url, max_msg_size=0) as ws:
                page = Page(ws)
                await page.send("Page.enable")
                await page.send("Network.enable")
                await page.send(
                    "Emulation.setDeviceMetricsOverride",
                    width=width,
                    height=height,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                yield page
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)


async def open_served(page: Page, url: str) -> None:
    """Load the served page (`url`: the one serve printed, with its token) and focus its
    terminal (where xterm.js takes key presses)."""
    await page.send("Page.navigate", url=url)
    await asyncio.wait_for(page.loaded.wait(), 60)
    for _ in range(100):
        found = await page.send(
            "Runtime.evaluate",
            expression="(() => { const t = document.querySelector('.xterm-helper-textarea');"
            " if (t) { t.focus(); return true; } return false; })()",
            returnByValue=True,
        )
        if found.get("result", {}).get("value"):
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the page never made its terminal")
