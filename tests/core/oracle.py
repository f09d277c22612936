"""The rule oracle: replays a JSONL event log and lists every event that breaks a scheduling
rule. It knows nothing of the engine's code: it rebuilds each job's state, lane, dependencies
and each tenant's live work from the events alone (the fields `wsitui run --events` writes), so
it checks the engine from outside, across restarts and crashes in one appended log.

Checked at each start (a job_state event to RUNNING): R1 one running job per lane, and it is
the oldest job standing in its lane; R2 the worker cap; R3 its tenant is active; R4 every
dependency SUCCEEDED, and no job stands in a lane ahead of an unfinished upstream. At each
job_state event: R4 no finished job is (un)blocked. At each
admission: R3 the cap, and admission in arrival order (the order tenants gained live work while
not active), except tenants the event says were passed over (they could start nothing: the
oracle has no view of resources, so it checks only that they had nothing running); a tenant
that gave its slot up ("yielded") had nothing running and waits first in line; one released at
a restart under a lower cap ("cap_lowered") had nothing running and waits first in line after
the others released with it (in their admission order). At each
release: the tenant has no live job left. LOG: every transition is in
the log: each job_state event's `previous` is the state the log last showed for that job (a
start-up that recovers jobs before the log is attached breaks this).

`strict=True`, for logs of CPU-only jobs (no resources: the log does not show them) from runs
that end on their own or by a kill (a stop winds running jobs down without starting others):
each start is the job R6 owes the worker (the active tenant served longest ago, a newcomer
first, then admission order; its oldest ready lane head; jobs resumed after a stop excepted),
and whenever a running job reports progress or ends, no worker is idle while an active
tenant has a ready lane head and no tenant slot is free while a tenant waits (R2, R3).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsitui.core.events import SIDE_EFFECT_REASONS

Lane = tuple[str, str, str]


@dataclass
class _Job:
    tenant: str
    lane: Lane
    deps: list[str]
    state: str = "PENDING"
    enqueued: bool = True
    seq: int = 0


@dataclass
class Oracle:
    max_workers: int
    max_active_users: int
    jobs: dict[str, _Job] = field(default_factory=dict)
    by_tenant: dict[str, list[str]] = field(default_factory=dict)
    active: list[str] = field(default_factory=list)
    arrivals: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    lowered: list[str] = field(default_factory=list)  # released by one lowered cap, in order
    starts: int = 0
    events: int = 0
    # strict (logs of CPU-only jobs, of runs that end on their own or by a kill; a stop
    # dispatches nothing while running jobs wind down): R6 and no idle worker or slot.
    strict: bool = False
    served: dict[str, int] = field(default_factory=dict)  # tenant -> tick of its last start
    admitted_at: dict[str, int] = field(default_factory=dict)
    resuming: set[str] = field(default_factory=set)  # interrupted: start again first (R6)
    tick: int = 0

    # ---- derived facts -------------------------------------------------------------------
    def _bad(self, job_id: str) -> bool:
        job = self.jobs.get(job_id)
        if job is None:
            return False
        if job.state in ("FAILED", "CANCELED"):
            return True
        # R4 is transitive through any job: a SUCCEEDED job whose upstream was rerun and
        # failed blocks its dependents (the oracle read it as through PENDING jobs only).
        return any(self._bad(d) for d in job.deps)

    def _held(self, job_id: str) -> bool:
        job = self.jobs.get(job_id)
        if job is None or job.state != "PENDING":
            return False
        return not job.enqueued or any(self._held(d) for d in job.deps)

    def in_lane(self, job_id: str) -> bool:
        job = self.jobs[job_id]
        return (
            job.state == "PENDING"
            and job.enqueued
            and not any(self._bad(d) or self._held(d) for d in job.deps)
        )

    def live(self, tenant: str) -> bool:
        return any(
            self.jobs[i].state == "RUNNING" or self.in_lane(i)
            for i in self.by_tenant.get(tenant, ())
        )

    def _flag(self, n: int, rule: str, what: str) -> None:
        self.violations.append(f"event {n}: {rule}: {what}")

    # ---- replay --------------------------------------------------------------------------
    def feed(self, n: int, e: dict[str, Any]) -> None:
        self.events += 1
        kind = e.get("event")
        if self.strict:
            self._strict(n, e)
        if not (kind == "tenant_released" and e.get("cap_lowered")):
            self.lowered.clear()
        if kind == "tenant_admitted":
            self._admit(n, e["tenant"], e.get("passed_over", ()))
        elif kind == "tenant_released":
            tenant = e["tenant"]
            if tenant not in self.active:
                self._flag(n, "R3", f"{tenant} released but was not active")
            else:
                self.active.remove(tenant)
            if e.get("cap_lowered"):  # a restart under a lower cap: first, in admission order
                if any(self.jobs[i].state == "RUNNING" for i in self.by_tenant.get(tenant, ())):
                    self._flag(n, "R3", f"{tenant} released by a lower cap with a job running")
                if tenant in self.arrivals:
                    self.arrivals.remove(tenant)
                self.arrivals.insert(len(self.lowered), tenant)
                self.lowered.append(tenant)
            elif e.get("yielded"):  # gave its slot up, work waiting for a busy resource: first
                if any(self.jobs[i].state == "RUNNING" for i in self.by_tenant.get(tenant, ())):
                    self._flag(n, "R3", f"{tenant} gave its slot up with a job running")
                if tenant in self.arrivals:
                    self.arrivals.remove(tenant)
                self.arrivals.insert(0, tenant)
            elif self.live(tenant):
                self._flag(n, "R3", f"{tenant} released with live work left")
        elif kind == "job_state":
            self._job_state(n, e)
            self._track_arrival(e["tenant"])  # a change concerns one tenant's jobs

    def _admit(self, n: int, tenant: str, passed_over: Iterable[str] = ()) -> None:
        if tenant in self.active:
            self._flag(n, "R3", f"{tenant} admitted twice")
            return
        self.active.append(tenant)
        if len(self.active) > self.max_active_users:
            self._flag(n, "R3", f"{len(self.active)} active tenants > {self.max_active_users}")
        # Tenants passed over (the engine says they could start nothing: the oracle does not
        # see resources) must have nothing running.
        passed = set(passed_over)
        for other in passed:
            if any(self.jobs[i].state == "RUNNING" for i in self.by_tenant.get(other, ())):
                self._flag(n, "R3", f"{other} passed over with a job running")
        first = next((t for t in self.arrivals if t not in passed), None)
        if first is not None and first != tenant:
            self._flag(n, "R3", f"{tenant} admitted before {first}, who came first")
        if tenant in self.arrivals:
            self.arrivals.remove(tenant)

    def _track_arrival(self, tenant: str) -> None:
        live = self.live(tenant)
        if live and tenant not in self.active and tenant not in self.arrivals:
            self.arrivals.append(tenant)
        elif not live and tenant in self.arrivals:
            self.arrivals.remove(tenant)

    def _job_state(self, n: int, e: dict[str, Any]) -> None:
        job_id = e["job_id"]
        lane = (e["tenant"], e["workflow_id"], e["branch"])
        job = self.jobs.get(job_id)
        if "previous" in e:
            shown = None if job is None else job.state
            if e["previous"] != shown:
                self._flag(n, "LOG", f"{job_id} was {e['previous']}, the log last showed {shown}")
        if job is None:
            job = self.jobs[job_id] = _Job(e["tenant"], lane, list(e.get("depends_on", [])))
            self.by_tenant.setdefault(job.tenant, []).append(job_id)
        if e["state"] == "RUNNING" and job.state != "RUNNING":
            self._check_start(n, job_id, job, e)
        # R4: a finished job is never blocked: it neither gains nor loses a block.
        side = str(e.get("reason", "")).startswith(("blocked:", "unblocked:"))
        if (e.get("blocked") or side) and e["state"] not in ("PENDING", "RUNNING"):
            self._flag(n, "R4", f"{job_id} is {e['state']} but the log says it was (un)blocked")
        job.state = e["state"]
        job.enqueued = bool(e.get("enqueued", True))
        job.seq = int(e.get("seq", 0))

    def _check_start(self, n: int, job_id: str, job: _Job, e: dict[str, Any]) -> None:
        self.starts += 1
        running = [i for i, j in self.jobs.items() if j.state == "RUNNING"]
        if len(running) >= self.max_workers:
            self._flag(n, "R2", f"{job_id} starts with {len(running)} running")
        if any(self.jobs[i].lane == job.lane for i in running):
            self._flag(n, "R1", f"{job_id} starts beside a running job of lane {job.lane}")
        if job.tenant not in self.active:
            self._flag(n, "R3", f"{job_id} starts but {job.tenant} is not active")
        for dep in job.deps:
            if dep in self.jobs and self.jobs[dep].state != "SUCCEEDED":
                self._flag(n, "R4", f"{job_id} starts before {dep} succeeded")
        seq = int(e.get("seq", job.seq))
        ahead = [
            i
            for i in self.by_tenant[job.tenant]
            if i != job_id
            and self.jobs[i].lane == job.lane
            and self.jobs[i].seq < seq
            and self.in_lane(i)
        ]
        if ahead:
            self._flag(n, "R1", f"{job_id} (seq {seq}) starts before older {ahead[0]} in lane")

    # ---- strict: R6 and work conservation, from outside (CPU-only logs) ---------------------
    def _strict(self, n: int, e: dict[str, Any]) -> None:
        kind, reason = e.get("event"), str(e.get("reason", ""))
        ended = (
            kind == "job_state"
            and e.get("previous") == "RUNNING"
            and e["state"] != "RUNNING"
            and not e.get("recovered")
            and not reason.startswith("interrupted")
        )
        if kind == "job_progress" or ended:  # the step before it has ended: nothing is idle
            self._idle(n)
        elif kind == "tenant_admitted":
            self.admitted_at[e["tenant"]] = n
            self.served.pop(e["tenant"], None)  # a newcomer counts as never served
        elif kind == "job_state" and reason.startswith("interrupted"):
            self.resuming.add(e["job_id"])
        elif kind == "job_state" and e["state"] == "RUNNING" and e.get("previous") != "RUNNING":
            if e["job_id"] in self.resuming:  # starts again first, not counted as service
                self.resuming.discard(e["job_id"])
            else:
                self._pick(n, e)

    def _ready_heads(self, tenant: str) -> list[str]:
        """The tenant's lane heads that could start now (lane idle, dependencies done)."""
        heads: dict[Lane, str] = {}
        for i in self.by_tenant.get(tenant, ()):
            if self.in_lane(i) and (
                self.jobs[i].lane not in heads
                or self.jobs[i].seq < self.jobs[heads[self.jobs[i].lane]].seq
            ):
                heads[self.jobs[i].lane] = i
        busy = {j.lane for j in self.jobs.values() if j.state == "RUNNING"}
        return [
            i
            for lane, i in heads.items()
            if lane not in busy
            and all(self.jobs[d].state == "SUCCEEDED" for d in self.jobs[i].deps if d in self.jobs)
        ]

    def _idle(self, n: int) -> None:
        waiting = [t for t in self.by_tenant if t not in self.active and self.live(t)]
        if len(self.active) < self.max_active_users and waiting:
            self._flag(n, "R3", f"a tenant slot is free while {waiting[0]} waits")
        if sum(j.state == "RUNNING" for j in self.jobs.values()) < self.max_workers:
            ready = [i for t in self.active for i in self._ready_heads(t)]
            if ready:
                self._flag(n, "R2", f"a worker is idle while {ready[0]} is ready")

    def _pick(self, n: int, e: dict[str, Any]) -> None:
        """R6: the worker goes to the active tenant served longest ago (a newcomer first, then
        admission order), to its oldest ready lane head."""
        best: tuple[tuple[int, int, int], str] | None = None
        for t in self.active:
            for i in self._ready_heads(t):
                key = (self.served.get(t, -1), self.admitted_at.get(t, 0), self.jobs[i].seq)
                if best is None or key < best[0]:
                    best = (key, i)
        if best is not None and best[1] != e["job_id"]:
            self._flag(n, "R6", f"{e['job_id']} starts, but {best[1]} was owed the worker")
        self.tick += 1
        self.served[e["tenant"]] = self.tick


