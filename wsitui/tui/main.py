"""`wsitui [--config FILE]`: open the TUI over the session built from the config (or defaults)."""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from wsitui.core.records import check_safe_id
from wsitui.core.text import one_line
from wsitui.observability.setup import ObserveOptions
from wsitui.session.config import Config
from wsitui.session.errors import EXIT_INPUT, EXIT_INTERRUPTED, SessionError
from wsitui.session.session import Session, SessionOptions, prepare_session

if TYPE_CHECKING:
    from wsitui.tui.app import WsituiApp


def default_tenant(config: Config) -> str:
    if config.ui.tenant:
        return config.ui.tenant
    if config.workflows:
        return config.workflows[0].tenant
    try:
        user = re.sub(r"[^A-Za-z0-9_-]", "-", getpass.getuser()).strip("-")
    except (KeyError, OSError):
        user = ""
    return user[:64] or "default"


def build_app(session: Session, tenant: str | None, *, catch_signals: bool = False) -> WsituiApp:
    """The app over a prepared session, which it opens like every face (`Session.open`):
    config workflows submitted held, the event log and metrics attached before recovery."""
    from wsitui.tui.app import WsituiApp  # imports textual-image, which probes the terminal

    config = session.config
    chosen = tenant or default_tenant(config)
    app = WsituiApp(
        session.engine,
        tenant=chosen,
        image_protocol=config.ui.image_protocol,
        sample_dir=session.data_dir / "samples",
        session=session,  # event log, the shared Metrics, the job log; the config's workflows
        metrics=session.observability.metrics,  # the one source /metrics reads too
        # No tenant named anywhere (e.g. --data-dir alone): open on a tenant with work.
        pick_tenant=tenant is None and not config.ui.tenant and not config.workflows,
        reserved_names={w.name for w in config.workflows},  # never a demo's name
        catch_signals=catch_signals,
    )
    return app


def tui_main(
    config_path: Path | None,
    data_dir: Path | None,
    tenant: str | None,
    observe: ObserveOptions | None = None,
) -> int:
    try:
        if tenant is not None:
            check_safe_id("tenant", tenant)
    except ValueError as exc:
        print(f"wsitui: --tenant: {one_line(exc)}", file=sys.stderr)
        return EXIT_INPUT
    try:
        session = prepare_session(
            SessionOptions(
                config=config_path, data_dir=data_dir, observe=observe or ObserveOptions()
            ),
            lambda line: print(one_line(line), flush=True),
        )
    except SessionError as exc:
        print(f"wsitui: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("wsitui: interrupted before the TUI started; nothing was changed", file=sys.stderr)
        return EXIT_INTERRUPTED

    missing = no_terminal()
    if missing:
        session.close()
        print(
            f"wsitui: the TUI needs a terminal, and {missing} "
            f"{'are' if ' and ' in missing else 'is'} not one; run a config "
            "headless with `wsitui run CONFIG`, see a data dir with `wsitui status`, or use "
            "`wsitui serve` for a browser",
            file=sys.stderr,
        )
        return EXIT_INPUT
    app = build_app(session, tenant, catch_signals=True)
    try:
        app.run()
    finally:
        if app.stopping:  # the screen is gone; closing the session can take seconds
            _say(
                f"wsitui: {app.stopping} running job(s) stopped at a tile boundary and resume "
                "at the next start; closing the session…"
            )
        session.close()
    for warning in session.warnings():
        _say(f"wsitui: {one_line(warning)}")
    if app.signaled is not None:
        return 128 + app.signaled  # what a shell reports for a process its signal ended
    return app.return_code or 0


def no_terminal() -> str:
    """Which of stdin and stderr (Textual reads keys from one, draws on the other) is not a
    terminal ("" when both are). Run from a script, cron or CI, the TUI used to draw escape
    codes into a file and wait for keys forever. A driver named in TEXTUAL_DRIVER (`wsitui
    serve`'s browser session) brings its own terminal."""
    if os.environ.get("TEXTUAL_DRIVER"):
        return ""
    streams = (("stdin", sys.__stdin__), ("stderr", sys.__stderr__))
    return " and ".join(name for name, s in streams if s is None or not _isatty(s))


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):  # closed
        return False


def _say(line: str) -> None:
    """A line on stderr, if there still is one: after SIGHUP the terminal is gone, and a
    failed write must not keep the session from closing."""
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr, flush=True)
