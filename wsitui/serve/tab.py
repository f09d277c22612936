"""What one browser tab runs: the TUI, or a clear message when it cannot be opened.

`wsitui serve` starts `python -m wsitui.serve.tab ARGS` for each tab (ARGS: the TUI's options as
`wsitui` takes them, written by `server.tab_argv`). It runs the TUI itself, without going
through `wsitui.cli` (which imports serve: importing it back made a cycle).
A data dir already open (another tab, or a `wsitui` in a terminal) shows a notice instead of a
crash; so does any one-line error the TUI would print on the terminal before it starts.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
import threading
import time
from pathlib import Path

from wsitui.core.paths import DataDirInUse, DataDirLock, default_data_dir
from wsitui.core.text import one_line

BUSY = (
    "This data dir is already open in another browser tab or terminal:\n{dir}\n\n"
    "One session owns a data dir at a time. Close the other tab (or quit wsitui there),\n"
    "then reload this page."
)


class _Tee(io.TextIOBase):
    """Keeps what is written (the TUI's one-line errors) and passes it on."""

    def __init__(self, out: io.TextIOBase) -> None:
        self.out, self.kept = out, io.StringIO()

    def write(self, text: str) -> int:
        self.kept.write(text)
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()


def data_dir_of(config: Path | None, data_dir: Path | None) -> Path | None:
    """The data dir the TUI will open, as `prepare_session` picks it; None if it cannot tell
    (a bad config: the TUI itself then says what is wrong)."""
    if data_dir is not None:
        return data_dir
    if config is not None:
        from wsitui.session.config import load_config

        try:
            found = load_config(config).paths.data_dir
        except Exception:
            return None
        return found or default_data_dir()
    return default_data_dir()


def end_with_parent(poll_s: float = 1.0, grace_s: float = 3.0) -> threading.Thread:
    """A tab outlives no `wsitui serve`: once its parent is gone (killed, even with SIGKILL) the
    tab gets SIGTERM, and exits for good `grace_s` later."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(1)

    thread = threading.Thread(target=watch, name="end-with-serve", daemon=True)
    thread.start()
    return thread


def tab_parser() -> argparse.ArgumentParser:
    """The options `server.tab_argv` writes (serve checked their values already)."""
    p = argparse.ArgumentParser(prog="wsitui")
    p.add_argument("--config", type=Path)
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--tenant")
    p.add_argument("--metrics-port", type=int)
    p.add_argument("--metrics-host")
    p.add_argument("--log-file", type=Path)
    p.add_argument("--log-json", action="store_true")
    return p


def run_tui(args: argparse.Namespace) -> int:
    """The TUI as `wsitui` with these options runs it: library output to the log, no linger."""
    from wsitui.observability.libraries import route_library_output
    from wsitui.observability.setup import DEFAULT_METRICS_HOST, ObserveOptions
    from wsitui.tui.main import tui_main

    route_library_output()  # library warnings and logs to the wsitui log, never the terminal
    observe = ObserveOptions(
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host or DEFAULT_METRICS_HOST,
        log_file=args.log_file,
        log_json=args.log_json,
    )
    return tui_main(args.config, args.data_dir, args.tenant, observe=observe)


def main(argv: list[str]) -> int:
    from wsitui.serve.notice import show_notice

    args = tab_parser().parse_args(argv)
    where = data_dir_of(args.config, args.data_dir)
    if where is not None:
        try:
            DataDirLock(where).probe()
        except DataDirInUse:
            show_notice(BUSY.format(dir=where))
            return 0
    tee = _Tee(sys.stderr)  # type: ignore[arg-type]
    sys.stderr = tee  # type: ignore[assignment]
    try:
        code = run_tui(args)
    finally:
        sys.stderr = tee.out  # type: ignore[assignment]
    said = [one_line(line) for line in tee.kept.getvalue().splitlines() if line.strip()]
    if code != 0 and said:
        show_notice("wsitui could not open:\n\n" + "\n".join(said[-3:]))
    return code


if __name__ == "__main__":
    end_with_parent()
    sys.exit(main(sys.argv[1:]))