def read_events(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    for path in paths:
        with path.open() as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def check(
    events: Iterable[dict[str, Any]],
    *,
    max_workers: int,
    max_active_users: int,
    strict: bool = False,
) -> Oracle:
    oracle = Oracle(max_workers, max_active_users, strict=strict)
    for n, event in enumerate(events):
        oracle.feed(n, event)
    return oracle


SIDE_EFFECTS = SIDE_EFFECT_REASONS  # job_state events that are no transition (core/events.py)


def missing_from_log(events: Iterable[dict[str, Any]], db: Path) -> list[str]:
    """Each job whose committed transitions (state.db) differ from those its log shows.

    The log and the store must tell the same story: what the engine committed while it
    recovered at start-up included. Empty when they agree.
    """
    logged: dict[str, list[tuple[str, str]]] = {}
    for e in events:
        if e.get("event") == "job_state" and not str(e.get("reason", "")).startswith(SIDE_EFFECTS):
            logged.setdefault(e["job_id"], []).append((e["state"], e["reason"]))
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT job_id, state, reason FROM transitions ORDER BY rowid")
        stored: dict[str, list[tuple[str, str]]] = {}
        for job_id, state, reason in rows:
            stored.setdefault(job_id, []).append((state, reason))
    finally:
        con.close()
    return [
        f"{job_id}: committed {stored.get(job_id, [])}, logged {logged.get(job_id, [])}"
        for job_id in sorted(stored.keys() | logged.keys())
        if stored.get(job_id, []) != logged.get(job_id, [])
    ]
