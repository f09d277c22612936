"""The JSONL event log: one JSON object a line, flushed per event (tail -f and crashes see it).

Opening is careful, because the path comes from a user: only a regular file is written (never a
FIFO, which would hang, nor a device such as /dev/full), and an existing file is appended to
only when it is empty or already an event log (its first line is a JSON object with an "event"
key) — so a mistyped `--events` can never append JSON to a slide or a document.
Each line is written under an advisory lock on the file (`fcntl.flock`), so runs sharing one
`--events` file (two data dirs, one log) never interleave parts of their lines, however long a
line or however the OS splits a write; a lock held past `LOCK_WAIT_S` (a writer stopped
mid-line) is not waited on further: that line is written without it, and so is every later line
while the lock is still taken (each tries it once, without waiting), until it is free again. The
log is written on the engine's event loop, so a stopped peer costs it one wait, not one per event.
A write that fails later (disk full) stops the log and is kept in `error` for the face to say;
it never stops the engine.

The engine commits each change before it publishes it, so a process killed in between (SIGKILL,
power) has committed transitions its log never got. `backfill` appends them at the next start,
before recovery commits anything, marked `"recovered": true`: the log replays to exactly the
committed transitions again, and to the committed tenant state (the releases and admissions
that commit made, R3). Each line names the data dir that wrote it (`data_dir_id`), and
`backfill` reads only its own (and old lines without the field): runs sharing one file with the
same tenant names never read another's releases and admissions as theirs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from wsitui.core.events import (
    SIDE_EFFECT_REASONS,
    Event,
    JobStateChanged,
    TenantAdmitted,
    TenantReleased,
)
from wsitui.core.paths import file_kind
from wsitui.core.records import JobState
from wsitui.core.store import Store

_FIRST_LINE_LIMIT = 64 * 1024  # an event line is far shorter; more means not an event log
_LINE_START = b'{"ts":'  # how every line this log writes begins (events' to_json)
LOCK_WAIT_S = 5.0  # a line's write waits this long at most for another writer's lock


@contextlib.contextmanager
def _line_lock(fd: int, wait_s: float) -> Iterator[bool]:
    """Hold an exclusive flock on `fd`'s file while a line is written; give up waiting after
    `wait_s` (then write anyway: a stopped writer must not stall this engine). Yields whether
    the lock is held: False when the wait timed out (a file system without flock counts as
    locked: there is nothing to wait for)."""
    deadline = time.monotonic() + wait_s
    locked = False
    timed_out = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                timed_out = True
                break
            time.sleep(0.001)
        except OSError:  # a file system without flock: lines as before, unlocked
            break
    try:
        yield not timed_out
    finally:
        if locked:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)


class EventLogError(Exception):
    """The event log cannot be opened; one line naming the file and the fix."""


def check_event_log(path: Path) -> None:
    """Raise EventLogError unless `path` can be made, or appended to, as an event log."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        _check_parent(path)
        return
    except OSError as exc:
        raise EventLogError(f"event log {path} cannot be checked ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise EventLogError(
            f"event log {path} is {file_kind(st.st_mode)}; give a regular file path (.jsonl)"
        )
    if st.st_size == 0:
        return
    try:
        # O_NONBLOCK: if the path became a FIFO since the stat, this must not hang.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise EventLogError(f"event log {path} cannot be read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise EventLogError(f"event log {path} is not a regular file; give a .jsonl path")
        data = f.read(_FIRST_LINE_LIMIT)
    head, newline, rest = data.partition(b"\n")
    # Its first line cut short by a kill: the start of one of our lines, each of which begins
    # `{"ts":`, alone in the file or followed by the lines a later run appended (on a fresh
    # line: the first of them an event, or nothing yet).
    ours = (head.startswith(_LINE_START) or _LINE_START.startswith(head)) and _parsed(head) is None
    if newline:
        cut = ours and (not rest.strip() or _is_event(rest.partition(b"\n")[0]))
    else:
        cut = ours and len(data) < _FIRST_LINE_LIMIT
    if not _is_event(head) and not cut:
        raise EventLogError(
            f"event log {path} exists and is not a wsitui event log; "
            "give a new file or an existing .jsonl event log"
        )


def _parsed(line: bytes) -> object:
    """The JSON value of `line`, None when it is not JSON (a cut line)."""
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


def _is_event(line: bytes) -> bool:
    obj = _parsed(line)
    return isinstance(obj, dict) and "event" in obj


