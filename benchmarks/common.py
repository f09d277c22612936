"""What the benchmarks share: the repo root on sys.path, the slide cache, peak RSS, and a
slide's tissue tiles planned as a SEGMENT_CELLS job plans them."""

from __future__ import annotations

import resource
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sample(size: tuple[int, int], seed: int) -> Path:
    """A generated sample slide, made once into benchmarks/.cache."""
    from wsitui.slides.sample import write_sample_slide

    path = CACHE / f"cells_{size[0]}x{size[1]}_s{seed}.svs"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        print(f"generating {path.name} (once) ...", file=sys.stderr)
        write_sample_slide(path, size=size, seed=seed)
    return path


def tissue_plan(reader: Any, model_px: float, params: Any) -> Any:
    """The tissue tiles of an open slide at `model_px` µm/px, as a SEGMENT_CELLS job with
    `params` (SegmentCellsParams) plans them: its tissue mask computed here, from the slide."""
    from wsitui.jobs.segment_cells.plan import plan_tiles
    from wsitui.jobs.tissue_mask.mask import compute_tissue_mask

    tm = compute_tissue_mask(reader)
    return plan_tiles(
        reader,
        slide_mpp=reader.mpp or params.assumed_mpp,
        model_px=model_px,
        tile_size=params.tile_size,
        max_nucleus_um=params.max_nucleus_um,
        tissue=(tm.mask, tm.downsample),
    )
