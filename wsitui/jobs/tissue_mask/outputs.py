"""What a TISSUE_MASK job writes in its results dir: the file names, the manifest's format,
and the preview (the slide with the mask in green)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from pydantic import BaseModel

from wsitui.jobs.common.grid import TILES_FILE
from wsitui.jobs.common.manifest import MANIFEST_FILE, JobManifest
from wsitui.jobs.common.upstream import MASK_FILE
from wsitui.slides.reader import SlideReader

JOB_TYPE = "TISSUE_MASK"
TILES_DIR = "tiles"
PREVIEW_FILE = "preview.png"
GEOJSON_FILE = "tissue.geojson"
ARCHIVE_FILE = "artifacts.zip"
MANIFEST_FORMAT = "wsitui.tissue_mask/2"
PREVIEW_MAX = 1024
# The preview is the mask's own image resized when that is at least preview size; when it is
# smaller, the slide's thumbnail is read if its level has at most this many times the
# preview's pixels (else the small image is enlarged: no coarse level to read).
PREVIEW_READ_RATIO = 16


class MaskMeta(BaseModel):
    file: str
    shape: tuple[int, int]  # (rows, cols)
    downsample: tuple[float, float]  # level-0 px per mask px, (x, y)
    level_read: int
    mpp: float  # µm per mask px
    mpp_assumed: bool  # level-0 µm/px was params.assumed_mpp (see warnings for why)
    threshold: float | None
    tissue_fraction: float


class GridMeta(BaseModel):
    file: str
    tile_size: int
    level: int
    cols: int
    rows: int
    tiles_total: int
    tissue_tiles: int


class TissueManifest(JobManifest):
    format: str = MANIFEST_FORMAT
    job_type: str = JOB_TYPE
    mask: MaskMeta
    grid: GridMeta
    regions: int  # tissue polygons in tissue.geojson
    archive: str | None  # artifacts.zip when the job's `archive` param asked for it


def preview_base(reader: SlideReader, image: np.ndarray | None = None) -> np.ndarray:
    """The slide at preview size: from `image` (the whole slide, e.g. the mask's own image)
    when that is at least preview size or when reading would mean decoding a much bigger level
    (no coarse level); else the slide's thumbnail.
    """
    level, (tw, th) = reader.thumbnail_plan(PREVIEW_MAX)
    lw, lh = reader.level_dimensions[level]
    if image is None:
        return reader.thumbnail(PREVIEW_MAX)
    big_enough = image.shape[1] >= tw and image.shape[0] >= th
    if not big_enough and lw * lh <= PREVIEW_READ_RATIO * tw * th:
        return reader.thumbnail(PREVIEW_MAX)
    if (image.shape[1], image.shape[0]) == (tw, th):
        return image
    # Area-average when shrinking; when the mask's image is the smaller one (a small slide
    # with no coarse level), smooth rather than blocky enlargement.
    kind = Image.Resampling.BOX if big_enough else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(image).resize((tw, th), kind))


PREVIEW_TINT = (0, 200, 0)
PREVIEW_EDGE = (0, 110, 0)


def render_preview(
    reader: SlideReader, mask: np.ndarray, image: np.ndarray | None = None
) -> np.ndarray:
    """Downscaled slide with the mask in translucent green (40 %) and its outline in dark green.

    image: the RGB the mask was computed from (TissueMask.image), used instead of reading the
    slide again (see preview_base). All in PIL's C code: the job's budget is a fraction of a
    second on the biggest slides.
    """
    base = Image.fromarray(preview_base(reader, image))
    w, h = base.size
    m = Image.fromarray(mask.view(np.uint8) * np.uint8(255)).resize((w, h), Image.NEAREST)
    tinted = Image.blend(base, Image.new("RGB", (w, h), PREVIEW_TINT), 0.4)
    out = Image.composite(tinted, base, m)
    # Outline: mask pixels with a non-mask 4-neighbour (beyond the image counts as mask).
    mm = np.asarray(m) > 0
    inner = mm.copy()
    inner[1:] &= mm[:-1]
    inner[:-1] &= mm[1:]
    inner[:, 1:] &= mm[:, :-1]
    inner[:, :-1] &= mm[:, 1:]
    edge = Image.fromarray((mm & ~inner).view(np.uint8) * np.uint8(255))
    out.paste(PREVIEW_EDGE, (0, 0, w, h), edge)
    return np.asarray(out)


def png_bytes(arr: np.ndarray, level: int = 1) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=level)
    return buf.getvalue()


OUTPUTS = (MASK_FILE, TILES_FILE, PREVIEW_FILE, GEOJSON_FILE, MANIFEST_FILE, ARCHIVE_FILE)


def clear_outputs(results_dir: Path) -> None:
    """Outputs of an earlier run go before new ones are written (the manifest first: a dir
    without one is not finished). Shards stay: they are this attempt's work."""
    for name in (MANIFEST_FILE, *OUTPUTS):
        (results_dir / name).unlink(missing_ok=True)
    shutil.rmtree(results_dir / TILES_DIR, ignore_errors=True)
