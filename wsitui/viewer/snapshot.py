"""`wsitui view SLIDE --snapshot OUT.png --region X,Y,W,H [--width PX]`: one composed view to PNG.

The picture is `Compositor.compose` of `View.of_region(region, width)`: what the screen draws
for that region at that many pixels, overlays included.
"""

from __future__ import annotations

import errno
import math
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from wsitui.slides.reader import open_slide
from wsitui.slides.safe_write import AtomicFile
from wsitui.viewer.cells import CellIndex
from wsitui.viewer.compose import Compositor, Frame, Layers
from wsitui.viewer.tiles import DEFAULT_CACHE_MB, TileSource
from wsitui.viewer.tissue import TissueOutline
from wsitui.viewer.view import View

DEFAULT_WIDTH = 1280
MAX_WIDTH = 8192


@dataclass(frozen=True)
class SnapshotRequest:
    slide: Path
    out: Path
    region: tuple[float, float, float, float] | None  # level-0 x, y, w, h; None: whole slide
    width: int | None
    cells: Path | None = None
    tissue: Path | None = None
    cache_mb: float = DEFAULT_CACHE_MB


def parse_region(text: str) -> tuple[float, float, float, float]:
    """'X,Y,W,H' in level-0 px; ValueError with one line otherwise."""
    parts = re.split(r"\s*,\s*", text.strip())
    try:
        x, y, w, h = (float(p) for p in parts)
        if not all(math.isfinite(v) for v in (x, y, w, h)):  # nan, inf: no place on a slide
            raise ValueError
    except ValueError:
        raise ValueError(
            f"region {text!r} is not X,Y,W,H: give four numbers in level-0 px, "
            "e.g. 1000,2000,1280,800"
        ) from None
    if w <= 0 or h <= 0:
        raise ValueError(f"region {text!r} has no area: W and H must be > 0")
    return x, y, w, h


def load_compositor(
    slide: Path, cells: Path | None, tissue: Path | None, cache_mb: float = DEFAULT_CACHE_MB
) -> tuple[Compositor, list[str]]:
    """Open slide and overlays (raises SlideError / OverlayError); also the overlays' warnings."""
    reader = open_slide(slide)
    try:
        source = TileSource(reader, cache_mb)
        size = reader.dimensions
        cell_index = CellIndex.load(cells, size) if cells is not None else None
        outline = TissueOutline.load(tissue, size) if tissue is not None else None
    except BaseException:
        reader.close()
        raise
    warnings = [
        *(cell_index.warnings if cell_index else []),
        *(outline.warnings if outline else []),
    ]
    return Compositor(source, reader.mpp, cell_index, outline), warnings


def snapshot_frame(
    comp: Compositor, region: tuple[float, float, float, float] | None, width: int | None
) -> Frame:
    w0, h0 = comp.source.dimensions
    region = region or (0.0, 0.0, float(w0), float(h0))
    x, y, w, h = region
    if x + w <= 0 or y + h <= 0 or x >= w0 or y >= h0:
        raise ValueError(f"region {x:g},{y:g},{w:g},{h:g} lies outside the slide ({w0}x{h0} px)")
    chosen = width is None
    if width is None:  # not `or`: --width 0 was drawn 1280 px wide instead of refused
        width = min(DEFAULT_WIDTH, max(1, round(w)))
        if h / w * width > MAX_WIDTH:  # a tall region: as wide as lets its height fit
            width = max(1, math.floor(MAX_WIDTH * w / h))
    if not 1 <= width <= MAX_WIDTH:
        raise ValueError(
            f"width {width} px is out of range: the picture may be 1-{MAX_WIDTH} px a side"
        )
    height = h / w * width  # in this order: h * width overflows to inf for h near 1e308
    if height > MAX_WIDTH:
        shown = f"{height:,.0f}" if height < 1e15 else f"{height:.3g}"
        # At 1 px wide only a less tall region can fit (a narrower one would be taller still).
        hint = "a shorter region" if width == 1 or chosen else "a smaller --width"
        raise ValueError(
            f"the picture would be {width}x{shown} px, out of range: it may be 1-{MAX_WIDTH} "
            f"px a side; give {hint} or a region nearer its shape"
        )
    view = View.of_region((w0, h0), region, width)
    return comp.compose_sync(view, Layers())


def write_snapshot(req: SnapshotRequest) -> tuple[Frame, list[str]]:
    comp, warnings = load_compositor(req.slide, req.cells, req.tissue, req.cache_mb)
    try:
        frame = snapshot_frame(comp, req.region, req.width)
    finally:
        comp.source.close()
    try:
        req.out.parent.mkdir(parents=True, exist_ok=True)
        # Beside it and renamed over: a failed write (a full disk) leaves an earlier picture
        # whole. AtomicFile gives it the permissions any new file gets (0644 under umask 022);
        # mkstemp's 0600 made a picture other users (a web server, a colleague) could not open.
        with AtomicFile(req.out) as f:
            Image.fromarray(frame.rgb).save(f.file, format="PNG", optimize=True)
            f.commit()
    except OSError as exc:  # it said "[Errno 28] No space left on device", naming no file
        if exc.errno in (errno.EEXIST, errno.ENOTDIR):  # mkdir met a file on the way
            raise ValueError(
                f"snapshot '{req.out}' cannot be written: a part of its folder path is a file, "
                "not a folder; fix the path"
            ) from None
        raise ValueError(
            f"snapshot '{req.out}' cannot be written ({exc.strerror or exc}); check that its "
            "folder is a folder you can write to and its disk has room, or give another path"
        ) from None
    return frame, warnings


def check_snapshot_target(out: Path, *inputs: Path | None) -> None:
    """ValueError (one line) unless `out` can take a PNG without harming an input: a .png
    name, not a directory, not the slide or an overlay it shows (it would be overwritten)."""
    if out.is_dir():
        raise ValueError(f"snapshot '{out}' is a directory; give a file name such as view.png")
    if out.suffix.lower() != ".png":
        raise ValueError(f"snapshot '{out}' must be a .png file name, such as view.png")
    for i, path in enumerate(inputs):
        if path is not None and out.exists() and path.exists() and out.samefile(path):
            what = "the slide" if i == 0 else "an overlay file"
            raise ValueError(f"snapshot '{out}' is {what} itself; give another file name")
