"""`wsitui` command line: the TUI by default; run, status, sample and model as subcommands."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def _interrupted_while_starting(signum: int, frame: object) -> None:
    sys.stderr.write("wsitui: interrupted while starting; nothing was run\n")
    os._exit(130)


# Run as the program (not imported by a test): a Ctrl-C during the slow imports below ends the
# process in one line, not a traceback. Each command takes Ctrl-C over once it can answer it.
_PROGRAM = __name__ == "__main__" or Path(sys.argv[0]).name == "wsitui"
if _PROGRAM and hasattr(signal, "SIGINT"):
    signal.signal(signal.SIGINT, _interrupted_while_starting)

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from typing import TYPE_CHECKING, NoReturn  # noqa: E402

from wsitui import __version__  # noqa: E402
from wsitui.core.paths import path_arg as _path  # noqa: E402
from wsitui.models.cli import add_model_commands  # noqa: E402  # cheap: no torch at parser build
from wsitui.slides.synthetic.mpp import MPP, offered  # noqa: E402  # no numpy

if TYPE_CHECKING:
    from wsitui.observability.setup import ObserveOptions


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0-65535)")
    return port


def _tenant(text: str) -> str:
    """A tenant id from the command line, held to the same alphabet as everywhere else: an id
    like `../x` is a mistake to name, not a tenant to look for."""
    from wsitui.core.records import SAFE_ID, SAFE_ID_HINT

    if not SAFE_ID.match(text):
        raise argparse.ArgumentTypeError(f"tenant {text!r} is not allowed: {SAFE_ID_HINT}")
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0-3600)")
    return value


def _observe_options(p: argparse.ArgumentParser, *, suppress: bool) -> None:
    """--metrics-port/--metrics-host/--log-file/--log-json, before or after a subcommand."""
    kw = {"default": argparse.SUPPRESS} if suppress else {}
    p.add_argument(
        "--metrics-port",
        type=_port,
        help="serve Prometheus metrics on this port (off by default; 0: any free port)",
        **kw,
    )
    p.add_argument(
        "--metrics-host", help="address for --metrics-port (default 127.0.0.1: loopback)", **kw
    )
    p.add_argument(
        "--metrics-linger",
        type=_seconds,
        metavar="SECONDS",
        help="`run`: keep --metrics-port up this long after the run for a last scrape (default "
        "5; ends after one scrape or on Ctrl-C; 0: close at once)",
        **kw,
    )
    p.add_argument(
        "--log-file", type=_path, help="append structured logs (ids on every line) here", **kw
    )
    p.add_argument(
        "--log-json",
        action="store_true",
        help="logs as JSON lines (headless without --log-file: on stderr)",
        **kw,
    )


class _Parser(argparse.ArgumentParser):
    """Usage mistakes in one line plus a `--help` hint (exit 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        from wsitui.core.text import one_line

        self.exit(2, f"{self.prog}: {one_line(message)}; see `{self.prog} --help`\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="wsitui",
        description="Long tile-based inference on whole-slide images, from a terminal.",
    )
    p.add_argument("--version", action="version", version=f"wsitui {__version__}")
    p.add_argument("--config", type=_path, help="TOML config for the TUI (see sample_config.toml)")
    p.add_argument("--data-dir", type=_path, help="state and results (default: XDG data dir)")
    p.add_argument("--tenant", type=_tenant, help="tenant to show first in the TUI")
    _observe_options(p, suppress=False)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the workflows of a TOML config headless")
    run.add_argument("config", type=_path, help="TOML config (see sample_config.toml)")
    run.add_argument("--data-dir", type=_path, default=argparse.SUPPRESS, help="state and results")
    run.add_argument("--out", type=_path, help="results root (default: DATA_DIR/results)")
    run.add_argument("--events", type=_path, help="append a JSONL event log to this file")
    run.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    run.add_argument("--quiet", action="store_true", help="print nothing but errors")
    run.add_argument(
        "--verbose", action="store_true", help="a cohort's jobs one by one, not one line"
    )
    _observe_options(run, suppress=True)

    serve = sub.add_parser(
        "serve", help="serve the TUI in a browser (textual-serve; a token in the URL it prints)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="listen address (default loopback)")
    serve.add_argument(
        "--allow-remote", action="store_true", help="allow a non-loopback --host (prints a warning)"
    )
    serve.add_argument(
        "--allow-host", action="append", default=[], metavar="NAME",
        help="also accept this Host name (a reverse proxy's); repeatable",
    )  # fmt: skip
    serve.add_argument(
        "--no-token", action="store_true", help="no token (only behind your own auth proxy)"
    )
    serve.add_argument("--port", type=_port, default=8000, help="listen port (default 8000)")
    serve.add_argument("--config", type=_path, default=argparse.SUPPRESS, help="TOML config")
    serve.add_argument("--data-dir", type=_path, default=argparse.SUPPRESS, help="state dir")
    serve.add_argument(
        "--tenant", type=_tenant, default=argparse.SUPPRESS, help="tenant shown first"
    )
    _observe_options(serve, suppress=True)

    status = sub.add_parser("status", help="list the data dir's workflows and jobs per tenant")
    status.add_argument("--data-dir", type=_path, default=argparse.SUPPRESS, help="state dir")
    status.add_argument("--tenant", type=_tenant, help="only this tenant")
    status.add_argument("--out", type=_path, help="results root, if run used --out")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--verbose", action="store_true", help="a cohort's jobs one by one, not one line"
    )

    add_model_commands(sub)

    sample = sub.add_parser("sample", help="write a synthetic H&E-like Aperio SVS slide")
    sample.add_argument("out", type=_path, help="output path, e.g. demo.svs")
    # No default here: the sample module (numpy, scipy) would be imported by every command
    # to build the parser; `_sample` fills in its DEFAULT_SIZE.
    sample.add_argument("--size", default=None, help="WxH in pixels (default 8192x6144)")
    sample.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    # argparse reads '%' in a help text as a format: the 2% must be written %%.
    sample.add_argument(
        "--mpp", type=float, default=MPP, help=f"µm per px: {offered(MPP)}".replace("%", "%%")
    )
    sample.add_argument(
        "--force", action="store_true", help="replace an existing slide and truth file"
    )
    _view_parser(sub)
    return p


def _view_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    view = sub.add_parser("view", help="pan and zoom a slide with tissue and cell overlays")
    view.add_argument("slide", type=_path, help="slide file (SVS, tiled TIFF, ...)")
    view.add_argument("--cells", type=_path, help="cells.geojson[.gz] (a SEGMENT_CELLS output)")
    view.add_argument("--tissue", type=_path, help="tissue.geojson (a TISSUE_MASK output)")
    view.add_argument("--snapshot", type=_path, help="write the view of --region to this PNG")
    view.add_argument("--region", help="X,Y,W,H in level-0 px for --snapshot (default: all)")
    view.add_argument("--width", type=int, help="--snapshot width in px (default 1280)")
    view.add_argument(
        "--image-protocol", choices=("auto", "sixel", "tgp", "halfcell"), default="auto"
    )
    view.add_argument("--cache-mb", type=float, default=256, help="decoded tile cache (MB)")


# Options whose value may start with '-': argparse takes `--region -500,-500,5000,4000` (a view
# reaching left of and above the slide) for two options, "expected one argument".
_NEGATIVE_VALUE_OPTIONS = frozenset({"--region"})
_NEGATIVE = re.compile(r"-[0-9.]")


def _attach_negative_values(argv: list[str]) -> list[str]:
    """`--region -500,...` as `--region=-500,...`, which argparse reads as the value. Only a
    value that starts with '-' and a digit or '.': an option after `--region` stays one."""
    out = list(argv)
    i = 0
    while i < len(out) - 1 and out[i] != "--":
        if out[i] in _NEGATIVE_VALUE_OPTIONS and _NEGATIVE.match(out[i + 1]):
            out[i : i + 2] = [f"{out[i]}={out[i + 1]}"]
        i += 1
    return out


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a reader that went away
EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug of wsitui's own, not the user's input


def main(argv: list[str] | None = None) -> int:
    from wsitui.observability.libraries import route_library_output

    route_library_output()  # library warnings and logs to the wsitui log, never the terminal
    args = _parser().parse_args(_attach_negative_values(sys.argv[1:] if argv is None else argv))
    if _PROGRAM and args.command != "run":  # `run` takes Ctrl-C over itself, after its imports
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = _dispatch(args)
        if _PROGRAM and args.command in ("run", None):
            _exit_without_lingering_threads(code)
        return code
    except BrokenPipeError:
        # The reader of our output left early (`wsitui status --json | head`): stop quietly,
        # and keep the interpreter's final flush from printing the same error again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        if not _PROGRAM:  # a test calling main() sees the exception itself
            raise
        return _internal_error(f"wsitui {args.command}" if args.command else "wsitui", exc)


def _internal_error(prefix: str, exc: Exception) -> int:
    """Input that no check foresaw reached a bug: one line naming it and a file holding the
    traceback, never 40 lines of it on the user's terminal. Every expected problem has its
    own one-line error; this is the net under them."""
    import tempfile
    import traceback

    from wsitui.core.text import one_line

    where = "not saved"
    try:
        with tempfile.NamedTemporaryFile(
            "w", prefix="wsitui-error-", suffix=".txt", delete=False
        ) as f:
            traceback.print_exception(exc, file=f)
            where = f"in {f.name}"
    except OSError:
        pass
    print(
        f"{prefix}: internal error ({type(exc).__name__}: {one_line(exc)}); this is a "
        f"bug, please report it with the traceback ({where})",
        file=sys.stderr,
    )
    return EXIT_INTERNAL


LINGER_S = 0.5  # how long the end of the program waits for worker threads to finish


def _exit_without_lingering_threads(code: int) -> None:
    """The engine has closed; the interpreter would now join every non-daemon thread, so a
    worker thread blocked in a job the engine left behind (it ignored its stop) would hold the
    process for as long as it blocks. Give threads a moment, then exit without them."""
    deadline = time.monotonic() + LINGER_S
    for thread in threading.enumerate():
        if thread is threading.current_thread() or thread.daemon:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
    left = [t for t in threading.enumerate() if t.is_alive() and not t.daemon]
    left = [t for t in left if t is not threading.current_thread()]
    if not left:
        return
    print(
        f"wsitui: {len(left)} worker thread(s) still busy in a job that ignored its stop; "
        "exiting without waiting for them (state is saved)",
        file=sys.stderr,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _observe(args: argparse.Namespace, *, headless: bool) -> ObserveOptions:
    from wsitui.observability.setup import (
        DEFAULT_METRICS_HOST,
        DEFAULT_METRICS_LINGER_S,
        ObserveOptions,
    )

    linger = getattr(args, "metrics_linger", None)
    return ObserveOptions(
        metrics_port=args.metrics_port,
        metrics_linger=(DEFAULT_METRICS_LINGER_S if linger is None else linger) if headless else 0,
        metrics_host=args.metrics_host or DEFAULT_METRICS_HOST,
        log_file=args.log_file,
        log_json=args.log_json,
        # Headless may log to stderr; the TUI never writes over its own screen.
        log_to_stderr=headless and args.log_json and args.log_file is None,
        errors_to_stderr=headless,
    )


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return a.samefile(b)
        return a.resolve() == b.resolve()
    except (OSError, ValueError):  # a NUL or a loop: the option's own check names it
        return False


def _file_clash(args: argparse.Namespace) -> str | None:
    """Two options naming one file: `--log-file` appended log lines to the config it named
    (the next run could not read it) or into the `--events` log (no longer replayable)."""
    named = [
        ("the config file", getattr(args, "config", None)),
        ("the --events file", getattr(args, "events", None)),
        ("--log-file", getattr(args, "log_file", None)),
    ]
    named = [(what, path) for what, path in named if path is not None]
    for i, (what, path) in enumerate(named):
        for other, other_path in named[i + 1 :]:
            if _same_file(path, other_path):
                return (
                    f"{other} {other_path} is {what} too; give each its own file (a log or "
                    "event log written into it would spoil it)"
                )
    return None


def _dispatch(args: argparse.Namespace) -> int:
    clash = _file_clash(args)
    if clash is not None:
        from wsitui.core.text import one_line

        print(f"wsitui: {one_line(clash)}", file=sys.stderr)
        return 2
    if args.command == "run":
        from wsitui.headless.run import RunOptions, run

        return run(
            RunOptions(
                config=args.config,
                data_dir=args.data_dir,  # before or after the subcommand
                out=args.out,
                events=args.events,
                json=args.json,
                quiet=args.quiet,
                verbose=args.verbose,
                observe=_observe(args, headless=True),
                program=_PROGRAM,
            )
        )
    if args.command == "serve":
        from wsitui.serve.server import ServeOptions, serve

        return serve(
            ServeOptions(
                host=args.host,
                port=args.port,
                config=args.config,
                data_dir=args.data_dir,
                tenant=args.tenant,
                observe=_observe(args, headless=False),
                token=not args.no_token,
                allow_remote=args.allow_remote,
                allow_hosts=tuple(args.allow_host),
            )
        )
    if args.command == "status":
        from wsitui.headless.status import status

        return status(
            args.data_dir, tenant=args.tenant, as_json=args.json, out=args.out, verbose=args.verbose
        )
    if args.command == "sample":
        return _sample(args.out, args.size, args.seed, force=args.force, mpp=args.mpp)
    if args.command == "view":
        from wsitui.viewer.cli import no_terminal_line, view_main

        code = view_main(args)  # --snapshot, or a bad option
        if code is not None:
            return code
        from wsitui.tui.main import no_terminal

        missing = no_terminal()
        if missing:
            return no_terminal_line(missing)
        from wsitui.tui.screens.viewer import run_viewer

        return run_viewer(args.slide, args.cells, args.tissue, args.image_protocol, args.cache_mb)
    if args.command == "model":
        from wsitui.models.cli import run_model_command

        return run_model_command(args)
    from wsitui.tui.main import tui_main

    return tui_main(args.config, args.data_dir, args.tenant, observe=_observe(args, headless=False))


def _sample(out: Path, size_text: str | None, seed: int, *, force: bool, mpp: float = MPP) -> int:
    from wsitui.core.text import one_line
    from wsitui.slides.errors import SlideError
    from wsitui.slides.sample import DEFAULT_SIZE, parse_size, truth_path_for, write_sample_slide

    try:
        size = DEFAULT_SIZE if size_text is None else parse_size(size_text)
        write_sample_slide(out, size=size, seed=seed, force=force, mpp=mpp)
    except (ValueError, SlideError, OSError) as exc:
        print(f"wsitui sample: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wsitui sample: interrupted; nothing was written", file=sys.stderr)
        return 130
    truth = truth_path_for(out)
    print(json.dumps({"slide": str(out), "size": list(size), "seed": seed, "truth": str(truth)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
