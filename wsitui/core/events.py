"""Typed events the engine publishes, and the bus every face subscribes to.

Events are published from the event-loop thread only, after the change they describe has been
committed to the store. Async consumers read a memory stream; sync listeners (the JSONL log) are
called in order, before the streams.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from wsitui.core.records import Job, JobState, Workflow, WorkflowState


def _job_fields(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "workflow_id": job.workflow_id,
        "tenant": job.tenant,
        "branch": job.branch,
        "job_type": str(job.job_type),
        "state": str(job.state),
        "attempt": job.attempt,
    }


@dataclass(frozen=True, slots=True)
class JobStateChanged:
    ts: float
    job: Job
    previous: JobState | None  # None when the job was just created
    reason: str

    def to_json(self) -> dict[str, Any]:
        out = {"ts": self.ts, "event": "job_state", **_job_fields(self.job)}
        out["previous"] = str(self.previous) if self.previous else None
        out["reason"] = self.reason
        out["blocked"] = self.job.blocked
        out["enqueued"] = self.job.enqueued  # False: held, not started by the user yet
        out["seq"] = self.job.seq
        out["depends_on"] = list(self.job.depends_on)
        if self.job.error:
            out["error"] = self.job.error
        return out


# Reasons of job_state events that are no committed transition: a dependent's flags changed
# beside another job's change (the engine's `_commit`, "side" jobs). Every other job_state event
# is one row of the store's transitions.
SIDE_EFFECT_REASONS = ("blocked:", "unblocked:", "re-entered")


@dataclass(frozen=True, slots=True)
class JobProgress:
    """Tiles, live counters or the stage of a RUNNING job changed. Not committed per event:
    the engine commits the figure at stage changes and at most every 2 s (for `wsitui status`);
    the durable record to resume from is the executor's checkpoint."""

    ts: float
    job: Job
    restarted: bool = False  # the executor said honestly that it starts over from tile 0
    # The run's first count, made before it did any work: tiles and counters found done by
    # an earlier run (kept shards, a checkpoint), not work of this one (metrics skip them).
    resumed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "event": "job_progress",
            **_job_fields(self.job),
            "tiles_done": self.job.tiles_done,
            "tiles_total": self.job.tiles_total,
            "stage": self.job.stage,
            "counters": dict(self.job.counters),
            **({"restarted": True} if self.restarted else {}),
        }


@dataclass(frozen=True, slots=True)
class WorkflowProgress:
    ts: float
    workflow: Workflow
    state: WorkflowState
    progress: float  # its jobs' progress weighted by their tiles, 0..1 (core/tally.py)

    def to_json(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "event": "workflow_progress",
            "workflow_id": self.workflow.id,
            "tenant": self.workflow.tenant,
            "state": str(self.state),
            "progress": round(self.progress, 6),
        }


@dataclass(frozen=True, slots=True)
class TenantAdmitted:
    ts: float
    tenant: str
    # Waiting tenants admitted later instead: each had nothing it could start (R3 in rules.py).
    passed_over: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ts": self.ts, "event": "tenant_admitted", "tenant": self.tenant}
        if self.passed_over:
            out["passed_over"] = list(self.passed_over)
        return out


@dataclass(frozen=True, slots=True)
class TenantReleased:
    ts: float
    tenant: str
    # True: it still has work, all of it waiting for a busy resource, and gave its slot to a
    # waiting tenant that can start now; it waits first in line (R3 in rules.py).
    yielded: bool = False
    # True: it still has work, and the engine reopened with a lower max_active_users than
    # when it was admitted; it waits first in line, in admission order (R3 in rules.py).
    cap_lowered: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ts": self.ts, "event": "tenant_released", "tenant": self.tenant}
        if self.yielded:
            out["yielded"] = True
        if self.cap_lowered:
            out["cap_lowered"] = True
        return out


@dataclass(frozen=True, slots=True)
class TenantWaiting:
    ts: float
    tenant: str
    position: int  # 1 = next to be admitted

    def to_json(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "event": "tenant_waiting",
            "tenant": self.tenant,
            "position": self.position,
        }


Event = (
    JobStateChanged
    | JobProgress
    | WorkflowProgress
    | TenantAdmitted
    | TenantReleased
    | TenantWaiting
)
Listener = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._streams: list[MemoryObjectSendStream[Event]] = []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def subscribe(self) -> MemoryObjectReceiveStream[Event]:
        """A stream of every later event; close the receiver to unsubscribe."""
        # Unbounded: the engine must never block on a slow face. Faces coalesce progress.
        send, receive = anyio.create_memory_object_stream[Event](math.inf)
        self._streams.append(send)
        return receive

    def publish(self, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception as exc:  # a broken face must not stop the engine
                # The change is already committed; dropping the listener keeps the engine and
                # every other face going (e.g. an event log on a full disk).
                self._listeners.remove(listener)
                logging.getLogger("wsitui").error(
                    "event listener %r failed and was removed: %s", listener, exc
                )
        for stream in list(self._streams):
            try:
                stream.send_nowait(event)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._streams.remove(stream)

    def close(self) -> None:
        for stream in self._streams:
            stream.close()
        self._streams.clear()