def _check_parent(path: Path) -> None:
    """The nearest existing ancestor must be a directory we can write into."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise EventLogError(
            f"event log {path} cannot be created: {parent} is not a directory; fix the path"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise EventLogError(
            f"event log {path} cannot be created: {parent} is not writable; give another path"
        )


def _ends_mid_line(path: Path) -> bool:
    """Whether the file's last line has no newline (cut short by a kill)."""
    try:
        with path.open("rb") as f:
            if f.seek(0, os.SEEK_END) == 0:
                return False
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except OSError:
        return False


class JsonlEventLog:
    """A bus listener appending every event to a file."""

    def __init__(self, path: Path) -> None:
        check_event_log(path)
        self.path = path
        self.error: str | None = None  # set when a write failed; the log stopped there
        # The data dir's id (Store.data_dir_id), on every line once the engine opened its
        # store (`backfill`): runs sharing this file read back only their own lines.
        self.data_dir_id: str | None = None
        # A wait for the lock timed out (a peer stopped holding it): later lines try it without
        # waiting until it is free again, so the event loop is not stalled per line.
        self._stalled = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(
                path,
                os.O_WRONLY
                | os.O_APPEND
                | os.O_CREAT
                | os.O_NONBLOCK
                | getattr(os, "O_CLOEXEC", 0),
                0o644,
            )
        except OSError as exc:
            raise EventLogError(
                f"event log {path} cannot be written ({exc.strerror}); make it writable or "
                "give another path"
            ) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise EventLogError(f"event log {path} is not a regular file; give a .jsonl path")
        self._file: IO[str] | None = os.fdopen(fd, "a", encoding="utf-8")
        # A process killed mid-write: new lines start on their own. Asked under the lock, so
        # another run's line being written right now is not taken for a cut one.
        self._write_text("\n", only_mid_line=True)

    def __call__(self, event: Event) -> None:
        self._write(event.to_json())

    def _write(self, obj: dict[str, object]) -> None:
        if self.data_dir_id is not None:
            obj = {**obj, "data_dir_id": self.data_dir_id}
        self._write_text(json.dumps(obj, separators=(",", ":")) + "\n")

    def _write_text(self, text: str, *, only_mid_line: bool = False) -> None:
        if self._file is None:
            return
        try:
            wait_s = 0.0 if self._stalled else LOCK_WAIT_S
            with _line_lock(self._file.fileno(), wait_s) as locked:
                self._stalled = not locked
                if only_mid_line and not _ends_mid_line(self.path):
                    return
                self._file.write(text)
                self._file.flush()
        except OSError as exc:
            self.error = (
                f"event log {self.path}: writing failed ({exc.strerror or exc}); "
                "events after that are missing from it"
            )
            self._drop()

    def backfill(self, store: Store) -> int:
        """Append the transitions `store` committed that this log is missing (the stopped
        process died between a commit and its log line); how many. At every start, not only
        after one that left a job RUNNING: a kill right after a run's last end (or an end that
        released its tenant and admitted the next) leaves nothing RUNNING, and its lines are
        missing all the same. Only if this log follows `store` (it shows the start of at least
        one job's committed transitions): then for each job it follows whose logged
        transitions are the start of its committed ones, and for each job it never named that
        was first committed after the last transition it shows (the kill lost the job's first
        lines, its "submitted" among them), in commit order. A log that tells another story,
        one first attached now, and jobs committed before it was attached are left alone. The
        tenants that commit released and admitted follow its ends, before its starts.

        Lines naming another data dir (`data_dir_id`: runs sharing this file) are not read;
        lines without one (a log written before the field) are read as this data dir's. From
        here on, every line this log writes names `store`'s data dir."""
        self.data_dir_id = store.data_dir_id
        if self._file is None:
            return 0
        jobs = {job.id: job for job in store.jobs()}
        story = self._logged()
        if story is None:
            return 0
        logged, shown = story
        transitions = store.transitions()
        committed: dict[str, list[tuple[str, str]]] = {}
        for t in transitions:
            committed.setdefault(t.job_id, []).append((str(t.state), t.reason))
        # Jobs this log follows: it shows the start of their committed transitions.
        follows = {
            job_id
            for job_id, done in committed.items()
            if job_id in jobs
            and 0 < len(logged.get(job_id, [])) <= len(done)
            and done[: len(logged[job_id])] == logged[job_id]
        }
        behind = {job_id for job_id in follows if len(logged[job_id]) < len(committed[job_id])}
        # Where the log stops in commit order: a job it never named whose first transition
        # comes later lost its first lines to the kill; one committed earlier predates the log
        # (a log first attached after the crash, or later, starts then).
        last_shown = -1
        first_at: dict[str, int] = {}
        seen: dict[str, int] = {}
        for pos, t in enumerate(transitions):
            i = seen.get(t.job_id, 0)
            seen[t.job_id] = i + 1
            first_at.setdefault(t.job_id, pos)
            if t.job_id in follows and i < len(logged[t.job_id]):
                last_shown = pos
        unnamed = set()
        if last_shown >= 0:
            unnamed = {
                job_id
                for job_id, pos in first_at.items()
                if job_id in jobs and job_id not in logged and pos > last_shown
            }
        seen = {}
        previous: dict[str, JobState] = {}
        lines: list[dict[str, object]] = []
        for t in transitions:
            i = seen.get(t.job_id, 0)
            seen[t.job_id] = i + 1
            before = previous.get(t.job_id)
            previous[t.job_id] = t.state
            if t.job_id not in behind and t.job_id not in unnamed:
                continue
            if i < len(logged.get(t.job_id, [])):
                continue
            job = replace(jobs[t.job_id], state=t.state, attempt=t.attempt)
            lines.append(JobStateChanged(t.ts, job, before, t.reason).to_json())
        # A kill loses the last commit's lines (each commit is published before the next): its
        # ends, then the tenants it released and admitted (R3), then its starts, as published.
        # So a start that is its job's last missing line goes after the tenant lines; any other
        # stays in commit order (a run without this log missed many commits: a job's start
        # before its end).
        last = {str(e["job_id"]): n for n, e in enumerate(lines)}
        tail = {
            n
            for n, e in enumerate(lines)
            if e["state"] == "RUNNING" and last[str(e["job_id"])] == n
        }
        starts = [e for n, e in enumerate(lines) if n in tail]
        lines = [e for n, e in enumerate(lines) if n not in tail]
        if follows and transitions:
            lines += self._tenant_lines(
                store, {j.tenant for j in jobs.values()}, shown, transitions[-1].ts
            )
        for obj in [*lines, *starts]:
            self._write({**obj, "recovered": True})
        return len(lines) + len(starts)

    def _tenant_lines(
        self, store: Store, ours: set[str], shown: list[str], ts: float
    ) -> list[dict[str, object]]:
        """The releases and admissions `store` committed that the log never showed: tenants
        of this data dir the log shows active (`shown`) and state.db does not, then the
        reverse."""
        rows = store.tenant_rows()
        active = [r.tenant for r in rows if r.status == "active"]  # in admission order
        waiting = {r.tenant for r in rows if r.status == "waiting"}  # gave its slot up
        out = [
            TenantReleased(ts, t, yielded=t in waiting).to_json()
            for t in shown
            if t in ours and t not in active
        ]
        return out + [TenantAdmitted(ts, t).to_json() for t in active if t not in shown]

    def _logged(self) -> tuple[dict[str, list[tuple[str, str]]], list[str]] | None:
        """One read of the log: the (state, reason) of each job's job_state lines that are
        transitions, in order, and the tenants its tenant_admitted and tenant_released lines
        leave active; None when it cannot be read or a job line lacks its state."""
        logged: dict[str, list[tuple[str, str]]] = {}
        active: list[str] = []
        try:
            for e in self._lines(('"job_state"', '"tenant_')):
                if e.get("data_dir_id", self.data_dir_id) != self.data_dir_id:
                    continue  # another data dir's line (runs sharing this file)
                event, tenant = e.get("event"), e.get("tenant")
                if event == "tenant_admitted" and tenant not in active:
                    active.append(tenant)
                elif event == "tenant_released" and tenant in active:
                    active.remove(tenant)
                elif event == "job_state":
                    reason = str(e.get("reason", ""))
                    if not reason.startswith(SIDE_EFFECT_REASONS):
                        job = str(e.get("job_id"))
                        logged.setdefault(job, []).append((str(e["state"]), reason))
        except (OSError, KeyError, TypeError):
            return None
        return logged, active

    def _lines(self, markers: tuple[str, ...]) -> Iterator[dict[str, Any]]:
        """The log's JSON objects on lines holding one of `markers` (a line cut short by a
        crash, or not an object, skipped)."""
        with self.path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if not any(m in line for m in markers):
                    continue
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if isinstance(e, dict):
                    yield e

    def _drop(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            with contextlib.suppress(OSError):  # the line that failed to write fails again
                f.close()

    def close(self) -> None:
        if self._file is None:
            return
        try:
            self._file.close()
        except OSError as exc:
            self.error = self.error or f"event log {self.path}: closing failed ({exc.strerror})"
        self._file = None
