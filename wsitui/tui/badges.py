"""How the TUI draws a job's phase: a badge label and a CSS class for each `JobPhase`.

The phase itself (and why a pending job is not running) comes from `wsitui.core.phase`, the one
derivation every face shares; this module only decides the look.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from wsitui.core.phase import JobPhase, PhaseInfo, job_phases
from wsitui.core.records import Job


@dataclass(frozen=True, slots=True)
class Badge:
    label: str
    reason: str
    css: str  # one of: running succeeded failed canceled pending blocked waiting held


_LOOK: Mapping[JobPhase, tuple[str, str]] = {
    JobPhase.HELD: ("HELD", "held"),
    JobPhase.BLOCKED: ("BLOCKED", "blocked"),
    JobPhase.AFTER: ("PENDING", "pending"),
    JobPhase.WAITING: ("WAITING", "waiting"),
    JobPhase.BEHIND: ("PENDING", "pending"),
    JobPhase.READY: ("PENDING", "pending"),
    JobPhase.RUNNING: ("RUNNING", "running"),
    JobPhase.SUCCEEDED: ("SUCCEEDED", "succeeded"),
    JobPhase.FAILED: ("FAILED", "failed"),
    JobPhase.CANCELED: ("CANCELED", "canceled"),
}


_PLACE = re.compile(r"^for a tenant slot \(#(\d+) in line\)$")  # core/phase.py's WAITING


def badge_for(info: PhaseInfo) -> Badge:
    label, css = _LOOK[info.phase]
    reason = info.reason
    if info.phase is JobPhase.HELD:
        reason = f"{reason}: press s" if reason else "press s to start"
    elif info.phase is JobPhase.WAITING:  # its place first: a card at 80 columns cut it off
        reason = _PLACE.sub(r"#\1 in line for a slot", reason)
    return Badge(label, reason, css)


def badges(jobs: Sequence[Job], waiting: Sequence[str] = ()) -> dict[str, Badge]:
    """The badge of every job of one workflow; `waiting`: tenants waiting for a slot."""
    return {job_id: badge_for(info) for job_id, info in job_phases(jobs, waiting).items()}
