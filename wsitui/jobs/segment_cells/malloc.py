"""glibc's allocator tuned for tile inference: large tensors reused from the heap, not mmapped.

A tile's forward pass and instanseg's post-processing allocate and free tensors of tens of MB.
By default glibc serves each with a fresh `mmap` and unmaps it on free, so every tile pays for
~100,000 minor page faults (~400 MB of zeroed pages): measured 200-300 ms of system time per
672-px tile against 800-900 ms of user time (shipped model, one tile at a time, this 2-core
machine). A Dask nanny makes it worse (`MALLOC_TRIM_THRESHOLD_=65536` also switches off the
adaptive mmap threshold: 0.6-0.8 s per tile instead of 0.31-0.41 s).

`tune_malloc()` (process-wide, once, where a torch model runs on the CPU) stops mmapping chunks
(`M_MMAP_MAX = 0`: requests larger than a thread arena's heap are still mmapped by glibc's own
fallback), keeps up to `TRIM_THRESHOLD` of free heap before returning memory to the system and
grows the heap `TOP_PAD` at a time. Measured: page faults per tile ~100,000 -> under 1,000 once
warm, system time 200-300 -> 0-40 ms per tile, the same labels (README, "Where a tile's time
goes"). Not glibc (macOS, musl): nothing changes.
"""

from __future__ import annotations

import ctypes
import sys
import threading

TRIM_THRESHOLD = 256 << 20  # bytes of free heap kept before returning memory to the system
TOP_PAD = 64 << 20  # bytes the heap grows by beyond a request
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4  # glibc's mallopt parameters
_lock = threading.Lock()
_tuned: bool | None = None


def tune_malloc() -> bool:
    """Tune this process's allocator (see the module doc); True where it took effect."""
    global _tuned
    with _lock:
        if _tuned is None:
            _tuned = _mallopt()
        return _tuned


def _glibc() -> ctypes.CDLL | None:
    """This process's C library where it is glibc (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def _mallopt() -> bool:
    libc = _glibc()
    if libc is None:
        return False
    try:
        return all(
            libc.mallopt(param, value) == 1
            for param, value in (
                (_M_MMAP_MAX, 0),
                (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
                (_M_TOP_PAD, TOP_PAD),
            )
        )
    except AttributeError:  # a glibc-named library without mallopt
        return False


def release_free_memory() -> bool:
    """Give the free memory of every glibc arena back to the system (`malloc_trim(0)`): after a
    one-off burst on another thread, such as the CPU bf16 check's probe tiles, whose arena
    would otherwise keep it under `TRIM_THRESHOLD` for the rest of the process (measured: +350
    MB of peak RSS on a 40k x 30k job). True where it ran (glibc only)."""
    libc = _glibc()
    if libc is None:
        return False
    try:
        libc.malloc_trim(0)
        return True
    except AttributeError:
        return False
