"""Small training patches with exact instance labels, drawn by the slide generator itself.

`render_patch(style, size, seed, mpp)` cuts a patch out of a virtual sample slide of that
style and seed (the same `SamplePlan` drawing code as `wsitui sample`, so there is one
generator), at `mpp` µm/px: the slide is drawn at its own 0.499 µm/px and resampled when `mpp`
differs by more than 1 %. The patch goes through the style's JPEG quality like a slide tile.
Labels: int32, 0 = background, 1..n = nuclei; where nuclei overlap, the one drawn on top.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from wsitui.slides.sample import MPP, SamplePlan, rasterize_nuclei
from wsitui.slides.style import DEFAULT_STYLE, SampleStyle

PATCH_MIN, PATCH_MAX = 16, 4096
FIELD_SIDE = 2048  # the virtual slide a patch is cut from (its tissue shapes scale with it)


def patch_origin(
    style: SampleStyle, size: tuple[int, int], seed: int, mpp: float
) -> tuple[SamplePlan, int, int, int, int]:
    """(plan, x0, y0, w, h): the region of which virtual slide a patch is drawn from, in the
    slide's level-0 px (w, h differ from `size` when `mpp` differs from the slide's)."""
    w, h = (int(v) for v in size)
    if not (PATCH_MIN <= w <= PATCH_MAX and PATCH_MIN <= h <= PATCH_MAX):
        raise ValueError(f"patch size {w}x{h} is out of range: each side {PATCH_MIN}-{PATCH_MAX}")
    if not 0.05 <= mpp <= 10:
        raise ValueError(f"mpp {mpp} is out of range: use 0.05-10 µm/px")
    scale = 1.0 if math.isclose(mpp, MPP, rel_tol=0.01) else mpp / MPP
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    side = max(FIELD_SIDE, 2 * sw, 2 * sh)
    plan = SamplePlan(side, side, seed, style)
    rng = np.random.default_rng([seed, 7])
    for _ in range(200):  # a place whose centre is tissue (most of a sample is)
        x0, y0 = int(rng.integers(0, side - sw + 1)), int(rng.integers(0, side - sh + 1))
        if plan.tissue_at_points(np.array([x0 + sw / 2]), np.array([y0 + sh / 2]))[0] > 0:
            break
    return plan, x0, y0, sw, sh


def render_patch(
    style: SampleStyle = DEFAULT_STYLE,
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    mpp: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """(rgb uint8 (h, w, 3), instance labels int32 (h, w)) of a patch centred on tissue."""
    w, h = (int(v) for v in size)
    plan, x0, y0, sw, sh = patch_origin(style, (w, h), seed, mpp)
    rgb = plan.render_region(x0, y0, sw, sh)
    labels = rasterize_nuclei(plan_nuclei(plan, x0, y0, sw, sh), x0, y0, sw, sh)
    if (sw, sh) != (w, h):
        kind = Image.Resampling.BOX if sw > w else Image.Resampling.BICUBIC
        rgb = np.asarray(Image.fromarray(rgb).resize((w, h), kind))
        labels = np.asarray(Image.fromarray(labels).resize((w, h), Image.Resampling.NEAREST))
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=style.jpeg_quality)
    rgb = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    # Consecutive ids 1..n in the order they appear.
    ids, inverse = np.unique(labels, return_inverse=True)
    if ids[0] != 0:
        inverse = inverse + 1
    return rgb, inverse.reshape(labels.shape).astype(np.int32)


def plan_nuclei(plan: SamplePlan, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """Every nucleus of the plan that reaches the region (cells around it included)."""
    reach = plan.nucleus_reach
    nuclei, _, _ = plan.nuclei_in_cells(
        math.floor((x0 - reach) / plan.cell),
        math.floor((x0 + w + reach) / plan.cell) + 1,
        math.floor((y0 - reach) / plan.cell),
        math.floor((y0 + h + reach) / plan.cell) + 1,
    )
    return nuclei
