"""How the TUI draws a job's phase: a badge label and a CSS class for each `JobPhase`.

The phase itself (and why a pending job is not running) comes from `wsitui.core.phase`, the one
derivation every face shares; this module only decides the look.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from wsitui.core.phase import JobPhase, PhaseInfo, Resources, job_phases
from wsitui.core.records import Job


@dataclass(frozen=True, slots=True)
class Badge:
    label: str
    reason: str
    css: str  # one of: running succeeded failed canceled pending blocked waiting held
    # The key that gets the job going ("press s to start"), shown on a line of its own: at
    # the end of the reason a narrow card cut it off (80x24 with three lanes, and 120x40).
    hint: str = ""
    upstream: str | None = None  # BLOCKED: the failed or canceled job's key; `r` retries it


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


_UPSTREAM = re.compile(r"^upstream (\S+) (?:failed|canceled)$")  # core/phase.py's BLOCKED


def badge_for(info: PhaseInfo) -> Badge:
    label, css = _LOOK[info.phase]
    reason = info.reason
    if info.phase is JobPhase.HELD:  # "not started yet" said again what the hint says
        return Badge(label, "", css, "press s to start")
    if info.phase is JobPhase.BLOCKED:
        reason = reason.removesuffix("; retry it to go on")
        m = _UPSTREAM.match(reason)
        up = m.group(1) if m else None
        hint = f"r retries {up}" if up else "retry upstream to go on"
        return Badge(label, reason, css, hint, upstream=up)
    return Badge(label, reason, css)


def badges(
    jobs: Sequence[Job], waiting: Sequence[str] = (), resources: Resources | None = None
) -> dict[str, Badge]:
    """The badge of every job of one workflow; `waiting`: tenants waiting for a slot;
    `resources`: the engine's (in use, cap) per resource (a ready job says it waits for one)."""
    phases = job_phases(jobs, waiting, resources)
    return {job_id: badge_for(info) for job_id, info in phases.items()}
