"""Engine records: job states, and the specs and snapshots the engine hands out.

A job type is a name (a string, upper case by convention): the engine runs the types it has an
executor for and refuses the others at submission, naming the ones it knows.

Specs (what a user submits) are pydantic models because they arrive from the edges (config,
TUI dialogs). Workflow/Job records are frozen dataclasses: the engine creates many of them and
hands out immutable snapshots to faces.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

# Ids end up as directory names under the data dir: keep them to a safe alphabet so they can
# never contain a separator, "..", or a hidden-file dot at the start.
SAFE_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")  # \Z: "$" would accept a final newline
SAFE_ID_HINT = "use 1-64 letters, digits, '_' or '-', starting with a letter or digit"


def check_safe_id(kind: str, value: str) -> str:
    if not isinstance(value, str) or not SAFE_ID.match(value):
        raise ValueError(f"{kind} {value!r} is not allowed: {SAFE_ID_HINT}")
    return value


def _safe(kind: str) -> AfterValidator:
    return AfterValidator(lambda value: check_safe_id(kind, value))


# Characters a workflow name may not hold: they break its line (control characters, line and
# paragraph separators) or reorder how a terminal shows it (bidi controls: "a\u202eb" shows as
# "ab" reversed in one face and escaped in another). Joiners and variation selectors (emoji
# sequences) are allowed.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def check_workflow_name(value: str) -> str:
    """A workflow name is free text shown on one line in every face: not blank, and none of
    the characters that break a line or reorder a terminal's text."""
    if not value.strip():
        raise ValueError("workflow name is blank: give it a name")
    bad = next(
        (
            ch
            for ch in value
            if ch in _BIDI_CONTROLS or unicodedata.category(ch) in ("Cc", "Zl", "Zp")
        ),
        None,
    )
    if bad is not None:
        raise ValueError(
            f"workflow name {value!r} holds {bad!r}, a control or bidi character that breaks "
            "its line or reorders it on screen; remove it"
        )
    return value


WorkflowName = Annotated[str, AfterValidator(check_workflow_name)]

# Shared by specs and the config file: every id that can become a directory name.
TenantId = Annotated[str, _safe("tenant")]
JobKey = Annotated[str, _safe("job id")]
BranchName = Annotated[str, _safe("branch")]


class JobState(StrEnum):
    """A job's stored lifecycle state; `rules.SchedState` relates it to the other two views."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED)

    @property
    def run_again(self) -> str:
        """How a job that ended runs again ("" while it has not ended): a succeeded job is
        rerun, a failed or canceled one retried (engine.rerun / engine.retry)."""
        if self is JobState.SUCCEEDED:
            return "rerun it"
        return "retry it" if self.terminal else ""


class WorkflowState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


class JobSpec(BaseModel):
    """One job as submitted. `id` is unique within its workflow."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: JobKey
    type: str  # a job type's name, checked against the engine's executors at submission
    slide: str
    branch: BranchName = "main"
    depends_on: tuple[str, ...] = ()
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _type_nonempty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("job type is empty: give the name of a job type")
        return v

    @field_validator("slide")
    @classmethod
    def _slide_nonempty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("slide path is empty: give the path of a slide file")
        return v


class WorkflowSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: WorkflowName = Field(min_length=1, max_length=200)
    jobs: tuple[JobSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class Workflow:
    id: str
    tenant: str
    name: str
    created_at: float


# A job's tiles are this share of its work; its final stage after the last tile (writing its
# outputs and manifest) is the rest, done only when the job SUCCEEDED. A job that read 100 % of
# its tiles sat at 99-100 % through a long final write; at 95 % it says there is work left.
TILES_SHARE = 0.95


def whole_percent(progress: float) -> int:
    """A progress (0..1) as the whole percent a face shows: rounded down, so 99.6 % reads 99,
    and 100 only at 1.0 (every job SUCCEEDED), never before."""
    if progress >= 1.0:
        return 100
    return max(0, min(99, math.floor(progress * 100 + 1e-9)))


@dataclass(frozen=True, slots=True)
class Job:
    """Snapshot of a job. `id` is global; `key` is the user's id within the workflow."""

    id: str
    key: str
    workflow_id: str
    tenant: str
    job_type: str
    slide: str
    branch: str
    depends_on: tuple[str, ...]  # global job ids, same workflow
    params: dict[str, Any]
    state: JobState
    tiles_done: int = 0
    tiles_total: int = 0
    attempt: int = 1
    error: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    seq: int = 0  # lane entry order; lower = earlier
    enqueued: bool = True  # False: created but not started by the user yet
    blocked: bool = False  # an upstream failed or was canceled
    stage: str = ""  # what a running job is doing, as its executor says ("loading model", ...)
    counters: dict[str, int] = field(default_factory=dict)  # live counts, e.g. {"cells": 1234}
    crashes: int = 0  # process deaths while it ran with no checkpoint since (poison-job guard)
    interrupted: bool = False  # PENDING: a clean stop ended its run; it starts again first
    needs: dict[str, int] = field(default_factory=dict)  # resources held while running (R9)

    @property
    def held(self) -> bool:
        """Created but not started by the user yet."""
        return self.state is JobState.PENDING and not self.enqueued

    @property
    def progress(self) -> float:
        """Share of the job's work done, 0..1; 1.0 only once it SUCCEEDED. Its tiles are
        `TILES_SHARE` of it, what follows its last tile (writing its outputs) the rest: a job
        whose tiles are all done reads 95 % until it has written them."""
        if self.state is JobState.SUCCEEDED:
            return 1.0
        if self.tiles_total <= 0:
            return 0.0
        return TILES_SHARE * min(1.0, self.tiles_done / self.tiles_total)


@dataclass(frozen=True, slots=True)
class Transition:
    job_id: str
    ts: float
    state: JobState
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class WorkflowStatus:
    workflow: Workflow
    state: WorkflowState
    progress: float
    jobs: tuple[Job, ...] = field(default=())
    # Why a PENDING workflow does not run, from the engine's admission state (R3): its tenant
    # waits for a slot ("2nd in line for a tenant slot", `phase.workflow_wait`); "" otherwise.
    reason: str = ""


def job_id_for(workflow_id: str, key: str) -> str:
    return f"{workflow_id}.{key}"
