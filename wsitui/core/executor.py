"""The contract between the engine and per-job-type executors.

An executor is a plugin for one job type, named by its `job_type` string (the engine knows no
job type of its own: it runs the ones it is given, `wsitui.jobs.registry` lists them). Its life
with an engine:

- `params_model` declares the job's params (pydantic, `extra="forbid"`); the engine validates a
  job's params once, at submission, and hands the executor the parsed model at run time.
- `validate` is called at submission with the parsed params and the specs of the jobs this one
  depends on (`UpstreamSpec`), so an executor can refuse what it cannot run ("needs a mask
  job upstream on the same slide") before anything runs.
- `resources(params)` names what a running job holds besides a worker (e.g. `{"gpu": 1}`);
  `capacity()` says how much of each resource the machine has. Both are scheduling rules: a job
  starts only when its resources are free (R9 in `rules.py`). Beside them `resource_labels`
  says how a face names a resource a ready job waits for ("waiting for the GPU"); one it does
  not name reads "a free <name>" (`resource_label`).
- `open()` / `close()` run once with the engine: create shared, expensive things lazily (a
  loaded model) and release them on close.
- `run(ctx)` does the work. CPU work goes off the event loop through `ctx.to_thread`, which uses
  the executor type's own bounded thread pool (`threads`, raised to the engine's `max_workers`:
  a job the scheduler started never waits for a thread, so RUNNING means running and
  `max_workers` bounds how many run, R2; a cap on jobs of one type at once would be a
  resource, R9). Inside a thread the executor reports
  progress and its stage, checks for cancellation at tile boundaries and saves checkpoints
  through the JobContext, all of which are safe from any thread.

Results: `ctx.results_dir` is created by the engine. Its contents are kept when a job resumes
within one attempt (per-tile shards under `ctx.shards_dir` make resume cheap) and cleared when a
new attempt (a retry) starts, except `ctx.shards_dir`: a retry reuses the shards still valid for
it, so an executor must check each shard before use (`wsitui.jobs.common.shards` does: job,
plan, key and checksum). A run abandoned past `cancel_grace` keeps `cancel_requested()` true
forever, and a new attempt gets a new context: an executor fences its writes on it
(`wsitui.jobs.common.files`), so a discarded run's late output never reaches its retry.

What the layers above read instead of naming a job type (class attributes, so a face or the
config reads them from the registry without an engine): `config_section` (its own table in the
config file and its defaults), `result_neutral` (params that change no result: a stored job
that differs only in those is resumed, not redone), `totals` (counters metrics sum over all jobs),
`outputs` (the files a face shows, by kind), `dialog_fields` (what the add-job dialog offers),
`short_name` (a job card's title); from a finished job's manifest `found_line` (what the
detail screen says it found) and `summary_fields` (the columns it fills in a cohort's summary
row, those it names in `summary_columns`); and at run time `clusters()` (a typed cluster
status) and `dashboard_link` (a link to where the job's work runs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from wsitui.core.records import Job, JobSpec, JobState

T = TypeVar("T")


class JobCanceled(Exception):
    """Raised by an executor (via JobContext.check_cancel) to stop at a tile boundary."""


class JobError(Exception):
    """A failure with a one-line message meant for the user (the job ends FAILED with it)."""


class NoParams(BaseModel):
    """Params model of an executor that takes none."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class UpstreamSpec:
    """A dependency as known at submission (it may be submitted in the same call)."""

    key: str
    job_type: str
    slide: str


@dataclass(frozen=True, slots=True)
class UpstreamJob:
    """A dependency as an executor sees it at run time (it has SUCCEEDED, by rule R4)."""

    key: str
    job_id: str
    job_type: str
    slide: str
    state: JobState
    results_dir: Path


