"""Structured logs: `--log-file` / `--log-json`, with tenant, workflow and job ids on every line.

Every record of the `wsitui` loggers gets the three id fields (`-` / null when a line is not
about a job); `JobLog` turns the engine's events into one line per job state change, workflow
state change and tenant admission. Logging never writes to the terminal unless asked to
(`to_stderr`, headless `--log-json` without a file): in the TUI a log without `--log-file` goes
nowhere, so nothing is ever printed over the screen.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsitui.core.events import (
    Event,
    JobStateChanged,
    TenantAdmitted,
    TenantReleased,
    TenantWaiting,
    WorkflowProgress,
)
from wsitui.core.records import JobState, WorkflowState
from wsitui.observability.libraries import LibraryRecordsOnly

LOGGER = "wsitui"
MAX_WORKFLOWS_KEPT = 10_000  # workflow states remembered to log changes only
IDS = ("tenant", "workflow_id", "job_id")
_EXTRA = ("job_type", "branch", "state", "previous", "attempt", "reason", "error", "position")
_STD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}
_FIRST_LINE_LIMIT = 64 * 1024  # a log line's head is far shorter; more means not a wsitui log
# The start of a TextFormatter line: `2026-12-02T06:30:00.123Z INFO tenant=`.
_TEXT_LINE = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [A-Z]+ tenant=")
_JSON_KEYS = ("ts", "level", "logger", *IDS, "message")  # what JsonFormatter always writes


class LogError(Exception):
    """The log file cannot be written: one line naming it and the fix."""


class _Ids(logging.Filter):
    """Every record carries the id fields, so no line lacks them."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name in IDS:
            if not hasattr(record, name):
                setattr(record, name, None)
        return True


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, tenant, workflow_id, job_id, message, ..."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            **{name: getattr(record, name, None) for name in IDS},
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STD and key not in out and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`2026-12-02T06:30:00.123Z INFO tenant=alice workflow=wf1 job=wf1.mask message`."""

    def format(self, record: logging.LogRecord) -> str:
        ids = " ".join(
            f"{label}={getattr(record, name, None) or '-'}"
            for label, name in zip(("tenant", "workflow", "job"), IDS, strict=True)
        )
        line = f"{_iso(record.created)} {record.levelname} {ids} {record.getMessage()}"
        if record.exc_info:
            line += " | " + self.formatException(record.exc_info).replace("\n", " | ")
        return line


class _LogFile(logging.FileHandler):
    """The --log-file handler. A write that fails (a full disk) stops the log and is kept in
    `error` for the face to say once, as the event log does: Python's handler printed a
    "--- Logging error ---" traceback per log line, and the close that flushed the rest
    failed again and ended the run as an internal error (exit 70) after its jobs had run."""

    error: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.error is None:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handleError(record)  # a formatting bug: logging's own report
            return
        self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        self.error = self.error or (
            f"--log-file {self.baseFilename}: writing failed ({exc.strerror or exc}); log "
            "lines after that are missing from it"
        )
        stream, self.stream = self.stream, None  # type: ignore[assignment]
        if stream is not None:
            with contextlib.suppress(OSError):  # its buffered tail fails to flush again
                stream.close()

    def close(self) -> None:
        try:
            super().close()
        except OSError as exc:  # flushing the last lines at close
            self._failed(exc)


@dataclass
class LogSetup:
    """The handlers installed on the `wsitui` logger; `close` removes them again."""

    handlers: list[logging.Handler] = field(default_factory=list)
    path: Path | None = None
    _before: tuple[int, bool] = (logging.NOTSET, True)  # level, propagate

    _closed_error: str | None = None

    @property
    def error(self) -> str | None:
        """A --log-file write that failed (the log stopped there), in one line; else None.
        Kept after `close`, whose flush may be what failed."""
        found = (h.error for h in self.handlers if isinstance(h, _LogFile) and h.error)
        return next(found, self._closed_error)

    def close(self) -> None:
        logger = logging.getLogger(LOGGER)
        for handler in self.handlers:
            logger.removeHandler(handler)
            handler.close()
        self._closed_error = self.error
        if self.handlers:
            logger.setLevel(self._before[0])
            logger.propagate = self._before[1]
        self.handlers.clear()


def check_log_file(path: Path) -> None:
    """Refuse a log path that cannot be appended to, before anything runs; an existing file
    is appended to only when it is empty or already a wsitui log (its first line is one of
    ours, text or JSON), so a mistyped `--log-file` never appends to a slide or a document."""
    if path.exists() and not path.is_file():
        raise LogError(f"--log-file {path}: not a regular file; name a file")
    if path.is_file() and not _empty_or_ours(path):
        raise LogError(
            f"--log-file {path} exists and is not a wsitui log; "
            "give a new file or an existing wsitui log"
        )
    parent = path.parent if str(path.parent) else Path()
    if not parent.is_dir():
        raise LogError(f"--log-file {path}: its folder does not exist; create it first")
    target = path if path.exists() else parent
    if not os.access(target, os.W_OK):
        raise LogError(f"--log-file {path}: not writable; fix its permissions or pick another")


def _empty_or_ours(path: Path) -> bool:
    """Whether the regular file `path` is empty or starts with a line this module writes."""
    try:
        # O_NONBLOCK: if the path became a FIFO since it was checked, this must not hang.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise LogError(
            f"--log-file {path} cannot be read to check it is a wsitui log ({exc.strerror}); "
            "give a new file"
        ) from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return False
        head = f.read(_FIRST_LINE_LIMIT)
    if not head:
        return True
    first = head.split(b"\n", 1)[0]
    if _TEXT_LINE.match(first):
        return True
    try:
        obj = json.loads(first)
    except (ValueError, RecursionError):
        return False
    return isinstance(obj, dict) and all(key in obj for key in _JSON_KEYS)


def setup_logging(
    log_file: Path | None,
    *,
    as_json: bool = False,
    to_stderr: bool = False,
    errors_to_stderr: bool = False,
) -> LogSetup:
    """Install the handlers on the `wsitui` logger (INFO and up); never on the root logger.
    `errors_to_stderr`: with no other handler, errors (not job lines) still go to stderr, as
    a headless run printed them before logging was configurable."""
    logger = logging.getLogger(LOGGER)
    setup = LogSetup(path=log_file, _before=(logger.level, logger.propagate))
    formatter: logging.Formatter = JsonFormatter() if as_json else TextFormatter()
    if log_file is not None:
        check_log_file(log_file)
        try:
            handler: logging.Handler = _LogFile(log_file, encoding="utf-8")
        except OSError as exc:
            raise LogError(f"--log-file {log_file}: {exc.strerror or exc}; pick another") from None
        setup.handlers.append(handler)
    if to_stderr:
        setup.handlers.append(logging.StreamHandler(sys.stderr))
    if not setup.handlers and errors_to_stderr:
        errors = logging.StreamHandler(sys.stderr)
        errors.setLevel(logging.ERROR)
        errors.addFilter(LibraryRecordsOnly())  # library tracebacks go to a log file only
        setup.handlers.append(errors)
    if not setup.handlers:
        # Without this, Python's last-resort handler would print warnings on the terminal,
        # over the TUI.
        setup.handlers.append(logging.NullHandler())
    for handler in setup.handlers:
        handler.setFormatter(formatter)
        handler.addFilter(_Ids())
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # a host application's root handlers never see (or print) them
    return setup


class JobLog:
    """A bus listener: one log line per job transition, workflow state change and tenant event."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger(f"{LOGGER}.engine")
        self._wf_state: dict[str, WorkflowState] = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, JobStateChanged):
            job = event.job
            level = logging.WARNING if job.state is JobState.FAILED else logging.INFO
            self.log.log(
                level,
                "job %s %s: %s",
                job.key,
                job.state,
                event.reason,
                extra={
                    "tenant": job.tenant,
                    "workflow_id": job.workflow_id,
                    "job_id": job.id,
                    "job_type": str(job.job_type),
                    "branch": job.branch,
                    "state": str(job.state),
                    "previous": str(event.previous) if event.previous else None,
                    "attempt": job.attempt,
                    "reason": event.reason,
                    **({"error": job.error} if job.error else {}),
                },
            )
        elif isinstance(event, WorkflowProgress):
            wf = event.workflow
            if self._wf_state.get(wf.id) is event.state:
                return  # progress alone is not logged: one line per state change
            self._wf_state.pop(wf.id, None)
            self._wf_state[wf.id] = event.state  # most recently changed last
            if len(self._wf_state) > MAX_WORKFLOWS_KEPT:  # bounded: forget the oldest
                del self._wf_state[next(iter(self._wf_state))]
            self.log.info(
                "workflow %s %s",
                wf.name,
                event.state,
                extra={"tenant": wf.tenant, "workflow_id": wf.id, "state": str(event.state)},
            )
        elif isinstance(event, TenantAdmitted | TenantReleased):
            what = "admitted" if isinstance(event, TenantAdmitted) else "released"
            self.log.info("tenant %s %s", event.tenant, what, extra={"tenant": event.tenant})
        elif isinstance(event, TenantWaiting):
            self.log.info(
                "tenant %s waiting for a slot (position %d)",
                event.tenant,
                event.position,
                extra={"tenant": event.tenant, "position": event.position},
            )
