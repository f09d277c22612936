"""`wsitui serve`: textual-serve over the TUI, with one session owning the data dir.

textual-serve starts one process per browser session. This server lets only one of them be
the TUI at a time: a second tab gets a notice app that says the data dir is in use (never a
second engine on the same data, never a crash). The tab process checks the data-dir lock as
well, so a `wsitui` already open in a terminal is answered the same way.

Who may reach it (`access.py`): every route checks Host and Origin against the addresses serve
was started on, and the page and its socket need the token printed at start (`--no-token` turns
that off for those with their own authenticating proxy). It listens on loopback by default; a
non-loopback `--host` needs `--allow-remote`. Every tab's process is in a process group of its
own, ended when its socket ends and when serve stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
import sys
from asyncio.subprocess import Process
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from textual_serve.app_service import AppService
from textual_serve.server import Server, to_int

from wsitui.observability.server import MetricsError, bind
from wsitui.observability.setup import ObserveOptions
from wsitui.serve.access import Access, RedactToken, is_loopback, new_token
from wsitui.serve.tab import BUSY, data_dir_of

log = logging.getLogger("wsitui.serve")
# Loggers whose lines can hold a request's URL (and so the token): the access log, aiohttp's
# errors about a request, and serve's own refusals.
TOKEN_LOGGERS = ("aiohttp.access", "aiohttp.server", "aiohttp.web", "wsitui.serve")


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    config: Path | None = None
    data_dir: Path | None = None
    tenant: str | None = None
    observe: ObserveOptions = field(default_factory=ObserveOptions)
    token: bool = True  # --no-token: False
    allow_remote: bool = False
    allow_hosts: tuple[str, ...] = ()  # more names accepted as Host (a reverse proxy's)


QUIT_GRACE_S = 5.0  # a tab's app gets this long to quit when its socket ends, then SIGTERM
TERM_GRACE_S = 3.0  # and this long after SIGTERM, then SIGKILL


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
    # `exec`: the shell becomes the tab's Python, so the tab's parent is serve itself.
    return "exec " + shlex.join([sys.executable, "-m", *args])


class TabService(AppService):
    """textual-serve's app service, its process in a process group of its own (so the tab and
    anything it starts can be ended together), and `end()` that always ends it."""

    async def _open_app_process(self, width: int = 80, height: int = 24) -> Process:
        environment = self._build_environment(width=width, height=height)
        self._process = process = await asyncio.create_subprocess_shell(
            self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=environment,
            start_new_session=True,
        )
        assert process.stdin is not None
        self._stdin = process.stdin
        return process

    def _signal(self, sig: int) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)

    async def end(self) -> None:
        """Ask the app to quit; past QUIT_GRACE_S SIGTERM its group, past TERM_GRACE_S SIGKILL
        (an app that never started, or ignores both, still ends)."""
        process = self._process
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.stop(), QUIT_GRACE_S)
        if process is None:
            return
        for sig, grace in ((signal.SIGTERM, TERM_GRACE_S), (signal.SIGKILL, TERM_GRACE_S)):
            if process.returncode is not None:
                break
            self._signal(sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), grace)
        self._signal(signal.SIGKILL)  # anything the tab started in its group
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def kill_now(self) -> None:
        self._signal(signal.SIGKILL)


class WsituiServer(Server):
    def __init__(self, opts: ServeOptions, sock: object) -> None:
        self.sock = sock
        host, port = sock.getsockname()[:2]  # type: ignore[attr-defined]
        self.access = Access.for_bind(
            opts.host, int(port), new_token() if opts.token else None, opts.allow_hosts
        )
        self.tabs: set[TabService] = set()
        if str(host) in ("0.0.0.0", "::"):
            host = "127.0.0.1" if str(host) == "0.0.0.0" else "::1"  # what to print
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

    @property
    def start_url(self) -> str:
        token = self.access.token
        return f"{self.public_url}/" + (f"?token={token}" if token else "")

    async def on_startup(self, app: web.Application) -> None:
        guard = (
            "open it with its token"
            if self.access.token
            else "--no-token: NO authentication, only Host and Origin checks"
        )
        print(
            f"wsitui serve: {self.start_url} ({guard}; one browser tab at a time owns the "
            "data dir). Ctrl+C stops it.",
            flush=True,
        )

    async def on_shutdown(self, app: web.Application) -> None:
        """serve stops: every tab's process group ends with it."""
        tabs = list(self.tabs)
        await asyncio.gather(*(t.end() for t in tabs), return_exceptions=True)
        for t in tabs:
            t.kill_now()

    async def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(self.templates_path))
        app.add_routes(
            [
                web.get("/", self.handle_index, name="index"),
                web.get("/ws/{token}", self.handle_websocket, name="websocket"),
                web.get("/ws", self.handle_websocket),
                web.get("/download/{key}", self.handle_download, name="download"),
                web.static("/static", self.statics_path, name="static"),
            ]
        )
        app.on_startup.append(self.on_startup)
        app.on_shutdown.append(self.on_shutdown)
        return app

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Every route: Host and Origin must be ours; the page and the socket need the token."""
        why = self.access.refusal(request.headers.get("Host"), request.headers.get("Origin"))
        if (
            why is None
            and request.path == "/"
            and not self.access.token_ok(request.query.get("token"))
        ):
            why = "this page needs the token wsitui serve printed at start (?token=...)"
        if (
            why is None
            and request.path.startswith("/ws")
            and not self.access.token_ok(request.match_info.get("token"))
        ):
            why = "this socket needs the token wsitui serve printed at start"
        if why is not None:
            log.warning("wsitui serve: refused %s %s: %s", request.method, request.path, why)
            return web.Response(status=403, text=f"403 Forbidden: {why}\n")
        return await handler(request)

    @aiohttp_jinja2.template("app_index.html")
    async def handle_index(self, request: web.Request) -> dict[str, Any]:
        """textual-serve's page, its URLs on the host the browser asked for (never 0.0.0.0)."""
        font_size = to_int(request.query.get("fontsize", "16"), 16)
        base = f"{request.scheme}://{request.host}"
        ws_scheme = "wss" if request.scheme == "https" else "ws"
        ws_path = request.app.router["websocket"].url_for(token=self.access.token or "-")
        return {
            "font_size": font_size,
            "app_websocket_url": f"{ws_scheme}://{request.host}{ws_path}",
            "config": {"static": {"url": f"{base}/static/"}},
            "application": {"name": self.title},
        }

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        """textual-serve's handler, choosing per tab: the TUI, or the notice if it is taken."""
        websocket = web.WebSocketResponse(heartbeat=15)
        width = to_int(request.query.get("width", "80"), 80)
        height = to_int(request.query.get("height", "24"), 24)
        app_service: AppService | None = None
        try:
            await websocket.prepare(request)
            owner = self.owner is None
            app_service = TabService(
                self.command if owner else self.busy_command,
                write_bytes=websocket.send_bytes,
                write_str=websocket.send_str,
                close=websocket.close,
                download_manager=self.download_manager,
                debug=self.debug,
            )
            if owner:
                self.owner = app_service.app_service_id
            self.tabs.add(app_service)
            await app_service.start(width, height)
            await self._process_messages(websocket, app_service)
        except asyncio.CancelledError:
            await websocket.close()
        except Exception as error:
            log.exception(error)
        finally:
            if app_service is not None:
                await app_service.end()  # the socket ended: so does the tab's process
                self.tabs.discard(app_service)
                if self.owner == app_service.app_service_id:
                    self.owner = None  # after the process ended: the lock is free again
        return websocket

    def serve(self, debug: bool = False) -> None:
        """As textual-serve's, on the socket bound before (so a busy port is one line)."""
        self.debug = debug
        self.initialize_logging()
        if self.access.token:
            RedactToken(self.access.token).install(*TOKEN_LOGGERS)
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


