"""`wsitui serve`: textual-serve over the TUI, with one session owning the data dir.

textual-serve starts one process per browser session. This server lets only one of them be
the TUI at a time: a second tab gets a notice app that says the data dir is in use (never a
second engine on the same data, never a crash). The tab process checks the data-dir lock as
well, so a `wsitui` already open in a terminal is answered the same way.

No authentication: it listens on loopback by default; reach it through an SSH tunnel.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from textual_serve.app_service import AppService
from textual_serve.server import Server, to_int

from wsitui.observability.server import MetricsError, bind
from wsitui.observability.setup import ObserveOptions
from wsitui.serve.tab import BUSY, data_dir_of

log = logging.getLogger("wsitui.serve")


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    config: Path | None = None
    data_dir: Path | None = None
    tenant: str | None = None
    observe: ObserveOptions = field(default_factory=ObserveOptions)


def tab_argv(opts: ServeOptions) -> list[str]:
    """The `wsitui` arguments each tab's TUI process gets."""
    argv: list[str] = []
    for flag, value in (
        ("--config", opts.config),
        ("--data-dir", opts.data_dir),
        ("--tenant", opts.tenant),
        ("--log-file", opts.observe.log_file),
    ):
        if value is not None:
            argv += [flag, str(Path(value).resolve()) if isinstance(value, Path) else value]
    if opts.observe.metrics_port is not None:
        argv += ["--metrics-port", str(opts.observe.metrics_port)]
        argv += ["--metrics-host", opts.observe.metrics_host]
    if opts.observe.log_json:
        argv.append("--log-json")
    return argv


def _command(*args: str) -> str:
    return shlex.join([sys.executable, "-m", *args])


class WsituiServer(Server):
    def __init__(self, opts: ServeOptions, sock: object) -> None:
        self.sock = sock
        host, port = sock.getsockname()[:2]  # type: ignore[attr-defined]
        shown = f"[{host}]" if ":" in str(host) else str(host)
        super().__init__(
            _command("wsitui.serve.tab", *tab_argv(opts)),
            host=str(host),
            port=int(port),
            title="wsitui",
            public_url=f"http://{shown}:{port}",
        )
        self.busy_command = _command(
            "wsitui.serve.notice_main",
            BUSY.format(dir=data_dir_of(opts.config, opts.data_dir) or "its data dir"),
        )
        self.owner: str | None = None  # the app service id of the tab that has the TUI

    async def on_startup(self, app: web.Application) -> None:
        print(
            f"wsitui serve: {self.public_url} (no authentication of its own; one browser tab "
            "at a time owns the data dir). Ctrl+C stops it.",
            flush=True,
        )

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        """textual-serve's handler, choosing per tab: the TUI, or the notice if it is taken."""
        websocket = web.WebSocketResponse(heartbeat=15)
        width = to_int(request.query.get("width", "80"), 80)
        height = to_int(request.query.get("height", "24"), 24)
        app_service: AppService | None = None
        try:
            await websocket.prepare(request)
            owner = self.owner is None
            app_service = AppService(
                self.command if owner else self.busy_command,
                write_bytes=websocket.send_bytes,
                write_str=websocket.send_str,
                close=websocket.close,
                download_manager=self.download_manager,
                debug=self.debug,
            )
            if owner:
                self.owner = app_service.app_service_id
            await app_service.start(width, height)
            try:
                await self._process_messages(websocket, app_service)
            finally:
                await app_service.stop()
        except asyncio.CancelledError:
            await websocket.close()
        except Exception as error:
            log.exception(error)
        finally:
            if app_service is not None:
                await app_service.stop()
                if self.owner == app_service.app_service_id:
                    self.owner = None  # after the process ended: the lock is free again
        return websocket

    def serve(self, debug: bool = False) -> None:
        """As textual-serve's, on the socket bound before (so a busy port is one line)."""
        self.debug = debug
        self.initialize_logging()
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_exit)
        web.run_app(
            self._make_app(),
            sock=self.sock,  # type: ignore[arg-type]
            handle_signals=False,
            loop=loop,
            print=lambda *args: None,
        )


def serve(opts: ServeOptions) -> int:
    try:
        sock = bind(opts.host, opts.port, what="address", flags=("--host", "--port"))
    except MetricsError as exc:
        print(f"wsitui serve: {exc}", file=sys.stderr)
        return 2
    WsituiServer(opts, sock).serve()
    return 0
