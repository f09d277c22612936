"""How much memory a SEGMENT_CELLS job needs, from its params, checked before anything runs.

The estimate is budget arithmetic, not a measurement at run time:

    peak ≈ BASE + batch × input² × per_px + READ_AHEAD_BYTES

- BASE: the process with torch, instanseg and the model loaded (0.8 GB measured: 839-911 MB
  peak RSS with default tiles, README's measurements).
- per_px: bytes per model-input pixel of one tile in a batch. On CPU the network's
  activations live in host memory: 245 B/px (measured: 5.1 GB peak at tile_size 4096, i.e.
  4192² px inputs, against 0.9 GB at 672² px). On a GPU only the tile, its tensor, labels and
  extraction temporaries stay on the host: 64 B/px.
- READ_AHEAD_BYTES: tiles read ahead of the model are bounded in bytes (see `read_window`).

The default budget is 1.5 GB (`memory_gb`). A job whose estimate is over it is refused at
submission with one line naming the largest tile_size (or batch_size) that fits.
"""

from __future__ import annotations

import math

from wsitui.jobs.segment_cells.plan import ALIGN, overlap_for

GB = 1e9
BASE_BYTES = 0.8 * GB
CPU_BYTES_PER_PX = 245
GPU_HOST_BYTES_PER_PX = 64
READ_AHEAD_BYTES = 64 * 2**20
DEFAULT_BUDGET_GB = 1.5
MODEL_PX_UM = 0.5  # every supported model reads 0.5 µm/px (the planner's input size uses it)


def input_size(tile_size: int, max_nucleus_um: float, model_px: float = MODEL_PX_UM) -> int:
    """The model input side for a tile (as `plan.plan_tiles` computes it)."""
    need = overlap_for(max_nucleus_um, model_px)
    return math.ceil((tile_size + 2 * need) / ALIGN) * ALIGN


def estimate_bytes(tile_size: int, batch: int, max_nucleus_um: float, on_gpu: bool) -> float:
    side = input_size(tile_size, max_nucleus_um)
    per_px = GPU_HOST_BYTES_PER_PX if on_gpu else CPU_BYTES_PER_PX
    return BASE_BYTES + batch * side * side * per_px + READ_AHEAD_BYTES


def check_budget(
    *, tile_size: int, batch: int, max_nucleus_um: float, on_gpu: bool, budget_gb: float
) -> None:
    """Raise ValueError (one line) when the params need more than `budget_gb`."""
    need = estimate_bytes(tile_size, batch, max_nucleus_um, on_gpu)
    budget = budget_gb * GB
    if need <= budget:
        return
    where = "GPU host" if on_gpu else "CPU"
    head = (
        f"tile_size {tile_size} with batch_size {batch} needs about {need / GB:,.1f} GB on "
        f"{where}, over the memory budget of {budget_gb:g} GB"
    )
    best_tile = largest_tile(batch, max_nucleus_um, on_gpu, budget)
    best_batch = largest_batch(tile_size, max_nucleus_um, on_gpu, budget)
    fixes = []
    if best_batch >= 1 and best_batch < batch:
        fixes.append(f"batch_size {best_batch} is the largest that fits")
    if best_tile >= 64:
        fixes.append(f"tile_size {best_tile} is the largest that fits with batch_size {batch}")
    if not fixes:
        fixes.append("no tile_size fits")
    raise ValueError(f"{head}: {'; '.join(fixes)} (or raise memory_gb)")


def largest_tile(batch: int, max_nucleus_um: float, on_gpu: bool, budget: float) -> int:
    """The largest tile_size (a multiple of ALIGN, >= 64) within `budget` bytes, or 0."""
    best = 0
    tile = 64
    while tile <= 4096 and estimate_bytes(tile, batch, max_nucleus_um, on_gpu) <= budget:
        best = tile
        tile += ALIGN
    return best


def largest_batch(tile_size: int, max_nucleus_um: float, on_gpu: bool, budget: float) -> int:
    side = input_size(tile_size, max_nucleus_um)
    per_px = GPU_HOST_BYTES_PER_PX if on_gpu else CPU_BYTES_PER_PX
    room = budget - BASE_BYTES - READ_AHEAD_BYTES
    return max(0, int(room // (side * side * per_px)))


def read_window(tile_bytes: int, batch: int, threads: int) -> int:
    """Tiles read ahead of the model: enough to keep the model fed (2 batches, or one per
    reader thread), never more than READ_AHEAD_BYTES of pixels (at least one tile)."""
    want = max(2 * batch, threads + 1)
    return max(1, min(want, READ_AHEAD_BYTES // max(1, tile_bytes)))
