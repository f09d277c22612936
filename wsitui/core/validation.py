"""Validation of what is submitted: tenant ids, job types, params, resources, upstreams and the
dependency graph. Every refusal is an `InvalidRequest` with one line naming the job and the fix,
raised before anything changes."""

from __future__ import annotations

import heapq
import math
import re
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from wsitui.core import rules
from wsitui.core.errors import InvalidRequest
from wsitui.core.executor import Executor, UpstreamSpec
from wsitui.core.pydantic_errors import first_problem
from wsitui.core.records import SAFE_ID, SAFE_ID_HINT, Job, JobSpec
from wsitui.core.suggest import did_you_mean


def check_tenant(tenant: str) -> None:
    if not isinstance(tenant, str) or not SAFE_ID.match(tenant):
        raise InvalidRequest(f"tenant {tenant!r} is not allowed: {SAFE_ID_HINT}")


def params_error(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """First pydantic error as one line: `params.tile_size: Input should be ...`; a param the
    job type does not have (a misspelling) names the ones it has."""
    problem = first_problem(exc)
    where = problem.dotted or "params"
    if problem.type == "extra_forbidden" and model is not None and len(problem.loc) == 1:
        known = ", ".join(model.model_fields)
        return (
            f"params.{where}: not a param of this job type; remove it or check its spelling "
            f"(its params: {known})"
        ).replace("params.params", "params")
    return f"params.{where}: {problem.described}".replace("params.params", "params")


_WHOLE = re.compile(r"\A[+-]?\d{1,18}\Z")
_NUMBER = re.compile(r"\A[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")
_TRUTH = {"true": True, "false": False}


def _read_leniently(kind: str, value: object) -> object:
    """`value` as the type pydantic's error `kind` asks for, where its meaning is plain (what
    an earlier, lax version read it as): "512" -> 512, 512.0 -> 512, "0.5" -> 0.5, "true" ->
    True; else `value` itself. A bool is never read as a number (`true` is no tile size)."""
    if isinstance(value, str):
        text = value.strip()
        if kind in ("int_type", "int_parsing") and _WHOLE.match(text):
            return int(text)
        if kind in ("float_type", "float_parsing") and _NUMBER.match(text):
            return float(text)
        if kind in ("bool_type", "bool_parsing") and text.lower() in _TRUTH:
            return _TRUTH[text.lower()]
    elif (
        isinstance(value, float)
        and kind in ("int_type", "int_from_float")
        and math.isfinite(value)
        and value.is_integer()
    ):
        return int(value)
    return value


def lenient_params(model: type[BaseModel], params: dict[str, Any]) -> dict[str, Any] | None:
    """Params stored by an earlier version, which read them laxly (`tile_size = "512"` was
    512), with each such value given the type it now needs, when they then validate; None when
    they validate as they are, or when a value's meaning is not plain (then the job fails when
    it starts, with the line that names it)."""
    out = dict(params)
    read = False  # a value was read anew (512.0 == 512, so comparing dicts cannot tell)
    for _ in range(len(out) + 1):
        try:
            model.model_validate(out)
        except ValidationError as exc:
            changed = False
            for err in exc.errors():
                loc = err.get("loc", ())
                key = loc[0] if loc else None
                if not isinstance(key, str) or key not in out:
                    continue
                value = _read_leniently(str(err.get("type", "")), out[key])
                if value is not out[key]:
                    out[key], changed = value, True
            if not changed:
                return None
            read = True
        else:
            return out if read else None
    return None


class JobValidator:
    """Checks jobs against the installed executors and the scheduler's resource caps."""

    def __init__(self, executors: Mapping[str, Executor], scheduler: rules.Scheduler) -> None:
        self.executors = executors
        self.scheduler = scheduler

    def params(self, spec: JobSpec) -> BaseModel:
        executor = self.executors.get(str(spec.type))
        if executor is None:
            raise InvalidRequest(
                f"job {spec.id!r}: unknown job type {spec.type!r} (no executor is installed "
                f"for it){did_you_mean(str(spec.type), self.executors)}; use one of: "
                f"{', '.join(sorted(self.executors)) or 'none'}"
            )
        try:
            return executor.params_model.model_validate(spec.params)
        except ValidationError as exc:
            model = executor.params_model
            raise InvalidRequest(f"job {spec.id!r}: {params_error(exc, model)}") from None

    def ordered(self, specs: Sequence[JobSpec], existing: Mapping[str, Job]) -> list[JobSpec]:
        """Check ids, types, params, resources, upstreams and the DAG; return specs in a
        topological order that keeps each branch in submission order (`_lane_order`)."""
        keys: dict[str, JobSpec] = {}
        for spec in specs:
            if spec.id in keys or spec.id in existing:
                raise InvalidRequest(
                    f"job id {spec.id!r} is used twice in the workflow; give each job its own id"
                )
            keys[spec.id] = spec
        for spec in specs:
            upstream: list[UpstreamSpec] = []
            for dep in spec.depends_on:
                if dep in keys:
                    upstream.append(UpstreamSpec(dep, keys[dep].type, keys[dep].slide))
                elif dep in existing:
                    up = existing[dep]
                    upstream.append(UpstreamSpec(dep, up.job_type, up.slide))
                else:
                    raise InvalidRequest(
                        f"job {spec.id!r} depends on unknown job {dep!r}: depends_on names "
                        "jobs of the same workflow"
                    )
            params = self.params(spec)
            executor = self.executors[str(spec.type)]
            needs = executor.resources(params)
            if not self.scheduler.fits(needs.items()):
                raise InvalidRequest(
                    f"job {spec.id!r}: {self.unfit_reason(needs)}: "
                    'run it on the CPU (device = "cpu") or on a machine that has it'
                )
            try:
                executor.validate(spec, Path(spec.slide), params, tuple(upstream))
            except ValueError as exc:
                raise InvalidRequest(f"job {spec.id!r}: {exc}") from None
        ordered = _lane_order(specs, set(keys))
        if len(ordered) < len(specs):
            placed = {spec.id for spec in ordered}
            cycle = _a_cycle([spec for spec in specs if spec.id not in placed], placed)
            raise InvalidRequest(
                f"dependency cycle: {' -> '.join(cycle)} (each job depends on the next, so "
                "none can start); remove one of these depends_on"
            )
        return ordered

    def check_fits(self, job: Job, verb: str) -> None:
        """Refuse to `verb` (retry, rerun) a job whose resources this engine can never give."""
        needs = self.needs(job)
        if not self.scheduler.fits(needs.items()):  # it would wait forever
            raise InvalidRequest(
                f"job {job.key!r} {self.unfit_reason(needs)}: it cannot run on this machine; "
                f'submit it anew with device = "cpu", or {verb} it on a machine that has it'
            )

    def unfit_reason(self, needs: Mapping[str, int]) -> str:
        have = ", ".join(f"{k}={v}" for k, v in sorted(self.scheduler.capacity.items()))
        want = ", ".join(f"{k}={v}" for k, v in sorted(needs.items()) if v > 0)
        return f"needs {want} but this engine has {have or 'none'}"

    def upgraded(self, job: Job) -> dict[str, Any] | None:
        """A stored job's params read leniently (`lenient_params`), or None when they need no
        change or cannot be read so."""
        executor = self.executors.get(str(job.job_type))
        if executor is None:
            return None
        return lenient_params(executor.params_model, dict(job.params))

    def needs(self, job: Job) -> dict[str, int]:
        """Resources a job holds while running (R9); params were validated at submission."""
        executor = self.executors.get(str(job.job_type))
        if executor is None:
            return {}
        try:
            return dict(executor.resources(executor.params_model.model_validate(job.params)))
        except ValidationError:
            return {}  # the job fails with the message when it starts


def _lane_order(specs: Sequence[JobSpec], keys: set[str]) -> list[JobSpec]:
    """A topological order of an acyclic submission that keeps each branch's jobs in the order
    they were submitted (R1: a lane is FIFO by entry `seq`, and seqs follow this order).

    A depth-first order pulled a job forward in its branch when a job of another branch
    listed earlier depended on it: branch B submitted as [b1, b2] ran b2 first because job x
    of branch A, listed before both, needs b2. Here the next job is always the earliest
    submitted branch head whose dependencies are placed; only when no branch head can go (a
    job depends on one submitted after it in its own branch) does the earliest submitted job
    whose dependencies are placed go first, since no lane order could ever run otherwise.
    Jobs on a dependency cycle are left out (the caller refuses the submission). Iterative: a
    chain of thousands of jobs listed last-first ran a recursive depth-first search out of
    stack (RecursionError).
    """
    index = {spec.id: i for i, spec in enumerate(specs)}
    unmet = {spec.id: sum(d in keys for d in spec.depends_on) for spec in specs}
    dependents: dict[str, list[str]] = {}
    lanes: dict[str, deque[str]] = {}
    for spec in specs:
        lanes.setdefault(spec.branch, deque()).append(spec.id)
        for dep in spec.depends_on:
            if dep in keys:
                dependents.setdefault(dep, []).append(spec.id)
    placed: set[str] = set()
    heads: list[tuple[int, str]] = []  # branch heads whose dependencies are placed
    free: list[tuple[int, str]] = [(index[k], k) for k, n in unmet.items() if n == 0]
    heapq.heapify(free)

    def head_of(branch: str) -> None:
        lane = lanes[branch]
        while lane and lane[0] in placed:
            lane.popleft()
        if lane and unmet[lane[0]] == 0:
            heapq.heappush(heads, (index[lane[0]], lane[0]))

    for branch in lanes:
        head_of(branch)
    by_key = {spec.id: spec for spec in specs}
    ordered: list[JobSpec] = []
    while len(ordered) < len(specs) and (heads or free):
        source = heads if heads else free
        _, key = heapq.heappop(source)
        if key in placed:
            continue
        placed.add(key)
        ordered.append(by_key[key])
        for child in dependents.get(key, ()):
            unmet[child] -= 1
            if unmet[child] == 0:
                heapq.heappush(free, (index[child], child))
                branch = by_key[child].branch
                if lanes[branch] and lanes[branch][0] == child:
                    heapq.heappush(heads, (index[child], child))
        head_of(by_key[key].branch)
    return ordered


def _a_cycle(stuck: Sequence[JobSpec], placed: set[str]) -> list[str]:
    """A dependency cycle among the jobs `_lane_order` could not place: each waits for an
    unplaced job, so following unplaced dependencies from the first listed one must come back
    to a job already on the path."""
    by_key = {spec.id: spec for spec in stuck}
    path: list[str] = []
    seen: dict[str, int] = {}
    key = stuck[0].id
    while key not in seen:
        seen[key] = len(path)
        path.append(key)
        key = next(d for d in by_key[key].depends_on if d in by_key and d not in placed)
    return [*path[seen[key] :], key]
