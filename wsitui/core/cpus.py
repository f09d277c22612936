"""The CPUs this process may run on: what the jobs' worker counts and the models' CPU threads
are sized by (one answer for both layers above)."""

from __future__ import annotations

import os


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS says, else all)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores or 1)
