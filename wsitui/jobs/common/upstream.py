"""What a finished TISSUE_MASK job hands downstream: its tile grid and its mask.

Downstream job types (SEGMENT_CELLS) read these from the upstream job's results dir to skip
background tiles; they import this module, never the TISSUE_MASK executor.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from wsitui.core.executor import JobError
from wsitui.jobs.common.grid import TILES_FILE, TILES_FORMAT, TileGrid
from wsitui.jobs.common.manifest import MANIFEST_FILE
from wsitui.slides.errors import quoted
from wsitui.slides.reader import SlideReader

MASK_FILE = "tissue_mask.png"


def finished_file(results_dir: Path, name: str, job_type: str = "TISSUE_MASK") -> Path:
    path = Path(results_dir) / name
    if not path.is_file():
        raise JobError(f"{quoted(path)} does not exist; run the {job_type} job (again) first")
    return path


def load_tile_grid(results_dir: Path) -> TileGrid:
    """The tiles.json of a finished TISSUE_MASK job (JobError if missing or unreadable)."""
    path = finished_file(results_dir, TILES_FILE)
    try:
        grid = TileGrid.model_validate_json(path.read_bytes())
    except (OSError, ValueError) as e:
        first = str(e).splitlines()[0]
        raise JobError(f"{quoted(path)} is unreadable ({first}); rerun the TISSUE_MASK job") from e
    if grid.format != TILES_FORMAT:
        raise JobError(
            f"{quoted(path)} has format {grid.format!r}, expected {TILES_FORMAT!r}; "
            "rerun the TISSUE_MASK job"
        )
    return grid


def load_tissue_mask(results_dir: Path) -> tuple[np.ndarray, tuple[float, float]]:
    """(mask bool array, level-0 px per mask px (x, y)) of a finished TISSUE_MASK job."""
    grid = load_tile_grid(results_dir)
    path = finished_file(results_dir, MASK_FILE)
    try:
        with Image.open(path) as img:
            mask = np.asarray(img.convert("L")) > 0
    except OSError as e:
        raise JobError(f"{quoted(path)} is unreadable ({e}); rerun the TISSUE_MASK job") from e
    if mask.shape != grid.mask_shape:
        raise JobError(
            f"{quoted(path)} is {mask.shape[1]}x{mask.shape[0]} px but tiles.json says "
            f"{grid.mask_shape[1]}x{grid.mask_shape[0]}; rerun the TISSUE_MASK job"
        )
    return mask, grid.mask_downsample


def _px(dims: tuple[int, int]) -> str:
    return f"{dims[0]:,}x{dims[1]:,} px"


def check_same_slide(
    results_dir: Path, up_key: str, up_type: str, reader: SlideReader
) -> str | None:
    """JobError (one line) if the slide file this job opened is not the one the finished
    upstream job in `results_dir` read (replaced by another scan: its level-0 size or byte
    count differ); a warning to keep if only its modification time moved (touched, or copied
    back without keeping times: a cohort with `match = "hash"` calls that unchanged too).

    Nothing is said when the upstream manifest cannot be read or predates these fields: the
    callers' own checks of the upstream outputs apply."""
    try:
        then = json.loads((Path(results_dir) / MANIFEST_FILE).read_bytes())["slide"]
        dims = (int(then["dimensions"][0]), int(then["dimensions"][1]))
        size, mtime_ns = then.get("bytes"), then.get("mtime_ns")
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    now_size, now_mtime = reader.file_identity or (None, None)
    if dims != tuple(reader.dimensions):
        what = f"{_px(dims)} then, {_px(reader.dimensions)} now"
    elif size is not None and now_size is not None and size != now_size:
        what = f"{size:,} bytes then, {now_size:,} now"
    elif mtime_ns is not None and now_mtime is not None and mtime_ns != now_mtime:
        return (
            f"slide {quoted(reader.path)} was modified since {up_type} {up_key!r} read it (same "
            f"size); its outputs were used as they are: rerun {up_key!r} if the content changed"
        )
    else:
        return None
    raise JobError(
        f"slide {quoted(reader.path)} changed since {up_type} {up_key!r} read it ({what}), so "
        f"its outputs are of another file: rerun {up_key!r} (TUI: R on it), then retry this job"
    )