def _unusable(opts: ServeOptions) -> str | None:
    """What would make every tab's TUI fail at once (a bad config, a data dir that is a
    file), said before serving: serve used to start, print its URL, and leave the error to
    each browser tab."""
    from wsitui.core.paths import UnusableDir, check_writable_dir
    from wsitui.session.config import ConfigError, load_config

    try:
        config = load_config(opts.config) if opts.config is not None else None
        data_dir = opts.data_dir or (config.paths.data_dir if config is not None else None)
        if data_dir is not None:
            check_writable_dir(data_dir, "data dir")
    except (ConfigError, UnusableDir) as exc:
        return str(exc)
    return None


def serve(opts: ServeOptions) -> int:
    from wsitui.core.text import one_line

    problem = _unusable(opts)
    if problem is not None:
        print(f"wsitui serve: {one_line(problem)}", file=sys.stderr)
        return 2
    if not is_loopback(opts.host) and not opts.allow_remote:
        print(
            f"wsitui serve: --host {opts.host} is not a loopback address: anyone who reaches it "
            "could drive the TUI; add --allow-remote to listen there anyway (the token is still "
            "required), or keep 127.0.0.1 and use an SSH tunnel",
            file=sys.stderr,
        )
        return 2
    try:
        sock = bind(opts.host, opts.port, what="address", flags=("--host", "--port"))
    except MetricsError as exc:
        print(f"wsitui serve: {exc}", file=sys.stderr)
        return 2
    observe = opts.observe
    if observe.metrics_port:  # (0: any free port, each tab its own)
        # Each tab's TUI serves the metrics: one it cannot bind (serve's own --port, or one
        # already taken) made every tab fail after the URL was printed. Try it once here.
        try:
            bind(observe.metrics_host, observe.metrics_port).close()
        except MetricsError as exc:
            sock.close()
            print(f"wsitui serve: {exc}", file=sys.stderr)
            return 2
    if not is_loopback(opts.host):  # after the bind: an address that fails gets one line
        print(
            f"wsitui serve: WARNING: listening on {opts.host}, beyond this machine: whoever "
            "has the URL with its token drives the TUI and its jobs (plain HTTP: use it on "
            "networks you trust, or behind a TLS proxy)",
            file=sys.stderr,
            flush=True,
        )
    WsituiServer(opts, sock).serve()
    return 0
