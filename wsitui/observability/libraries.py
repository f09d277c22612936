"""Library chatter goes to the wsitui log, never onto the terminal: the one place that says so.

Two kinds of noise reached the screen (the TUI's exit, `wsitui run`'s progress display, stderr
of a successful run):

- Python warnings of the libraries we run, e.g. torch's "Sparse CSR tensor support is in beta"
  (instanseg's post-processing, once per process). `route_library_output()` turns on
  `logging.captureWarnings`, so every warning becomes a record of the `py.warnings` logger, and
  known ones (`KNOWN_WARNINGS`) are shown once per process instead of once per place.
- Dask distributed's own log handlers: `import distributed` adds a stderr handler to its
  loggers, so a lost scheduler printed a 33-line `distributed.client` traceback beside the job's
  one-line error. `route_library_output()` replaces the handlers of `LIBRARY_LOGGERS`.

Either way the records go to the handlers of the `wsitui` logger that write the log
(`--log-file`, or `--log-json` on stderr when asked), never to the errors-only stderr handler
of a headless run (it carries the `LibraryRecordsOnly` filter, which keeps them off it), and
nowhere at all without a log. Every face calls `route_library_output()` at start (the CLI's
`main`; in serve's tab processes `serve.tab.run_tui`), and the Dask backend calls it again
after importing distributed (whose import re-adds its handler). Idempotent; no heavy import.
"""

from __future__ import annotations

import logging
import warnings

LOGGER = "wsitui"  # the wsitui log (see logs.py)
LIBRARY_LOGGERS = ("py.warnings", "distributed", "tornado", "bokeh")
# (message regex, category): warnings of libraries we know and cannot act on.
KNOWN_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    (r"Sparse CSR tensor support is in beta", UserWarning),  # torch, via instanseg
    (r"TypedStorage is deprecated", UserWarning),  # torch, old TorchScript files
    (r"The given NumPy array is not writable", UserWarning),  # torch.from_numpy on a view
    (r"Port \d+ is already in use", UserWarning),  # distributed's dashboard fallback
)
_LIBRARY = "_wsitui_library"  # set on records forwarded from a library logger


class _ToWsituiLog(logging.Handler):
    """A library logger's only handler: its records go to the wsitui log's handlers."""

    def emit(self, record: logging.LogRecord) -> None:
        target = logging.getLogger(LOGGER)
        if not target.handlers:
            return  # no log configured: nowhere (never Python's last-resort stderr printer)
        setattr(record, _LIBRARY, True)
        target.handle(record)


class LibraryRecordsOnly(logging.Filter):
    """Keeps library records off a handler (the errors-only stderr handler): it passes only
    wsitui's own records."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, _LIBRARY, False)


def quiet_known_warnings() -> None:
    """Show each known library warning once per process (as a log record once routed)."""
    for message, category in KNOWN_WARNINGS:
        warnings.filterwarnings("once", message=message, category=category)


def route_library_output() -> None:
    """Library warnings and library log records to the wsitui log only (see the module doc)."""
    quiet_known_warnings()
    logging.captureWarnings(True)
    known = list(logging.root.manager.loggerDict)
    for name in LIBRARY_LOGGERS:
        top = logging.getLogger(name)
        for handler in list(top.handlers):
            if not isinstance(handler, _ToWsituiLog):
                top.removeHandler(handler)  # e.g. distributed's own stderr handler
        if not top.handlers:
            top.addHandler(_ToWsituiLog())
        top.propagate = False
        for child in known:  # distributed gives some children a stderr handler of their own
            if child.startswith(name + "."):
                logger = logging.getLogger(child)
                for handler in list(logger.handlers):
                    logger.removeHandler(handler)
                logger.propagate = True
