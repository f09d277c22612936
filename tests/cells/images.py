"""Plain images wrapped as slides for the SEGMENT_CELLS tests and benchmark: a real one
(scikit-image's immunohistochemistry sample, no download) and 40x versions of generated ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image


def write_rgb_slide(path: Path, pixels: np.ndarray, mpp: float) -> Path:
    """A tiled, single-level TIFF OpenSlide opens with `mpp` (from its resolution tags)."""
    tifffile.imwrite(
        path,
        np.ascontiguousarray(pixels, np.uint8),
        tile=(256, 256),
        photometric="rgb",
        compression="jpeg",
        compressionargs={"level": 92},
        metadata=None,
        resolution=(1e4 / mpp, 1e4 / mpp),  # px per cm
        resolutionunit="CENTIMETER",
    )
    return path


def ihc_slide(path: Path, crop: int = 512, factor: int = 4, mpp: float = 0.6) -> Path:
    """skimage.data.immunohistochemistry() (colon, haematoxylin + DAB, 512²), its top-left
    `crop`² enlarged `factor`x and written at `mpp`, as the real-tissue issue wrapped it
    (2048² at 0.6 µm/px for the whole image)."""
    from skimage import data

    rgb = data.immunohistochemistry()[:crop, :crop]
    side = crop * factor
    big = np.asarray(Image.fromarray(rgb).resize((side, side), Image.Resampling.BICUBIC))
    return write_rgb_slide(path, big, mpp)


def forty_x_slide(path: Path, source: Path, region: tuple[int, int, int, int]) -> Path:
    """A 40x (half the MPP) slide from a generated 20x one: `region` (x, y, w, h) of its
    level 0, enlarged 2x (bicubic), written at half the MPP. The generator draws nuclei at its
    own pixel size only; this stands in until it draws them at 0.25 µm/px."""
    from wsitui.slides.reader import open_slide

    x, y, w, h = region
    reader = open_slide(source)
    try:
        rgb = reader.read_region((x, y), 0, (w, h))
        mpp = float(reader.mpp or 0.5)
    finally:
        reader.close()
    big = np.asarray(Image.fromarray(rgb).resize((2 * w, 2 * h), Image.Resampling.BICUBIC))
    return write_rgb_slide(path, big, mpp / 2)
