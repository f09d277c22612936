"""Live processes as /proc lists them, for the tests that look for what a run left behind.

A process name may hold any bytes, a `)` too, and need not be UTF-8 (a test's oddly named
process once crashed text scans of the whole machine in other tests), so /proc/PID/stat is cut
at its last `)` as bytes and decoded with replacement.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def stat_fields(pid: int | str) -> list[str]:
    """/proc/PID/stat's fields after the process name: state, ppid, pgrp, session, ..."""
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    return raw.rsplit(b")", 1)[1].decode(errors="replace").split()


def live_processes() -> Iterator[tuple[int, list[str], bytes]]:
    """(pid, `stat_fields`, raw NUL-separated command line) of every process that is not a
    zombie; one that ends while it is read is skipped."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = stat_fields(d.name)
            cmd = (d / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if stat[0] != "Z":
            yield int(d.name), stat, cmd