class SectionModel(BaseModel):
    """An executor's own table in the config file: defaults for its jobs' params."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def apply(self, params: dict[str, Any]) -> dict[str, Any]:
        """A job's params with the defaults this table sets (a job's own params win)."""
        return dict(params)


@dataclass(frozen=True, slots=True)
class ConfigSection:
    """`[name]` in the config file, read with `model` (its defaults when the table is absent)."""

    name: str
    model: type[SectionModel]


@dataclass(frozen=True, slots=True)
class Total:
    """A counter jobs report (`JobContext.report(..., counters)`) that metrics sum over every
    job of the type, served as the Prometheus counter `metric`."""

    counter: str  # the key in Job.counters, e.g. "cells"
    metric: str  # e.g. "wsitui_cells_found_total"
    help: str


class Output(StrEnum):
    """Kinds of output a face knows how to show (the slide viewer's overlays)."""

    TISSUE = "tissue"  # a GeoJSON of tissue regions
    CELLS = "cells"  # a GeoJSON of cell outlines


class DialogField(StrEnum):
    """Params the add-job dialog has a field for; a job type lists those it takes."""

    MODEL = "model"  # a model name or path
    DEVICE = "device"  # where the model runs ("auto" leaves it unset)


class WorkerRate(Protocol):
    """One worker of a cluster, as a face shows it."""

    @property
    def address(self) -> str: ...
    @property
    def threads(self) -> int: ...
    @property
    def gpus(self) -> int: ...
    @property
    def tiles(self) -> int: ...  # tiles this session's jobs ran on it
    @property
    def tiles_per_s(self) -> float: ...


class ClusterStatus(Protocol):
    """A compute cluster an executor runs tiles on, as a face shows it."""

    @property
    def address(self) -> str: ...  # scheduler address
    @property
    def local(self) -> bool: ...  # the session's own local cluster
    @property
    def dashboard(self) -> str: ...  # its dashboard link ("" without one)
    @property
    def workers(self) -> Sequence[WorkerRate]: ...
    @property
    def tiles_per_s(self) -> float: ...


class CheckpointStore(Protocol):
    def load(self) -> dict[str, Any] | None: ...

    def save(self, state: Mapping[str, Any], tiles_done: int) -> None:
        """Durably record progress; after a crash the job resumes from the last save."""
        ...


class JobContext(Protocol):
    job: Job
    params: BaseModel  # the executor's params_model, parsed from job.params
    results_dir: Path  # created by the engine, inside the data dir
    shards_dir: Path  # results_dir / "shards": per-tile results, kept on resume
    upstream: tuple[UpstreamJob, ...]
    checkpoint: CheckpointStore

    def report(
        self, tiles_done: int, tiles_total: int, counters: Mapping[str, int] | None = None
    ) -> None:
        """Progress. Within one attempt tiles_done never goes down (lower values are ignored)
        unless `restart_progress` was called first. A run that starts from an earlier run's
        work (kept shards, a checkpoint) reports that count first, before any new tile:
        metrics count the tiles and counters after it as this run's work."""
        ...

    def restart_progress(self, reason: str) -> None:
        """Say honestly that the work starts over from tile 0 (e.g. a checkpoint was unusable)."""
        ...

    def set_stage(self, stage: str) -> None:
        """What the job does now, shown by every face: "loading model", "writing outputs"."""
        ...

    def cancel_requested(self) -> bool: ...

    def check_cancel(self) -> None:
        """Raise JobCanceled if the user (or shutdown) asked this job to stop."""
        ...

    async def to_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work in this job type's bounded thread pool."""
        ...


# How faces name each resource a ready job may wait for (`phase.resource_wait`): the GPU here,
# every other resource as its executor class declares it in `resource_labels`.
_RESOURCE_LABELS: dict[str, str] = {"gpu": "the GPU"}


def resource_label(name: str) -> str:
    """What a ready job waiting for resource `name` waits for: its declared label, else
    "a free <name>"."""
    return _RESOURCE_LABELS.get(name) or f"a free {name}"


class Executor:
    """Base class with the defaults; an executor overrides what it needs."""

    # How a face names a resource this type declares (beside its caps in `capacity`) when a
    # ready job waits for it, e.g. {"fpga": "an FPGA"}: registered when the class is defined,
    # one label per resource name across all types. Unnamed: "a free <name>".
    resource_labels: ClassVar[Mapping[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, label in cls.__dict__.get("resource_labels", {}).items():
            if _RESOURCE_LABELS.setdefault(name, label) != label:
                raise ValueError(
                    f"{cls.__name__} labels resource {name!r} {label!r}, which is already "
                    f"labelled {_RESOURCE_LABELS[name]!r}; use that label or another name"
                )

    job_type: ClassVar[str]  # the name jobs give as their `type` (upper case by convention)
    params_model: ClassVar[type[BaseModel]] = NoParams
    threads: ClassVar[int] = 2  # this job type's own thread pool size (at least max_workers)
    short_name: ClassVar[str] = ""  # a job card's title (the name when empty)
    config_section: ClassVar[ConfigSection | None] = None
    result_neutral: ClassVar[frozenset[str]] = frozenset()  # params that change no result
    totals: ClassVar[tuple[Total, ...]] = ()
    outputs: ClassVar[Mapping[Output, str]] = {}  # kind: file name in the results dir
    dialog_fields: ClassVar[frozenset[DialogField]] = frozenset()
    summary_columns: ClassVar[tuple[str, ...]] = ()  # cohort summary columns summary_fields fills

    @classmethod
    def found_line(cls, manifest: Mapping[str, Any]) -> str:
        """One line a face shows of what a finished job found, from its manifest ("" when the
        type says nothing beyond the shared lines: model, tiles, timings, warnings)."""
        return ""

    @classmethod
    def summary_fields(cls, manifest: Mapping[str, Any], results_dir: Path) -> dict[str, object]:
        """The columns of a cohort's summary row a finished job of this type fills, by column
        name (among `summary_columns`), from its manifest and results; `{}` when it fills none.
        A value that cannot be read (a missing file, an older manifest) is left out, never
        raised."""
        return {}

    @classmethod
    def dashboard_link(cls, stage: str, results_dir: Path) -> str:
        """A link to where a job's work runs (e.g. a cluster dashboard), "" when none: from a
        running job's stage or a finished job's results (cheap: no cluster call)."""
        return ""

    def clusters(self) -> Sequence[ClusterStatus]:
        """The clusters this executor uses now (cheap: no cluster call); () when none."""
        return ()

    def resources(self, params: BaseModel) -> Mapping[str, int]:
        """Resources a running job holds besides its worker, e.g. {"gpu": 1}."""
        return {}

    def capacity(self) -> Mapping[str, int]:
        """How much of each resource this machine has for this job type, e.g. {"gpu": 2}."""
        return {}

    def validate(
        self, spec: JobSpec, slide: Path, params: BaseModel, upstream: Sequence[UpstreamSpec]
    ) -> None:
        """Raise ValueError with a one-line message if the job cannot run."""

    async def open(self) -> None:
        """Called once when the engine starts."""

    async def close(self) -> None:
        """Called once when the engine stops: release shared resources (models, pools)."""

    async def run(self, ctx: JobContext) -> None:
        raise NotImplementedError
