"""The `--metrics-port` endpoint: a tiny HTTP server on the engine's own event loop.

Serving from the loop (not a thread) means a scrape reads the engine and `Metrics` between two
engine commands, never halfway through one, and needs no locks. The socket is bound before the
engine starts, so a port in use is refused with one line before anything runs.

Only `GET /metrics` (and `/`) is answered; anything else gets 404. There is no authentication:
it listens on loopback unless `--metrics-host` says otherwise. The format follows the scrape's
`Accept` header: OpenMetrics when asked (`application/openmetrics-text`), else Prometheus text.

After a headless run the endpoint stays up `linger` seconds (default 5, `--metrics-linger`) so
the last scrape reads the final counts; it closes sooner once one scrape has read them, and at
once on Ctrl-C or SIGTERM (an interrupted run does not linger at all).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

log = logging.getLogger("wsitui.metrics")

MAX_REQUEST_BYTES = 8192  # a scrape's request line and headers fit in far less
READ_TIMEOUT_S = 10.0


class MetricsError(Exception):
    """The endpoint cannot listen: one line naming the address and the fix."""


def bind(
    host: str,
    port: int,
    *,
    what: str = "metrics endpoint",
    flags: tuple[str, str] = ("--metrics-host", "--metrics-port"),
) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port); `what` and `flags` name it
    in the one-line error."""
    host_flag, port_flag = flags
    if not 0 <= port <= 65535:
        raise MetricsError(f"{port_flag} {port}: not a TCP port; use 1-65535 (0: any free)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise MetricsError(
            f"{host_flag} {host}: unknown address ({exc.strerror}); use an IP such as 127.0.0.1"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(16)
    except OSError as exc:
        sock.close()
        raise MetricsError(
            f"{what} {host}:{port}: {exc.strerror or exc}; pick another {port_flag} (or stop "
            "what uses it)"
        ) from None
    sock.setblocking(False)
    return sock


class MetricsServer:
    def __init__(self, sock: socket.socket, registry: CollectorRegistry) -> None:
        self._sock = sock
        self._registry = registry
        self._server: asyncio.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._scraped: asyncio.Event | None = None  # set by a scrape while lingering
        host, port = sock.getsockname()[:2]
        self.host, self.port = str(host), int(port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def start(self) -> None:
        """Serve on the running loop until `aclose`."""
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, sock=self._sock)

    def start_soon(self) -> None:
        """`start` from synchronous code on the loop thread (e.g. a TUI's startup hook)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.start())

    async def linger(self, seconds: float) -> None:
        """Keep serving up to `seconds` so a last scrape reads the final counts: ends early
        after one scrape, and at once on SIGINT/SIGTERM (which then reach the face as before).
        Only from the main thread (elsewhere a signal could not end it): else no linger."""
        if self._server is None or seconds <= 0:
            return
        if threading.current_thread() is not threading.main_thread():
            return
        done = self._scraped = asyncio.Event()
        loop = asyncio.get_running_loop()
        restore = _on_stop_signals(lambda: loop.call_soon_threadsafe(done.set))
        log.info("metrics: final counts at %s for up to %g s (Ctrl-C ends it)", self.url, seconds)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), seconds)
        finally:
            restore()
            self._scraped = None

    async def aclose(self) -> None:
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        self.close()

    def close(self) -> None:
        """Release the port (also when the server never started)."""
        if self._server is not None:
            self._server.close()
        self._sock.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(self._read_head(reader), READ_TIMEOUT_S)
            parts = head.split(b"\r\n", 1)[0].split()
            method = parts[0] if parts else b""
            path = parts[1].split(b"?", 1)[0] if len(parts) > 1 else b""
            if method not in (b"GET", b"HEAD"):
                await self._send(writer, 405, b"only GET\n", "text/plain", method == b"HEAD")
            elif path in (b"/metrics", b"/"):
                encoder, ctype = choose_encoder(_header(head, b"accept"))
                body = encoder(self._registry)
                await self._send(writer, 200, body, ctype, method == b"HEAD")
                if self._scraped is not None and method == b"GET":
                    self._scraped.set()  # the final counts were read: lingering can end
            else:
                await self._send(writer, 404, b"try /metrics\n", "text/plain", method == b"HEAD")
        except (TimeoutError, ValueError, ConnectionError, asyncio.IncompleteReadError):
            pass  # a client that went away or sent garbage: nothing to answer
        except Exception:  # a scrape must never take the engine down
            log.exception("metrics request failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _read_head(reader: asyncio.StreamReader) -> bytes:
        head = b""
        while b"\r\n\r\n" not in head and b"\n\n" not in head:
            chunk = await reader.read(1024)
            if not chunk:
                break
            head += chunk
            if len(head) > MAX_REQUEST_BYTES:
                raise ValueError("request too large")
        return head

    @staticmethod
    async def _send(
        writer: asyncio.StreamWriter, status: int, body: bytes, ctype: str, head_only: bool
    ) -> None:
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}[status]
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        )
        if not head_only:
            writer.write(body)
        await writer.drain()


def _header(head: bytes, name: bytes) -> str:
    """One request header's value ("" when absent)."""
    for line in head.split(b"\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip().decode("latin-1")
    return ""


def _on_stop_signals(notify: Callable[[], object]) -> Callable[[], None]:
    """Call `notify` on SIGINT/SIGTERM besides what was installed (asyncio's handlers still
    run: they read the signal from their own wakeup fd); returns the undo."""
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: object) -> None:
        notify()
        prev = previous.get(signum)
        if callable(prev) and prev is not signal.default_int_handler:
            prev(signum, frame)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, prev in previous.items():
            signal.signal(sig, prev if prev is not None else signal.SIG_DFL)

    return restore
