"""Where the tissue is: a whole-slide mask at low resolution, shared by the job types.

TISSUE_MASK maps it onto a tile grid and writes it out; SEGMENT_CELLS computes it when its DAG
has no TISSUE_MASK upstream on the same slide. The mask is computed at about `target_mpp`
(8 µm/px by default) from the pyramid level nearest that, area-averaged down when that level is
much finer (block by block, so memory stays bounded): grey level, an Otsu first split, then per
pixel a threshold between the local glass and tissue levels in optical density (soft edges,
pale or grainy stain; on a slide whose big tissue fades out, half-way in grey to the nearest
tissue's level: `_nearest_level_threshold`, and where the fade is wide, half its width past
where it leaves the glass: `_ramp_edges`), a 1-px closing; pieces under OWN_EDGE_MAX_UM2
re-cut at their own level (`_own_edges`: small and pale fragments; where nuclei pack one, also
at its level with haematoxylin unmixed away); objects told from debris by colour and area
(`keep_tissue_objects`); the edges of small pieces placed by the area their stain adds up to
(hard edges) or at half their local stain density (soft ones; `refine_edges`), against a glass
level taken clear of pale stain and fades (`_clear_glass`); ink crossing an edge decided by its
neighbours (`_ink_by_neighbours`); fat's net of septa filled (`_lace`); holes smaller than a
given area in µm² filled. Then, on slides with pieces under FINE_MAX_UM2, the band around those
pieces' edges is cut again from a finer level at about `edge_mpp` and the mask is returned that
much finer (`refine_fine`; TissueMask.downsample and .mpp say so). The mask image has at most
MAX_MASK_PIXELS (a JobError names the size and the fix); a pixel size the slide states that is
not plausible is replaced by `assumed_mpp`, loudly.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage

from wsitui.core.executor import JobError
from wsitui.jobs.common.mpp import resolve_mpp
from wsitui.slides.errors import quoted
from wsitui.slides.reader import SlideReader

MIN_CONTRAST = 8.0  # grey levels between Otsu classes; below that the level is one class
EDGE_FRACTION = 0.45  # where between glass and tissue OD the edge is (see mask_from_rgb)
LEVEL_BLOCK = 8  # mask px per block of the local level maps (a multiple of 2)
CORE_CELLS = 3  # 2-px cells between an edge of the first split and a cell that sets a level
LEVEL_SIGMA = 1.0  # blocks the local levels are Gaussian-weighted over
# Soft-edged slides (a fade wider than a few px around big tissue): each px's tissue level is
# the nearest tissue core's, not a mean over blocks, and the edge half-way in grey.
NEAR_LEVEL_SIGMA = 0.8  # ... the core's grey Gaussian-weighted over this (2-px cells; 0: off)
NEAR_LINEAR = 0.5  # ... the edge this share of the way from glass to tissue in grey
FADE_REACH_CELLS = 8  # the fade looked for this far out of big tissue (2-px cells) ...
FADE_SKIP_CELLS = 1  # ... beyond this (the blur and the px a hard edge part-covers)
FADE_HARD_CELLS = 0.45  # ... its cells per edge cell at or under which edges are hard
FADE_SOFT_CELLS = 0.65  # ... and at or over which they are soft (weights blended between)
RAMP_MIN_PX = 6.0  # a fade at least this wide (mask px) is cut by its own ramp (_ramp_edges)
RAMP_SPAN_PX = 14  # ... the slide's mean profile across the edge read this far either side
RAMP_REF_SIGMA = 1.5  # ... distances taken from the threshold's cut smoothed this much (px)
RAMP_FIT_SIGMA = 4.0  # ... the fade's outer half fitted by a line Gaussian-weighted over this
RAMP_FOOT_SKIP = 1.0  # ... less this many px at its foot (rounded by the glass's noise)
RAMP_KNEE_FROM = 0.6  # ... its knee fitted from this share of its width past the foot ...
RAMP_KNEE_PAST = 4.0  # ... to this many px past the knee
RAMP_BAND_PX = 3.0  # ... mask px this near the threshold's cut are cut again
RAMP_OFFSET_PX = 0.3  # ... this far inward of half-way (chosen on the tuning looks; 0: off)


class Ramp(NamedTuple):
    """_ramp_cut's settings, in px of the image it cuts (the RAMP_* constants for the mask)."""

    span: float  # RAMP_SPAN_PX
    ref_sigma: float  # RAMP_REF_SIGMA
    fit_sigma: float  # RAMP_FIT_SIGMA
    foot_skip: float  # RAMP_FOOT_SKIP
    knee_from: float  # RAMP_KNEE_FROM
    knee_past: float  # RAMP_KNEE_PAST
    band: float  # RAMP_BAND_PX
    offset: float  # RAMP_OFFSET_PX
    min_width: float  # RAMP_MIN_PX


def _coarse_ramp() -> Ramp:
    return Ramp(
        RAMP_SPAN_PX,
        RAMP_REF_SIGMA,
        RAMP_FIT_SIGMA,
        RAMP_FOOT_SKIP,
        RAMP_KNEE_FROM,
        RAMP_KNEE_PAST,
        RAMP_BAND_PX,
        RAMP_OFFSET_PX,
        RAMP_MIN_PX,
    )


CLOSE_PX = 1  # notches narrower than about twice this are closed
CLEAR_GLASS_PX = 8  # the glass level for edges: from glass this far from anything darker
CLEAR_WIDE_SIGMA = 4.0  # blocks it is weighted over where there is little such glass near
# The mask image: RGB, grey, labels (int32) and the mask at once stay under ~0.4 GB. At 8 µm/px
# that is 50 x 50 mm of glass, twice a slide's scan area.
MAX_MASK_PIXELS = 40_000_000
BAND_SOURCE_PIXELS = 16 * 2**20  # slide pixels read per band (one shard, one checkpoint)


class MaskParams(Protocol):
    """What the mask needs of a job's params (TissueMaskParams has these, and more)."""

    @property
    def target_mpp(self) -> float: ...
    @property
    def min_object_um2(self) -> float: ...
    @property
    def min_hole_um2(self) -> float: ...
    @property
    def assumed_mpp(self) -> float: ...
    @property
    def edge_mpp(self) -> float: ...


@dataclass(frozen=True, slots=True)
class MaskSettings:
    target_mpp: float = 8.0  # µm/px the mask is computed at
    min_object_um2: float = 10_000.0  # specks dropped
    min_hole_um2: float = 10_000.0  # holes filled
    assumed_mpp: float = 0.5  # level-0 µm/px when the slide does not say (or says nonsense)
    edge_mpp: float = 2.0  # µm/px edges are re-cut and the mask written at (0: target_mpp)


DEFAULTS = MaskSettings()


@dataclass(frozen=True, slots=True)
class MaskPlan:
    """Which level is read, at what size, in which bands: fixed before anything is read."""

    level: int
    size: tuple[int, int]  # (w, h) of the mask image
    bands: tuple[tuple[int, int], ...]  # output rows [r0, r1) per band
    mpp0: float  # level-0 µm/px used
    mpp_assumed: bool
    warning: str | None
    downsample: tuple[float, float]  # level-0 px per mask px, (x, y)


def plan_mask(reader: SlideReader, params: MaskParams) -> MaskPlan:
    """The read plan for the mask; JobError when it would exceed MAX_MASK_PIXELS."""
    mpp = resolve_mpp(reader, params.assumed_mpp)
    want_ds = max(1.0, params.target_mpp / mpp.mpp)
    level = reader.best_level_for_downsample(want_ds)
    lw, lh = reader.level_dimensions[level]
    factor = want_ds / reader.level_downsamples[level]
    # Within 1.25x of the target the level is used as it is (no resampling blur).
    size = (lw, lh) if factor <= 1.25 else (max(1, round(lw / factor)), max(1, round(lh / factor)))
    if size[0] * size[1] > MAX_MASK_PIXELS:
        w0, h0 = reader.dimensions
        raise JobError(
            f"slide {quoted(reader.path)}: a mask at {params.target_mpp:g} µm/px would be "
            f"{size[0]:,}x{size[1]:,} px, over the {MAX_MASK_PIXELS:,} px limit (the slide is "
            f"{w0 * mpp.mpp / 1000:,.0f}x{h0 * mpp.mpp / 1000:,.0f} mm at {mpp.mpp:g} µm/px); "
            "raise target_mpp, or set assumed_mpp if the slide's pixel size is wrong"
        )
    src_per_row = lw * (lh / size[1])
    rows = max(1, int(BAND_SOURCE_PIXELS // max(1.0, src_per_row)))
    bands = tuple((r, min(size[1], r + rows)) for r in range(0, size[1], rows))
    w0, h0 = reader.dimensions
    ds = (w0 / size[0], h0 / size[1])
    return MaskPlan(level, size, bands, mpp.mpp, mpp.source != "slide", mpp.warning, ds)


@dataclass(frozen=True, slots=True)
class TissueMask:
    mask: np.ndarray  # bool (rows, cols), True = tissue
    downsample: tuple[float, float]  # level-0 px per mask px, (x, y)
    level: int  # pyramid level that was read
    mpp: float  # µm per mask px (x)
    mpp_assumed: bool  # the slide had no (plausible) mpp; params' assumed_mpp was used
    threshold: float | None  # grey threshold; None when the image had no contrast
    timings: dict[str, float] = field(default_factory=dict)
    image: np.ndarray | None = field(default=None, repr=False, compare=False)  # RGB it came from
    warnings: tuple[str, ...] = ()


# Stain unmixing (Ruifrok & Johnston): optical density = h * H + e * E + r * (H x E).
_H = np.array([0.650, 0.704, 0.286])
_E = np.array([0.072, 0.990, 0.105])
_H, _E = _H / np.linalg.norm(_H), _E / np.linalg.norm(_E)
_N = np.cross(_H, _E) / np.linalg.norm(np.cross(_H, _E))
UNMIX = np.linalg.inv(np.column_stack([_H, _E, _N]))
INK_MIN_OD = 0.5  # ink inside a kept object: darker than this (OD norm) ...
INK_FRINGE_PX = 1  # px around ink cut out of the mask too unless stain-coloured (0: off)
INK_EOSIN_SHARE = -0.1  # ... with an eosin share under this (inks unmix below zero)
INK_NEAR_OD = 0.2  # a mask px this dark (OD norm) ...
INK_NEAR_EOSIN = 0.0  # ... with at most this eosin share is ink: it goes with its neighbours
INK_NEAR_PX = 4  # ... the nearest px not ink within this many px (0: off; _ink_by_neighbours)
MIN_EOSIN_SHARE = 0.08  # an object's eosin, over its whole OD: tissue has cytoplasm / stroma
MAX_RESIDUAL_SHARE = 0.45  # OD that is neither H nor E: dust, ink, brown or yellow debris
PALE_MAX_OD = 0.04  # an object paler than this (mean OD norm) is tissue whatever its colour
FLOOR_UM2 = 1500.0  # smaller objects are specks whatever they look like (~45 µm across)
THIN_UM = 120.0  # an object this thin (twice the largest inside distance), not H&E: ink
GLASS_MIN = 205.0  # glass is brighter than this grey; a brighter class darker than it is not glass
GLASS_WHITE = 243.0  # glass grey assumed when an image has none
SMALL_IMAGE_SHARE = 0.05  # min_object_um2 is at most this share of the image's area
OWN_EDGE_MAX_UM2 = 300_000.0  # pieces under this (~0.6 mm across) get their own edge
OWN_BLUR_PX = 1  # small pieces are judged on a 5 x 5 box blur: pale grainy stain is noisy
OWN_LEVEL_PERCENTILE = 25  # a small piece's own tissue level: this percentile of its grey
OWN_RIM_PX = 2  # how far in from a small piece's edge its own cut applies
OWN_EDGE_FRACTION = 0.5  # a small piece's edge: half its own median OD (see _own_edges)
OWN_STAIN_ONLY = True  # ... and half its level with haematoxylin unmixed away (nuclei packed)
OWN_PACKED_H_SHARE = 0.5  # ... where haematoxylin is at least this share of that level's OD
OWN_STAIN_FRACTION = 0.5  # ... the share of that level (in OD) a px is tissue at
OWN_STAIN_REACH_PX = 1  # ... within this many px of what the first cut kept (0: anywhere)
PALE_DELTA = 4.0  # grey levels under the glass a pale object starts at (at least)
MATCH_GROW_PX = 2  # an object's region for area matching: the mask grown by this (its fade)
MATCH_HARD_WIDTH = 1.5  # an edge whose part-stained band is at most this many px wide is hard
SOFT_BLUR_PX = 1.0  # a soft edge is judged on density smoothed over this (sigma, px)
SOFT_LEVEL_PX = 3.0  # its tissue level: density 2 px or more inside, weighted over this
SOFT_EDGE_FRACTION = 0.5  # where a soft edge is: half the tissue's density (the truth's)
LACE_HOLE_SHARE = 0.25  # a net enclosing this share of holes is lace-like tissue (fat; 0: off)
LACE_SCREEN_SHARE = 0.1  # ... looked for first on 2 x 2 px cells with this share
LACE_HOLE_FACTOR = 4.0  # ... of holes up to this many times min_hole_um2
LACE_MIN_HOLES = 5  # ... and has at least this many (a gap between two pieces is one or two)
MATCH_BIAS = 0.1  # of the rim px, left out of the matched area (no more glass than before)


def stain_like(mean_rgb: np.ndarray, glass_rgb: np.ndarray) -> np.ndarray:
    """(n,) bool: colours (n, 3) that haematoxylin and eosin make on this glass: some eosin,
    little that neither stain explains. Dust and black ink are grey (no eosin), blue or green
    ink has none either, brown, yellow and red debris are mostly residual.
    """
    od = -np.log10(np.clip(mean_rgb, 1.0, None) / np.maximum(glass_rgb, 1.0))
    od = np.clip(od, 0.0, None)
    _, e, r = (od @ UNMIX.T).T
    n = np.maximum(np.linalg.norm(od, axis=1), 1e-6)
    return (e >= MIN_EOSIN_SHARE * n) & (np.abs(r) <= MAX_RESIDUAL_SHARE * n) & (n > 0.02)


def keep_tissue_objects(
    mask: np.ndarray,
    rgb: np.ndarray,
    glass_rgb: np.ndarray,
    mpp: tuple[float, float],
    min_object_um2: float,
) -> np.ndarray:
    """Objects of `mask` that are tissue, told from dust and debris by more than area.

    An object (8-connected) is kept when it is at least `min_object_um2`, or when it is at least
    FLOOR_UM2 (capped at min_object_um2) and stain-coloured (`stain_like`) or paler than
    PALE_MAX_OD (too pale for its tint to be told): a small fragment of tissue is kept, a dark
    speck, a coloured one or a stroke of ink of the same size is not.
    A big object that is not stain-coloured and thin (a pen mark) is dropped too, except the
    pieces of it that are stain-coloured pixel by pixel and FLOOR_UM2 or more: a fragment that
    touches the ink. Ink inside what is kept (a stroke across an edge) is cut out of it
    (`_without_ink`).
    """
    px_area = mpp[0] * mpp[1]
    lab, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return mask
    on = lab > 0
    idx = lab[on]
    area = np.bincount(idx, minlength=n + 1).astype(np.float64)
    picked = rgb[on]
    sums = np.stack([np.bincount(idx, picked[:, c], minlength=n + 1) for c in range(3)], axis=1)
    colour = sums / np.maximum(area, 1.0)[:, None]
    stained = stain_like(colour, glass_rgb)
    if PALE_MAX_OD > 0:
        # Stain too pale for its colour to be told (JPEG keeps little of a faint tint): the
        # dust, specks and ink here are far darker, so a piece this pale is tissue.
        od = np.clip(-np.log10(np.clip(colour, 1.0, None) / np.maximum(glass_rgb, 1.0)), 0, None)
        stained |= np.linalg.norm(od, axis=1) < PALE_MAX_OD
    floor = min(FLOOR_UM2, min_object_um2) / px_area
    big = area >= min_object_um2 / px_area
    keep = (big | stained) & (area >= floor)
    odd = np.nonzero(big & ~stained)[0]
    odd = odd[odd > 0]
    if len(odd):
        boxes = ndimage.find_objects(lab)
        thin_px = THIN_UM / 2 / min(mpp)
        for i in odd:
            box = boxes[i - 1]
            inner = ndimage.distance_transform_edt(np.pad(lab[box] == i, 1))
            if inner.max() <= thin_px:
                keep[i] = False
    keep[0] = False
    out = keep[lab]
    # A fragment touching a pen stroke or a dark speck is one object with them, coloured like
    # the ink: of a dropped object, the stain-coloured pixels that make a piece of their own
    # (FLOOR_UM2, stain-coloured as a whole) are tissue.
    dropped = ~keep & (area >= floor)
    dropped[0] = False
    if dropped.any():
        where = dropped[lab]
        part = np.zeros_like(mask)
        part[where] = stain_like(rgb[where].astype(np.float64), glass_rgb)
        sub, m = ndimage.label(part, structure=np.ones((3, 3), bool))
        if m:
            s_on = sub > 0
            s_idx = sub[s_on]
            s_area = np.bincount(s_idx, minlength=m + 1).astype(np.float64)
            s_rgb = rgb[s_on]
            s_sum = np.stack(
                [np.bincount(s_idx, s_rgb[:, c], minlength=m + 1) for c in range(3)], axis=1
            )
            s_keep = (s_area >= floor) & stain_like(
                s_sum / np.maximum(s_area, 1)[:, None], glass_rgb
            )
            s_keep[0] = False
            out |= s_keep[sub]
    return _without_ink(out, rgb, glass_rgb, floor)


def _ink_tables(glass_rgb: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per channel, 256-entry tables of a uint8 value's eosin OD share and squared OD against
    `glass_rgb`: a pixel's eosin and OD norm in three lookups each, for the ink steps."""
    levels = np.arange(256, dtype=np.float64)
    lut = [
        np.clip(-np.log10(np.maximum(levels, 1.0) / max(float(gl), 1.0)), 0.0, None)
        for gl in glass_rgb
    ]
    e_lut = [(t * UNMIX[1, c]).astype(np.float32) for c, t in enumerate(lut)]
    sq_lut = [(t * t).astype(np.float32) for t in lut]
    return e_lut, sq_lut


def _without_ink(
    mask: np.ndarray, rgb: np.ndarray, glass_rgb: np.ndarray, floor: float
) -> np.ndarray:
    """The mask less the ink in it: connected pixels, at least `floor` of them, dark (OD over
    INK_MIN_OD) and with less than no eosin (blue, green and black inks unmix to a negative
    eosin share; haematoxylin, eosin and DAB do not), e.g. a pen stroke across an edge, and
    the px within INK_FRINGE_PX of it that are not stain-coloured (its rim).

    Per-channel OD from 256-entry tables, in row bands of ~1 M px (memory stays bounded)."""
    e_lut, sq_lut = _ink_tables(glass_rgb)
    # A channel of a pixel with OD norm over INK_MIN_OD is at least INK_MIN_OD / sqrt(3)
    # darker than the glass: only such pixels (a uint8 test) are looked at.
    dark = np.floor(np.min(glass_rgb) * 10 ** (-INK_MIN_OD / np.sqrt(3.0)))
    h, w = mask.shape
    inky = np.zeros_like(mask)
    rows = max(1, 2**20 // max(w, 1))
    for r0 in range(0, h, rows):
        sub = rgb[r0 : r0 + rows]
        low = np.minimum(np.minimum(sub[..., 0], sub[..., 1]), sub[..., 2]) <= dark
        at = np.flatnonzero(low & mask[r0 : r0 + rows])
        if len(at) == 0:
            continue
        px = sub.reshape(-1, 3)[at]
        e = e_lut[0][px[:, 0]] + e_lut[1][px[:, 1]] + e_lut[2][px[:, 2]]
        n = np.sqrt(sq_lut[0][px[:, 0]] + sq_lut[1][px[:, 1]] + sq_lut[2][px[:, 2]])
        inky[r0 : r0 + rows].ravel()[at] = (n >= INK_MIN_OD) & (e <= INK_EOSIN_SHARE * n)
    if inky.sum() < floor:
        return mask
    lab, m = ndimage.label(inky, structure=np.ones((3, 3), bool))
    big = np.bincount(lab.ravel(), minlength=m + 1) >= floor
    big[0] = False
    if not big.any():
        return mask
    ink = big[lab]
    out = mask & ~ink
    if INK_FRINGE_PX:
        # The stroke's rim: px part ink, part glass, too pale to be ink, not stain-coloured.
        fringe = _shift_reduce(ink, INK_FRINGE_PX, erode=False, outside=False) & out
        if fringe.any():
            at = np.flatnonzero(fringe)
            keep = stain_like(rgb.reshape(-1, 3)[at].astype(np.float64), glass_rgb)
            out.ravel()[at[~keep]] = False
    return out


def _ink_by_neighbours(
    mask: np.ndarray, rgb: np.ndarray, glass_rgb: np.ndarray, grey: np.ndarray, thr: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(the mask with ink decided by what is around it, the px that took away).

    A stroke of ink, a hair or a thread that crosses a piece's edge goes on over the glass,
    and its px there are dark: the threshold calls them tissue, and `_without_ink` leaves
    the ones it cannot tell at 8 µm (thin strokes mixed with glass, JPEG-tinted, in runs
    too short). Here every mask px coloured like ink (OD norm over INK_NEAR_OD, eosin share
    at most INK_NEAR_EOSIN: inks unmix to no or negative eosin, stain over tissue adds
    eosin) takes the value of the nearest px that is not, within INK_NEAR_PX: a stroke
    over the glass goes with the glass, one over tissue stays tissue, one along the edge is
    split where the edge is. Deeper ink (wider than twice that) keeps its value. A px's
    value is the mask's where its unblurred `grey` is also under the threshold `thr`: the
    blur the threshold is taken on spreads a stroke onto the glass px beside it."""
    e_lut, sq_lut = _ink_tables(glass_rgb)
    dark = np.floor(np.min(glass_rgb) * 10 ** (-INK_NEAR_OD / np.sqrt(3.0)))

    def inky(sub_rgb: np.ndarray, sub_mask: np.ndarray) -> np.ndarray:
        low = np.min(sub_rgb, axis=-1) <= dark
        at = np.flatnonzero(low & sub_mask)
        out = np.zeros(sub_mask.shape, bool)
        px = sub_rgb.reshape(-1, 3)[at]
        e = e_lut[0][px[:, 0]] + e_lut[1][px[:, 1]] + e_lut[2][px[:, 2]]
        n = np.sqrt(sq_lut[0][px[:, 0]] + sq_lut[1][px[:, 1]] + sq_lut[2][px[:, 2]])
        out.ravel()[at] = (n >= INK_NEAR_OD) & (e <= INK_NEAR_EOSIN * n)
        return out

    none = np.zeros_like(mask)
    # A px that changes is ink with a px off the mask within INK_NEAR_PX, so ink on the
    # mask's edge lies within INK_NEAR_PX of it: only blocks near such px are looked at.
    edge = mask & ~_shift_reduce(mask, 1, erode=True, outside=True)
    ey, ex = np.nonzero(edge)
    seed = inky(rgb[ey, ex][None], np.ones((1, len(ey)), bool))[0]
    if not seed.any():
        return mask, none
    h, w = mask.shape
    b, k = 32, INK_NEAR_PX
    blocks = np.zeros((-(-h // b), -(-w // b)), bool)
    for dy in (-k, k):
        for dx in (-k, k):
            blocks[np.clip(ey[seed] + dy, 0, h - 1) // b, np.clip(ex[seed] + dx, 0, w - 1) // b] = (
                True
            )
    out = mask.copy()
    for by, bx in zip(*np.nonzero(blocks), strict=True):
        r0, c0 = by * b, bx * b
        ys = slice(max(0, r0 - k), min(h, r0 + b + k))
        xs = slice(max(0, c0 - k), min(w, c0 + b + k))
        ink = inky(rgb[ys, xs], mask[ys, xs])
        if not ink.any():
            continue
        dist, (iy, ix) = ndimage.distance_transform_edt(ink, return_indices=True)
        near = ink & (dist <= k)
        near[: r0 - ys.start] = False
        near[r0 - ys.start + b :] = False
        near[:, : c0 - xs.start] = False
        near[:, c0 - xs.start + b :] = False
        ref = mask[ys, xs] & (grey[ys, xs] <= thr[ys, xs])
        out[ys, xs][near] = ref[iy[near], ix[near]]
    return out, mask & ~out


def clean_mask(mask: np.ndarray, min_object_px: float, min_hole_px: float) -> np.ndarray:
    """Drop 8-connected objects < min_object_px; fill enclosed 4-connected holes < min_hole_px."""
    out = mask.copy()
    if min_object_px > 1:
        lab, n = ndimage.label(out, structure=np.ones((3, 3), bool))
        small = np.bincount(lab.ravel(), minlength=n + 1) < min_object_px
        small[0] = False
        if small.any():
            out[small[lab]] = False
    if min_hole_px > 1:
        lab, n = ndimage.label(~out)
        small = np.bincount(lab.ravel(), minlength=n + 1) < min_hole_px
        small[0] = False
        # Background touching the border is outside the tissue, not a hole.
        small[np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])] = False
        if small.any():
            out[small[lab]] = True
    return out


def otsu(hist: np.ndarray) -> tuple[int, float, float]:
    """Otsu on a grey histogram: (t, mean of <= t, mean of > t).

    t maximises the between-class variance; the 256-bin histogram is ~10x cheaper than pixels.
    With a single occupied level there is no split: both means are that level.
    """
    levels = np.arange(len(hist), dtype=np.float64)
    w0 = np.cumsum(hist, dtype=np.float64)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * levels)
    valid = (w0 > 0) & (w1 > 0)
    if not valid.any():
        mean = float(s0[-1] / max(w0[-1], 1.0))
        return int(mean), mean, mean
    mu0 = np.divide(s0, w0, out=np.zeros_like(s0), where=valid)
    mu1 = np.divide(s0[-1] - s0, w1, out=np.zeros_like(s0), where=valid)
    between = np.where(valid, w0 * w1 * (mu0 - mu1) ** 2, -1.0)
    t = int(np.argmax(between))
    return t, float(mu0[t]), float(mu1[t])


def _shift_reduce(mask: np.ndarray, k: int, erode: bool, outside: bool) -> np.ndarray:
    """Square erosion (or dilation) by k px with boolean shifts, separable; pixels beyond the
    image count as `outside`."""
    out = mask
    for axis in (0, 1):
        src, out = out, out.copy()
        n = src.shape[axis]
        for d in range(1, min(k, n - 1) + 1):
            lo = [slice(None)] * 2
            hi = [slice(None)] * 2
            lo[axis], hi[axis] = slice(d, None), slice(None, -d)
            if erode:
                out[tuple(lo)] &= src[tuple(hi)]
                out[tuple(hi)] &= src[tuple(lo)]
            else:
                out[tuple(lo)] |= src[tuple(hi)]
                out[tuple(hi)] |= src[tuple(lo)]
        if erode != outside:  # the border band sees `outside` within k px
            band = [slice(None)] * 2
            for part in (slice(0, min(k, n)), slice(max(0, n - k), n)):
                band[axis] = part
                out[tuple(band)] = outside
    return out


def _threshold_map(
    g: np.ndarray, first: np.ndarray, fallback: tuple[float, float], big_px: float = 0.0
) -> tuple[np.ndarray, np.ndarray, float]:
    """(per-pixel grey threshold, local glass level per LEVEL_BLOCK-px block, how soft big
    tissue's edges are: `_fade_weight`, 0 when not looked at).

    The threshold is EDGE_FRACTION of the way from the local glass level to the local tissue
    level, each the mean grey of its class (of the first split) around the pixel,
    from pixels well inside that class only.

    On 2 x 2 px cells (PIL's C reduce): a cell counts for a class when it is wholly that class
    and CORE_CELLS cells away from the other (a fade or pale tissue near an edge would bias
    it). Counting cells' grey is summed over LEVEL_BLOCK-px blocks, Gaussian-weighted across
    blocks, the global class mean where no counting cell is near; the threshold is then
    interpolated back to pixels.
    """
    c, b = 2, LEVEL_BLOCK
    h, w = g.shape
    share = np.asarray(Image.fromarray(first.view(np.uint8) * np.uint8(255)).reduce(c))
    mean_all = np.asarray(Image.fromarray(g).reduce(c), np.float32)
    mean_t = np.asarray(Image.fromarray(np.where(first, g, 0)).reduce(c), np.float32)
    k = b // c
    ch, cw = share.shape
    bh, bw = -(-ch // k), -(-cw // k)
    pad = ((0, bh * k - ch), (0, bw * k - cw))
    levels = []
    for whole, mean, fb in (
        (share == 255, mean_t, fallback[0]),
        (share == 0, mean_all, fallback[1]),
    ):
        core = _shift_reduce(whole, CORE_CELLS, erode=True, outside=True)
        total = np.pad(np.where(core, mean, 0), pad).reshape(bh, k, bw, k).sum((1, 3))
        count = np.pad(core, pad).reshape(bh, k, bw, k).sum((1, 3), dtype=np.float32)
        total = ndimage.gaussian_filter(total, LEVEL_SIGMA, mode="nearest")
        count = ndimage.gaussian_filter(count, LEVEL_SIGMA, mode="nearest")
        levels.append(np.where(count > 0.05 * k * k, total / np.maximum(count, 1e-6), fb))
    tissue, glass = levels
    # EDGE_FRACTION of the way in optical density (stain is additive there, not in grey): a
    # fade whose stain thins out (Beer-Lambert) and one mixed linearly in RGB both cut near
    # half-way.
    g_lv, t_lv = np.maximum(glass, 1.0), np.clip(tissue, 1.0, None)
    thr = np.clip(g_lv * np.power(np.minimum(t_lv / g_lv, 1.0), EDGE_FRACTION), 0, 255)
    thr = thr.astype(np.uint8)
    # Block centres sit at (i + 0.5) * b: resizing to b x the size puts them there. Grey
    # levels are integers, so an integer threshold map (a quarter of a float one) loses
    # nothing but the interpolation's rounding.
    up = np.asarray(Image.fromarray(thr).resize((bw * b, bh * b), Image.Resampling.BILINEAR))
    up = up[:h, :w]
    soft = 0.0
    if NEAR_LEVEL_SIGMA > 0:
        soft = _fade_weight(share == 255, mean_all, big_px / (c * c))
        if soft > 0:
            near = _nearest_level_threshold(share == 255, mean_t, glass, (h, w))
            if near is not None:
                # g <= floor(t) is g <= t for integer grey: the float threshold exactly.
                mixed = near if soft >= 1.0 else soft * near + (1.0 - soft) * up
                up = np.floor(mixed).astype(np.uint8)
    return up, glass, soft


def _fade_weight(first: np.ndarray, mean: np.ndarray, big_cells: float) -> float:
    """0-1: how soft the edges of big tissue are, on 2 x 2 px cells (`first`: the first split,
    `mean`: the cells' grey): cells a little darker than the glass (PALE_DELTA or twice its
    noise) FADE_SKIP_CELLS to FADE_REACH_CELLS out of objects of `big_cells` or more, per
    edge cell of them. The glass has no shade and no nuclei, so only a fade makes such a band
    (pale fragments lie beside small pieces, which are cut at their own level anyway).
    Measured on the tuning and held-out sample slides: hard edges 0.0-0.24 (ink crossing
    them the most), fades of 26-40 µm up to 0.36, of 66 µm and more 0.66-2.4."""
    step = max(1, int(np.sqrt(first.size / 200_000)))
    gl = mean[::step, ::step][~first[::step, ::step]]
    if gl.size < 100 or not first.any():
        return 0.0
    level = float(np.median(gl))
    spread = float(np.percentile(gl, 95)) - level
    lab, n = ndimage.label(first, structure=np.ones((3, 3), bool))
    big = np.bincount(lab.ravel(), minlength=n + 1) >= big_cells
    big[0] = False
    if not big.any():
        return 0.0
    tissue = first if big[1:].all() else big[lab]
    near = _shift_reduce(tissue, FADE_REACH_CELLS, erode=False, outside=False)
    near &= ~_shift_reduce(first, FADE_SKIP_CELLS, erode=False, outside=False)
    band = np.count_nonzero(near & (mean < level - max(PALE_DELTA, 2.0 * spread)))
    edge = np.count_nonzero(tissue & ~_shift_reduce(tissue, 1, erode=True, outside=False))
    width = band / max(edge, 1)
    return float(np.clip((width - FADE_HARD_CELLS) / (FADE_SOFT_CELLS - FADE_HARD_CELLS), 0, 1))


def _nearest_level_threshold(
    first: np.ndarray, mean_t: np.ndarray, glass: np.ndarray, shape: tuple[int, int]
) -> np.ndarray | None:
    """The per-px threshold of a soft-edged slide (float, `shape`), or None with no core.

    A fade mixes the glass and the stain at the edge linearly in light, and the stain's
    shade varies along an edge (pale lavender beside deep pink, a dark rim round a hole):
    averaged over blocks, the tissue level at a pale stretch was the dark one beside it (cut
    inside the truth: `random6`'s sample slide missed 5.3 %) and at a thin strip between
    holes, one the fade never reaches, the paler body's (cut outside). Here each 2-px cell
    takes the level of its nearest core cell (CORE_CELLS from the first split, grey
    Gaussian-weighted over NEAR_LEVEL_SIGMA cells of core), and the edge is NEAR_LINEAR of
    the way from the glass level (the block map's) to it in grey: where the outer half of
    the fade (no nuclei) meets the inner (nuclei at full strength)."""
    c, k = 2, LEVEL_BLOCK // 2
    core = _shift_reduce(first, CORE_CELLS, erode=True, outside=True)
    if not core.any():
        return None
    ch, cw = core.shape
    weight = ndimage.gaussian_filter(core.astype(np.float32), NEAR_LEVEL_SIGMA)
    total = ndimage.gaussian_filter(np.where(core, mean_t, 0).astype(np.float32), NEAR_LEVEL_SIGMA)
    level = total / np.maximum(weight, 1e-6)
    iy, ix = ndimage.distance_transform_edt(~core, return_distances=False, return_indices=True)
    tissue = level[iy, ix]
    bh, bw = glass.shape
    up = Image.fromarray(glass.astype(np.float32), mode="F").resize(
        (bw * k, bh * k), Image.Resampling.BILINEAR
    )
    gl = np.asarray(up)[:ch, :cw]
    thr = np.clip(gl - NEAR_LINEAR * np.maximum(gl - tissue, 0.0), 0.0, 255.0)
    px = Image.fromarray(thr.astype(np.float32), mode="F").resize(
        (cw * c, ch * c), Image.Resampling.BILINEAR
    )
    h, w = shape
    out = np.asarray(px)[:h, :w]
    return np.pad(out, ((0, h - out.shape[0]), (0, w - out.shape[1])), mode="edge")


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    """Per px, its centre's distance (px) to the mask's edge: > 0 inside, < 0 outside."""
    inside = ndimage.distance_transform_edt(mask)
    outside = ndimage.distance_transform_edt(~mask)
    return np.where(mask, inside - 0.5, 0.5 - outside).astype(np.float32)


def _hinge(d: np.ndarray, g: np.ndarray, outer: bool, span: float, step: float = 0.1) -> float:
    """Where a mean profile `g` over distances `d` bends: flat then a line (`outer`: the glass
    then the fade) or a line then flat (the fade then the tissue), least squares over
    positions `step` px apart."""
    best, at = np.inf, 0.0
    for k in np.arange(-span - 2, span + 2.01, step):
        x = np.maximum(d - k, 0.0) if outer else np.maximum(k - d, 0.0)
        a = np.column_stack([np.ones_like(x), x])
        coef = np.linalg.lstsq(a, g, rcond=None)[0]
        r = float(((a @ coef - g) ** 2).sum())
        if r < best:
            best, at = r, float(k)
    return at


def _fade_width(
    mask: np.ndarray,
    d: np.ndarray,
    g: np.ndarray,
    span: float,
    where: np.ndarray | None = None,
    step: float = 0.1,
) -> float:
    """How wide (px) the fade of the slide's tissue edges is: the grey averaged over all edges
    by distance from the mask's edge (`d`; 0.5 px bins, `span` px either side) leaves the
    glass at one bend and reaches the tissue at another. Outside, only open glass counts (a
    hole narrower than the fade never reaches the glass); inside, only px whose nearest glass
    is open glass; only px in `where` if given. 0 when a bend lies at the end of what was
    read."""
    lab, _ = ndimage.label(~mask)
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    open_glass = np.isin(lab, border[border > 0])
    if not open_glass.any():
        return 0.0
    near = np.abs(d) < span
    if where is not None:
        near &= where
    inner = mask & near
    if not open_glass[~mask].all():  # holes: px nearer one than open glass are left out
        to_open = ndimage.distance_transform_edt(~open_glass)
        inner &= np.abs(to_open - 0.5 - d) < 1.0
    ends = []
    for sel, outer in ((open_glass & near, True), (inner, False)):
        bins = np.round(d[sel] * 2).astype(np.int64)
        if bins.size < 20:
            return 0.0
        lo = int(bins.min())
        count = np.bincount(bins - lo)
        total = np.bincount(bins - lo, g[sel])
        have = count > 0
        ends.append(
            _hinge((np.flatnonzero(have) + lo) / 2.0, total[have] / count[have], outer, span, step)
        )
    if max(abs(e) for e in ends) > span - 1:
        return 0.0  # a bend at the end of what was read: a fade wider than that, not measured
    return ends[1] - ends[0]


def _knee(u: np.ndarray, z: np.ndarray, width: float) -> float:
    """Where z, rising 1:1 with u (plus a constant), stops rising: least squares of
    z = min(u, k) + c over k between 0.7 and 1.3 `width`, 0.05 px apart (prefix sums over u
    sorted, so each k costs a search, not a pass)."""
    order = np.argsort(u)
    us, zs = u[order].astype(np.float64), z[order].astype(np.float64)
    a = zs - us  # the residual's part below the knee
    ca, caa = np.concatenate([[0], np.cumsum(a)]), np.concatenate([[0], np.cumsum(a * a)])
    cb, cbb = np.concatenate([[0], np.cumsum(zs)]), np.concatenate([[0], np.cumsum(zs * zs)])
    n = len(us)
    ks = np.arange(0.7 * width, 1.3 * width, 0.05)
    i = np.searchsorted(us, ks)  # px below each knee
    m = n - i
    sb, sbb = cb[n] - cb[i], cbb[n] - cbb[i]  # z of the px at or past it
    total = ca[i] + sb - ks * m
    squares = caa[i] + sbb - 2 * ks * sb + ks * ks * m
    sse = squares - total * total / n
    return float(ks[int(np.argmin(sse))])


def _ramp_edges(
    g: np.ndarray, mask: np.ndarray, glass: np.ndarray, big_px: float, dropped: np.ndarray
) -> tuple[np.ndarray, float]:
    """(the mask, its fade's width W in px or 0 when not measured): the edges of big tissue
    whose stain fades out over RAMP_MIN_PX px or more, cut again from the fade's own ramp
    (`g`: grey, `glass`: the glass level per LEVEL_BLOCK block).

    A fade mixes glass and stain linearly over a width W the same all round a slide; the
    truth's edge is half-way, W / 2 from where the fade leaves the glass (its foot). Half-way in
    grey needs the stain's level at the edge, and the nearest tissue's is not it where the shade
    drifts between the two or round a hole narrower than the fade (`wide120`'s sample slide:
    false tissue 6 % of the tissue, all round). The fade's outer half has no nuclei: per px a
    line is fitted to its grey against the distance from the threshold's cut (Gaussian-weighted
    over RAMP_FIT_SIGMA px, the foot's px left out), and where the line meets the glass is the
    foot there. W comes from the slide: the mean profile's bends (`_fade_width`) bound a fit
    of its knee, where the fade, measured from each px's own foot and scaled by its own slope,
    stops rising (`_knee`). Px within RAMP_BAND_PX of the cut, near pieces of `big_px` or
    more, are tissue from W / 2 + RAMP_OFFSET_PX past their foot on; `dropped` px (dust, ink)
    stay out.
    """
    # Work on the box around the tissue with glass to spare (an even offset: the same cells).
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return mask, 0.0
    h, w = g.shape
    rs = _coarse_ramp()
    pad = int(rs.span + 3 * rs.fit_sigma) + 4
    r0, c0 = max(0, rows[0] - pad) // 2 * 2, max(0, cols[0] - pad) // 2 * 2
    r1, c1 = min(h, rows[-1] + pad + 1), min(w, cols[-1] + pad + 1)
    bh, bw = glass.shape
    k = LEVEL_BLOCK
    up = Image.fromarray(glass.astype(np.float32), mode="F").resize(
        (bw * k, bh * k), Image.Resampling.BILINEAR
    )
    box = (slice(r0, r1), slice(c0, c1))
    cut, width = _ramp_cut(
        g[box].astype(np.float32), mask[box], np.asarray(up)[box], big_px, dropped[box], rs
    )
    if cut is None:
        return mask, width
    out = mask.copy()
    out[box] = cut
    return out, width


def _ramp_cut(
    gf: np.ndarray,
    mask: np.ndarray,
    glass: np.ndarray,
    big_px: float,
    dropped: np.ndarray,
    rs: Ramp,
    width: float | None = None,
    d: np.ndarray | None = None,
) -> tuple[np.ndarray | None, float]:
    """(_ramp_edges on a box of the image, or None when there is no fade to cut by; the
    fade's width in px, 0 when not measured). `glass`: the glass level per px; `rs` in the
    image's px; `width`: the fade's (px) and `d` the signed distance from the smoothed mask
    if measured elsewhere."""
    ref = ndimage.gaussian_filter(mask.astype(np.float32), rs.ref_sigma) >= 0.5
    if d is None:
        d = _signed_distance(ref)
    if width is None:
        width = _fade_width(ref, d, gf, rs.span)
    if not width >= rs.min_width:
        return None, width
    h, w = gf.shape
    y = glass - gf  # how far below the glass: 0 on glass, rising inward
    use = (d > -width / 2 + rs.foot_skip) & (d < 0.5)
    # The fit's sums on 2 x 2 px cells (its weights are 4 px wide: the foot is smooth).
    ch, cw = -(-h // 2), -(-w // 2)

    def wsum(v: np.ndarray) -> np.ndarray:
        cells = np.pad(np.where(use, v, np.float32(0)), ((0, 2 * ch - h), (0, 2 * cw - w)))
        cells = cells.reshape(ch, 2, cw, 2).sum(axis=(1, 3))
        return ndimage.gaussian_filter(cells, rs.fit_sigma / 2)

    one = np.ones_like(d)
    n, sx, sy, sxx, sxy = wsum(one), wsum(d), wsum(y), wsum(d * d), wsum(d * y)
    den = n * sxx - sx * sx
    with np.errstate(divide="ignore", invalid="ignore"):
        slope_c = (n * sxy - sx * sy) / den
        foot_c = -(sy - slope_c * sx) / (n * slope_c)
    ok_c = (n > 0.2) & (np.abs(den) > 1e-5) & (slope_c > 0) & np.isfinite(foot_c)
    if not ok_c.any():
        return None, width

    def to_px(v: np.ndarray) -> np.ndarray:
        big_v = Image.fromarray(np.where(ok_c, v, 0).astype(np.float32), mode="F")
        return np.asarray(big_v.resize((2 * cw, 2 * ch), Image.Resampling.BILINEAR))[:h, :w]

    # The knee: each px's distance from its nearest fit's foot, against its grey scaled by
    # that fit's slope, rises 1:1 up to W and stays flat after (nuclei only lift it).
    iy, ix = ndimage.distance_transform_edt(~ok_c, return_distances=False, return_indices=True)
    rows, cols = np.nonzero((d > -1) & (d < width / 2 + rs.knee_past))
    near_y, near_x = iy[rows // 2, cols // 2], ix[rows // 2, cols // 2]
    u = d[rows, cols] - foot_c[near_y, near_x]
    z = y[rows, cols] / slope_c[near_y, near_x]
    sel = (u > rs.knee_from * width) & (u < width + rs.knee_past)
    if np.count_nonzero(sel) < 20:
        return None, width
    knee = _knee(u[sel], z[sel], width)
    # Only near big pieces (small ones have their own edges) and never where dust was dropped.
    grown = _shift_reduce(mask, int(np.ceil(rs.band)), erode=False, outside=False)
    lab, m = ndimage.label(grown, structure=np.ones((3, 3), bool))
    big = np.bincount(lab[mask], minlength=m + 1) >= big_px
    big[0] = False
    # Px whose cells' fits all hold (bilinear weights reach the 4 cells around).
    ok = _shift_reduce(ok_c, 1, erode=True, outside=True)
    ok = np.repeat(np.repeat(ok, 2, axis=0), 2, axis=1)[:h, :w]
    redo = (np.abs(d) < rs.band) & ok & big[lab] & ~dropped
    out = mask.copy()
    out[redo] = (d - to_px(foot_c))[redo] >= knee / 2 + rs.offset
    return out, width


def _close(mask: np.ndarray, px: int) -> np.ndarray:
    """Square closing by px: notches and gaps narrower than about 2 px are filled."""
    grown = _shift_reduce(mask, px, erode=False, outside=False)
    return _shift_reduce(grown, px, erode=True, outside=True)


def _coarse_mask(
    rgb: np.ndarray, mpp: tuple[float, float], min_object_um2: float, min_hole_um2: float
) -> tuple[np.ndarray, float | None, Callable[[], np.ndarray] | None, np.ndarray | None, float]:
    """(tissue mask, first-pass Otsu threshold or None, the local glass grey per LEVEL_BLOCK
    block (computed when first asked for: only edge steps use it) or None, what was dropped
    as not tissue or None, how wide (µm) its big tissue's fade is as _ramp_edges measured it,
    0 for hard edges or none measured) of an RGB image at `mpp` µm/px.

    1. Grey (ITU-R 601 luma), Otsu on its histogram: a first tissue/glass split.
    2. Each pixel is then compared with its own threshold, EDGE_FRACTION of the way (in
       optical density) from the local glass level to the local tissue level (see
       _threshold_map): the edge of pale tissue or a soft edge that fades into the glass sits
       where the stain is half there, not wherever a global threshold happens to cut the
       fade. The grey is 3x3 box-blurred first (nuclei make single pixels noisy at ~8 µm/px).
       EDGE_FRACTION is a little under half because the tissue level includes nuclei, darker
       than the stain at the edge. Where big tissue's edges fade out (`_fade_weight`) the
       tissue level is the nearest tissue's and the edge half-way in grey
       (`_nearest_level_threshold`). An image whose brighter class is not glass (a crop of
       tissue) is all tissue when stain-coloured.
    3. Pieces under OWN_EDGE_MAX_UM2 are cut again at their own level (_own_edges).
    4. Objects are kept by colour and area (keep_tissue_objects; min_object_um2 is capped at
       SMALL_IMAGE_SHARE of the image); ink on a piece's edge goes with the px around it
       (_ink_by_neighbours: a stroke out over the glass is not tissue).
    5. The edges of pieces under OWN_EDGE_MAX_UM2 are placed sub-pixel-wise (refine_edges):
       a hard edge by the area its stain adds up to, a soft one at half its local density.
       A net of faint px enclosing many glass-white holes (fat) is filled in (_lace).
       Then holes under min_hole_um2 are filled.
    6. Where big tissue fades out over RAMP_MIN_PX px or more, its edge is cut again half the
       fade's width past where the fade leaves the glass (_ramp_edges), and holes filled again.
    """
    grey = Image.fromarray(rgb).convert("L")  # in C
    t, dark, bright = otsu(np.asarray(grey.histogram(), np.float64))  # C histogram: 5x bincount
    if bright - dark <= MIN_CONTRAST:
        # One class: blank glass if bright, all tissue if dark.
        g0 = np.asarray(grey)
        return np.full(g0.shape, float(g0.mean()) < 200.0), None, None, None, 0.0
    g = np.asarray(grey.filter(ImageFilter.BoxBlur(1)))
    if bright < GLASS_MIN:
        # No glass at all (a crop of tissue): Otsu split the tissue itself. It is all tissue
        # if it is stain-coloured against white glass.
        white = np.full(3, GLASS_WHITE)
        whole = bool(stain_like(rgb.reshape(-1, 3).mean(axis=0)[None], white)[0])
        return np.full(g.shape, whole), float(t), None, None, 0.0
    big_px = OWN_EDGE_MAX_UM2 / (mpp[0] * mpp[1])
    thr, glass_level, soft = _threshold_map(g, g <= t, (dark, bright), big_px)
    mask = g <= thr
    if CLOSE_PX:
        mask = _close(mask, CLOSE_PX)
    glass_rgb = _glass_colour(rgb, g > t, bright)
    smooth = np.asarray(grey.filter(ImageFilter.BoxBlur(OWN_BLUR_PX))) if OWN_BLUR_PX > 1 else g
    mask, pale = _own_edges(smooth, mask, g > t, mpp, min_object_um2, rgb, glass_rgb)
    # Pale tissue and its fade are brighter than the first split, so the map's glass level
    # was taken partly on them: the edge steps below (and the finer cut) take it from the
    # glass clear of anything darker than the glass instead (only slides with small pieces).
    busy = mask | pale
    glass_of: Callable[[], np.ndarray] = functools.cache(  # computed only if an edge step asks
        lambda: _clear_glass(g, busy, glass_level) if CLEAR_GLASS_PX else glass_level
    )
    # A small image (a 125 x 75 µm crop) is not thrown away whole by a slide-sized threshold.
    image_um2 = g.size * mpp[0] * mpp[1]
    candidates = mask
    mask = keep_tissue_objects(
        mask, rgb, glass_rgb, mpp, min(min_object_um2, SMALL_IMAGE_SHARE * image_um2)
    )
    if INK_NEAR_PX:
        mask, off = _ink_by_neighbours(mask, rgb, glass_rgb, np.asarray(grey), thr)
        candidates = candidates | off
    dropped = candidates & ~mask  # dust, specks, ink: a finer cut must not bring them back
    small_px = OWN_EDGE_MAX_UM2 / (mpp[0] * mpp[1])
    mask = refine_edges(np.asarray(grey, np.float32), mask, glass_of, small_px)
    area = mpp[0] * mpp[1]
    if LACE_HOLE_SHARE > 0:
        mask = _lace(mask, pale, dropped, min_hole_um2 / area, min_object_um2 / area)
    mask = clean_mask(mask, 0.0, min_hole_um2 / area)
    fade_um = 0.0
    if soft > 0 and RAMP_OFFSET_PX > 0:
        # On the filled mask: lumens and small holes are tissue, not edges to fade from.
        ramped, width = _ramp_edges(g, mask, glass_level, big_px, dropped)
        mask = clean_mask(ramped, 0.0, min_hole_um2 / area)
        fade_um = width * mpp[0]
    return mask, float(t), glass_of, dropped, fade_um


def _lace(
    mask: np.ndarray, pale: np.ndarray, dropped: np.ndarray, min_hole_px: float, min_px: float
) -> np.ndarray:
    """The mask with lace-like tissue filled in: fat (adipose) is white cells 30-150 µm across
    in thin pink septa, at 8 µm/px a net of faint px the threshold keeps only in pieces, and
    the cells are as white as the glass. Where what is a little darker than the glass (`pale`)
    or tissue forms a net whose enclosed holes (each under LACE_HOLE_FACTOR x min_hole_px:
    fat cells reach 150 µm) are at least LACE_HOLE_SHARE of the area it encloses, at least
    LACE_MIN_HOLES of them (and it encloses min_px or more), the whole of it is tissue. A
    piece with a few lumens or a fade around it encloses far less. What was dropped as dust,
    specks or ink (`dropped`) is neither net nor hole, and stays out (the faint rim around a
    pen stroke encloses it). Nets are looked for on 2 x 2 px cells first, with a looser
    share (LACE_SCREEN_SHARE: cells thicken the septa), and judged at full resolution only
    around the nets found there (a quarter of the labelling on most slides)."""
    cand = (mask | pale) & ~dropped
    h, w = cand.shape

    def cells(a: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(a.view(np.uint8) * np.uint8(255)).reduce(2)) > 0

    max_hole = LACE_HOLE_FACTOR * min_hole_px
    screen = _lace_nets(cells(cand), cells(dropped), max_hole / 4, min_px / 4, LACE_SCREEN_SHARE)
    if screen is None:
        return mask
    out = mask.copy()
    for box in ndimage.find_objects(screen):
        if box is None:
            continue
        ys = slice(max(0, 2 * box[0].start - 4), min(h, 2 * box[0].stop + 4))
        xs = slice(max(0, 2 * box[1].start - 4), min(w, 2 * box[1].stop + 4))
        nets = _lace_nets(cand[ys, xs], dropped[ys, xs], max_hole, min_px, LACE_HOLE_SHARE)
        if nets is not None:
            out[ys, xs] |= (nets > 0) & ~dropped[ys, xs]
    return out


def _lace_nets(
    cand: np.ndarray, dropped: np.ndarray, max_hole_px: float, min_px: float, share: float
) -> np.ndarray | None:
    """Labels of the lace-like nets of `cand` with their holes filled (see _lace), or None."""
    # Holes: 4-connected background off the image border, each small enough, not dropped.
    bg, nb = ndimage.label(~cand)
    if nb == 0:
        return None
    size = np.bincount(bg.ravel(), minlength=nb + 1)
    small = size < max_hole_px
    small[0] = False
    small[np.concatenate([bg[0], bg[-1], bg[:, 0], bg[:, -1]])] = False
    if np.count_nonzero(small) < LACE_MIN_HOLES:
        return None
    filled = cand | small[bg]
    holes = small[bg] & ~dropped
    # Each hole belongs to the net around it: label the filled image, count per net.
    flab, fn = ndimage.label(filled, structure=np.ones((3, 3), bool))
    hole_px = np.bincount(flab[holes], minlength=fn + 1)
    all_px = np.bincount(flab.ravel(), minlength=fn + 1)
    net_of = np.zeros(nb + 1, np.int64)
    net_of[bg[holes]] = flab[holes]
    n_holes = np.bincount(net_of[small & (net_of > 0)], minlength=fn + 1)
    lace = (hole_px >= share * all_px) & (all_px >= min_px)
    lace &= n_holes >= LACE_MIN_HOLES
    lace[0] = False
    if not lace.any():
        return None
    keep = np.where(lace, np.arange(fn + 1), 0)
    return keep[flab]


def mask_from_rgb(
    rgb: np.ndarray, mpp: tuple[float, float], min_object_um2: float, min_hole_um2: float
) -> tuple[np.ndarray, float | None]:
    """(tissue mask, first-pass Otsu threshold or None) of an RGB image at `mpp` µm/px, at
    that image's resolution (no finer level read: see _coarse_mask for the steps)."""
    mask, t, _, _, _ = _coarse_mask(rgb, mpp, min_object_um2, min_hole_um2)
    return mask, t


def _own_edges(
    g: np.ndarray,
    mask: np.ndarray,
    glass: np.ndarray,
    mpp: tuple[float, float],
    min_object_um2: float,
    rgb: np.ndarray | None = None,
    glass_rgb: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(the mask with each small piece of tissue cut at its own level, what is a little darker
    than the glass: pale stain, fades, specks).

    The threshold map takes its tissue level from the tissue around a pixel, which for a small
    or pale fragment is darker tissue nearby (or the slide's average): a pale piece is then
    cut too tight or missed. Here every object of "a little darker than the glass" (or of the
    mask) under min_object_um2 is cut half-way, in optical density, between the glass and its
    own level inside; bigger ones keep the map's edge. Colour is judged afterwards
    (keep_tissue_objects).

    A piece packed with nuclei has its darkest quarter on its nuclear clumps: half of that
    is darker than its pale stain between and around them, and its rim (or the whole of a
    ~50 µm piece) fell outside. With `rgb` (OWN_STAIN_ONLY) a px is also kept where its grey
    with the haematoxylin unmixed away (`_stain_only_grey`) is half-way to the same level
    taken on that grey, never paler than what counts as pale (PALE_DELTA, the glass noise).
    """
    step = max(1, int(np.sqrt(g.size / 200_000)))
    sample = g[::step, ::step][glass[::step, ::step]]
    none = np.zeros_like(mask)
    if sample.size < 100:
        return mask, none
    level = float(np.median(sample))
    # Glass noise from the bright side only: the bright class also holds fades and pale stain.
    spread = float(np.percentile(sample, 95) - level)
    pale = g <= level - max(PALE_DELTA, 2.0 * spread)
    cand = pale | mask
    lab, n = ndimage.label(cand, structure=np.ones((3, 3), bool))
    if n == 0:
        return mask, pale
    area = np.bincount(lab.ravel(), minlength=n + 1)
    px = mpp[0] * mpp[1]
    small = (area >= min(FLOOR_UM2, min_object_um2) / px) & (area < OWN_EDGE_MAX_UM2 / px)
    small[0] = False
    if not small.any():
        return mask, pale
    # Its level: the darkest quarter's grey (OWN_LEVEL_PERCENTILE) of what the map found of
    # it (the candidate also holds the fade), or of the whole candidate when the map found
    # little. All small objects at once: pixels sorted by (object, grey).
    on = lab > 0
    idx = lab[on]
    hit = mask[on]
    n_found = np.bincount(idx[hit], minlength=n + 1)
    use = small[idx] & (hit | (n_found[idx] < 4))
    ui, ug = idx[use], g[on][use]
    counts = np.bincount(ui, minlength=n + 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pick = starts + ((counts - 1).clip(0) * OWN_LEVEL_PERCENTILE / 100).astype(np.int64)

    def percentile_of(values: np.ndarray) -> np.ndarray:
        """Per piece, OWN_LEVEL_PERCENTILE of `values` over its px in `use` (`level` if none)."""
        ranked = values[np.lexsort((values, ui))].astype(np.float64)
        if not len(ranked):
            return np.full(n + 1, level, np.float64)
        return np.where(counts > 0, ranked[np.minimum(pick, len(ranked) - 1)], level)

    inside = percentile_of(ug)
    cut = level * (np.clip(inside, 1.0, level) / level) ** OWN_EDGE_FRACTION
    # Only the rim is decided again: what the map found well inside (lumens included) stays,
    # so a bright lumen near the edge is not opened to the glass.
    core = _shift_reduce(mask, OWN_RIM_PX, erode=True, outside=False)
    out = mask.copy()
    redo = on.copy()
    redo[on] = small[idx]
    keep = (g[redo] <= cut[lab[redo]]) | core[redo]
    if OWN_STAIN_ONLY and rgb is not None and glass_rgb is not None:
        # The same cut on the grey without haematoxylin: a nuclei-packed piece's pale stain.
        ge = np.full(g.shape, level, np.float32)
        ge[redo] = _stain_only_grey(rgb, redo, glass_rgb)  # `use` is in `redo`
        inside_e = percentile_of(ge[on][use])
        cut_e = level * (np.clip(inside_e, 1.0, level) / level) ** OWN_STAIN_FRACTION
        cut_e = np.minimum(cut_e, level - max(PALE_DELTA, 2.0 * spread))
        # Only where nuclei make much of the piece's darkest quarter: elsewhere the two agree.
        od_in = np.log10(level / np.clip(inside, 1.0, level))
        od_e = np.log10(level / np.clip(inside_e, 1.0, level))
        cut_e[od_e > (1.0 - OWN_PACKED_H_SHARE) * od_in] = 0.0
        more = ge[redo] <= cut_e[lab[redo]]
        if OWN_STAIN_REACH_PX > 0:
            # Within reach of what the first cut kept: between and just around the nuclei,
            # not out along a fade (its soft edge is placed later, refine_edges).
            first = out.copy()
            first[redo] = keep
            near = _shift_reduce(first, OWN_STAIN_REACH_PX, erode=False, outside=False)
            more &= near[redo]
        keep |= more
    out[redo] = keep
    return out, pale


def _stain_only_grey(rgb: np.ndarray, where: np.ndarray, glass_rgb: np.ndarray) -> np.ndarray:
    """The grey (luma) of `rgb`'s px at `where` (3x3 means, as the mask's grey is blurred)
    with their haematoxylin unmixed away: eosin and the rest of their optical density only.
    Only those px are looked at (small pieces: a slide of big tissue costs nothing)."""
    ys, xs = np.nonzero(where)
    h, w = where.shape
    px = np.zeros((len(ys), 3), np.float32)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            px += rgb[np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)]
    px /= 9.0
    glass = np.maximum(glass_rgb, 1.0).astype(np.float32)
    od = np.clip(-np.log10(np.maximum(px, 1.0) / glass), 0.0, None)
    h = np.clip(od @ UNMIX[0].astype(np.float32), 0.0, None)
    od -= h[:, None] * _H.astype(np.float32)[None]
    out = glass * np.power(np.float32(10.0), -od)
    return out @ np.array([0.299, 0.587, 0.114], np.float32)


def _clear_glass(g: np.ndarray, busy: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """The local glass grey per LEVEL_BLOCK-px block (as _threshold_map's), from 2 x 2 cells
    CLEAR_GLASS_PX px or more from anything `busy` (tissue, pale stain, their fades), weighted
    over LEVEL_SIGMA blocks, or CLEAR_WIDE_SIGMA blocks where that finds too few such cells
    (inside a big piece); `fallback`'s level where none is near at all."""
    c, b = 2, LEVEL_BLOCK
    share = np.asarray(Image.fromarray(busy.view(np.uint8) * np.uint8(255)).reduce(c))
    mean = np.asarray(Image.fromarray(g).reduce(c), np.float32)
    k = b // c
    ch, cw = share.shape
    bh, bw = -(-ch // k), -(-cw // k)
    if fallback.shape != (bh, bw):
        return fallback
    pad = ((0, bh * k - ch), (0, bw * k - cw))
    clear = _shift_reduce(share == 0, -(-CLEAR_GLASS_PX // c), erode=True, outside=True)
    total = np.pad(np.where(clear, mean, 0), pad).reshape(bh, k, bw, k).sum((1, 3))
    count = np.pad(clear, pad).reshape(bh, k, bw, k).sum((1, 3), dtype=np.float32)
    out = fallback.astype(np.float64)
    for sigma in (CLEAR_WIDE_SIGMA, LEVEL_SIGMA):
        t_s = ndimage.gaussian_filter(total, sigma, mode="nearest")
        c_s = ndimage.gaussian_filter(count, sigma, mode="nearest")
        ok = c_s > 0.05 * k * k
        out[ok] = t_s[ok] / c_s[ok]
    return out


def refine_edges(
    g: np.ndarray, mask: np.ndarray, glass_blocks: Callable[[], np.ndarray], max_px: float
) -> np.ndarray:
    """The mask with the edge of each object under `max_px` placed where the truth's is.

    Hard edges: at ~8 µm/px most pixels on a hard edge are part tissue, part glass, and
    area-averaging mixes their light linearly: a pixel's share of tissue is (glass - grey) /
    (glass - tissue). Summed over an object and the glass just around it (MATCH_GROW_PX) that
    is the object's true area in px, whatever a threshold would cut; the rim (the mask minus
    its 1-px erosion) then gets the pixels of the largest shares up to that area, less
    MATCH_BIAS of the rim (so no more glass is called tissue than the threshold did, measured
    on the tuning looks). The glass level is the local one (`glass_blocks()`, per
    LEVEL_BLOCK-px block, asked for only when there are small objects), the tissue level
    the object's mean grey 2 px inside its mask.

    Soft edges (stain fading over tens of µm, more than MATCH_HARD_WIDTH px of part-stained
    band per rim px) are not a mix of two levels: they are cut where the stain is half its
    own local density (_soft_edges). Bigger objects keep the threshold map's edge (measured:
    on big tissue with wide fades both steps did worse than the map).
    """
    region = _shift_reduce(mask, MATCH_GROW_PX, erode=False, outside=False)
    lab, n = ndimage.label(region, structure=np.ones((3, 3), bool))
    if n == 0:
        return mask
    # Small: under max_px of mask less the 1-px ring inside the rim (as measured); twice that
    # in mask px bounds it, so bigger objects' pixels are not even looked at.
    small = np.bincount(lab[mask], minlength=n + 1) < 2 * max_px
    small[0] = False
    if not small.any():
        return mask  # big tissue keeps the map's edge
    # Work on flat pixel lists of the small objects' thin bands (interiors are only counted).
    picked = small[lab]
    deep = _shift_reduce(mask, 2, erode=True, outside=False) & picked
    inner, band = np.flatnonzero(deep), np.flatnonzero(region & ~deep & picked)
    gf, lf = g.ravel(), lab.ravel()
    li_in = lf[inner]
    n_in = np.bincount(li_in, minlength=n + 1)
    tissue = np.bincount(li_in, gf[inner], minlength=n + 1) / np.maximum(n_in, 1)
    lb, gb = lf[band], gf[band]
    in_mask, in_core = (
        mask.ravel()[band],
        _shift_reduce(mask, 1, erode=True, outside=False).ravel()[band],
    )
    # Thin objects (nothing 2 px inside): their mask's mean grey is the tissue level.
    cnt = np.bincount(lb[in_mask], minlength=n + 1)
    thin = np.bincount(lb[in_mask], gb[in_mask], minlength=n + 1) / np.maximum(cnt, 1)
    tissue = np.where(n_in > 0, tissue, thin)
    # The glass level at each band pixel: the threshold map's, interpolated between blocks.
    rows, cols = np.divmod(band, g.shape[1])
    at = [(rows + 0.5) / LEVEL_BLOCK - 0.5, (cols + 0.5) / LEVEL_BLOCK - 0.5]
    blocks = glass_blocks().astype(np.float32)
    glass = ndimage.map_coordinates(blocks, at, order=1, mode="nearest")
    share = (glass - gb) / np.maximum(glass - tissue[lb], 3.0)
    # The inner pixels' shares sum to their count (their mean is the tissue level).
    area = n_in + np.bincount(lb, np.clip(share, -0.5, 1.5), minlength=n + 1)
    rim = in_mask & ~in_core
    n_rim = np.bincount(lb[rim], minlength=n + 1)
    mid = np.bincount(lb[(share > 0.15) & (share < 0.85)], minlength=n + 1)
    small &= (n_rim > 0) & (n_in + n_rim < max_px)
    hard = (mid <= MATCH_HARD_WIDTH * np.maximum(n_rim, 1)) & small
    hard[0] = False
    out = mask.copy()
    soft = ~hard & small
    soft[0] = False
    if soft.any():
        n_band = np.bincount(lb, minlength=n + 1)
        glass_of = np.bincount(lb, glass, minlength=n + 1) / np.maximum(n_band, 1)
        _soft_edges(g, out, lab, np.flatnonzero(soft), glass_of)
    if not hard.any():
        return out
    n_core = n_in + np.bincount(lb[in_core], minlength=n + 1)
    need = np.round(area - n_core - MATCH_BIAS * n_rim)
    redo = ~in_core & hard[lb]
    ri, rs = lb[redo], share[redo]
    order = np.lexsort((-rs, ri))
    counts = np.bincount(ri, minlength=n + 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(ri), np.int64)
    rank[order] = np.arange(len(ri)) - starts[ri[order]]
    out.ravel()[band[redo]] = rank < need[ri]
    return out


def _soft_edges(
    g: np.ndarray, out: np.ndarray, lab: np.ndarray, soft: np.ndarray, glass: np.ndarray
) -> None:
    """Re-cut, in `out`, the edge of each soft-edged object (labels `soft` of `lab`) where its
    stain is half there: optical density (from its own glass level `glass[label]`),
    SOFT_BLUR_PX-Gaussian-smoothed, over the local tissue level, the Gaussian-weighted
    (SOFT_LEVEL_PX) mean density of the mask 2 px or more inside. A fade's density is the
    tissue's times a ramp, so half of the tissue's own density *there* is the edge, even where
    the stain's strength varies along it; pixels with no tissue near are left as they were.
    """
    h, w = g.shape
    boxes = ndimage.find_objects(lab)
    for i in soft:
        box = boxes[i - 1]
        if box is None:
            continue
        pad = int(3 * SOFT_LEVEL_PX) + 3
        ys = slice(max(0, box[0].start - pad), min(h, box[0].stop + pad))
        xs = slice(max(0, box[1].start - pad), min(w, box[1].stop + pad))
        sub = out[ys, xs]
        od = np.log10(glass[i] / np.maximum(g[ys, xs], 1.0))
        deep = _shift_reduce(sub, 2, erode=True, outside=False)
        weight = ndimage.gaussian_filter(deep.astype(np.float32), SOFT_LEVEL_PX)
        level = ndimage.gaussian_filter(np.where(deep, od, 0.0), SOFT_LEVEL_PX)
        level /= np.maximum(weight, 1e-3)
        smooth = ndimage.gaussian_filter(od, SOFT_BLUR_PX)
        redo = (lab[ys, xs] == i) & ~deep & (weight > 0.02)
        sub[redo] = smooth[redo] >= SOFT_EDGE_FRACTION * np.maximum(level[redo], 0.01)


FINE_MAX = 4  # the written mask is at most this many times finer than target_mpp, per axis
MAX_FINE_PIXELS = 24_000_000  # ... and has at most this many px (grid, polygons, PNG stay fast)
FINE_BAND_PX = 3  # mask px either side of the coarse edge that are cut again at the fine level
FINE_MAX_UM2 = 1_000_000.0  # ... of objects under this (a needle core; big tissue keeps its edge)
FINE_BLOCK_PX = 64  # mask px per side of a refined block (each read on its own: memory flat)
FINE_PAD_PX = 8  # mask px of context around a block (the tissue level's reach)
FINE_BLUR_UM = 1.0  # the fine density is Gaussian-smoothed over this (µm, sigma)
FINE_DEEP_PX = 2  # the tissue level: density of the coarse mask this many mask px inside ...
FINE_DEEP_FALLBACK = True  # ... or as far inside as a piece goes (a ~60 µm piece: _deep_px)
FINE_NEAR_WEIGHT = 0.005  # band px are cut again where the level's Gaussian weight is over this
FINE_LEVEL_UM = 24.0  # ... Gaussian-weighted over this (µm, sigma)
FINE_OPEN_UM = 10.0  # darker spots narrower than this (nuclei) do not set the tissue level
FINE_SOFT_UM = 4.0  # a shallow fade is cut on density smoothed over this (µm, sigma) ...
FINE_SLOPE = 0.06  # ... where it rises less than this share of the tissue level per µm
FINE_WIDE_SLOPE = 0.017  # ... and where it rises less than this, the 8 µm edge stays
FINE_WIDE_NEAR = 0.2  # ... or, in a block, its median over px this near the cut's level (0: off)
FINE_BIG_HARD_UM2 = 100_000.0  # hard-edged slides, objects this big (~0.3 mm across): ...
FINE_LEVEL_OPEN_UM = 24.0  # ... the cut's level opened this wide (strokes; 0: off) ...
FINE_LEVEL_OPEN_SHARE = 0.7  # ... where that is under this share of the level
FINE_EDGE_FRACTION = 0.555  # the edge: where the density is this share of the tissue level
FINE_RAMP = True  # soft slides: the fine edges cut again on the fade's ramp (_fine_ramp) ...
FINE_RAMP_SPAN_UM = 64.0  # ... the profile across the edge read this far either side
FINE_RAMP_STEP_UM = 0.5  # ... its bends looked for this far apart
FINE_RAMP_KEEP_PX = 4_000_000  # ... fine px of density kept between measuring and cutting
FINE_RAMP_REF_UM = 3.0  # ... distances from the first cut smoothed this much
FINE_RAMP_FIT_UM = 12.0  # ... the fade's outer half fitted by a line weighted over this
FINE_RAMP_FOOT_UM = 2.0  # ... less this much at its foot
FINE_RAMP_KNEE_PAST_UM = 16.0  # ... its knee fitted to this far past it
FINE_RAMP_BAND_UM = 12.0  # ... fine px this near the first cut are cut again
FINE_RAMP_OFFSET_UM = 0.5  # ... this far inward of half-way (chosen on the tuning looks)
FINE_RAMP_MIN_UM = 16.0  # ... where the fade is at least this wide ...
FINE_RAMP_MAX_UM = 60.0  # ... at most this wide (wider: sample slides' lobes, measured) ...
FINE_RAMP_AGREE_UM = 16.0  # ... and as wide as the coarse step's _ramp_edges measured, +- this


def fine_factor(plan: MaskPlan, edge_mpp: float) -> int:
    """How many times finer than the coarse mask the written mask is, per axis: a power of 2,
    1 when edge_mpp is 0 (off) or not finer than the mask, at most FINE_MAX, never finer than
    level 0, and the mask under MAX_FINE_PIXELS."""
    if edge_mpp <= 0:
        return 1
    mask_mpp = plan.downsample[0] * plan.mpp0
    px = plan.size[0] * plan.size[1]
    f = 1
    while (
        2 * f <= FINE_MAX
        and mask_mpp / (2 * f) * 1.25 >= edge_mpp
        and min(plan.downsample) / (2 * f) >= 1.0
        and px * (2 * f) ** 2 <= MAX_FINE_PIXELS
    ):
        f *= 2
    return f


def fine_band(mask: np.ndarray, mpp: tuple[float, float]) -> np.ndarray:
    """The mask px cut again at the fine level: within FINE_BAND_PX of the edge of an object
    under FINE_MAX_UM2 (bigger tissue keeps the threshold map's edge: on the sample
    slides' wide fades a finer cut called more glass tissue, measured on the tuning looks)."""
    grown = _shift_reduce(mask, FINE_BAND_PX, erode=False, outside=False)
    band = grown & ~_shift_reduce(mask, FINE_BAND_PX, erode=True, outside=False)
    if not band.any():
        return band
    lab, n = ndimage.label(grown, structure=np.ones((3, 3), bool))
    small = np.bincount(lab[mask], minlength=n + 1) < FINE_MAX_UM2 / (mpp[0] * mpp[1])
    small[0] = False
    return band & small[lab]


def refine_fine(
    reader: SlideReader,
    plan: MaskPlan,
    mask: np.ndarray,
    glass_blocks: np.ndarray,
    dropped: np.ndarray,
    band: np.ndarray,
    f: int,
    min_hole_um2: float,
    check_cancel: Callable[[], None] | None = None,
    fade: float = 0.0,
) -> np.ndarray:
    """The mask `f` times finer per axis, its edges cut again on a finer pyramid level.

    At ~8 µm/px a 100 µm piece has a third of its area in its 1-px rim, and no rule on a rim
    pixel's mean light tells well which side of the true edge its centre lies. Here only the
    band of FINE_BAND_PX mask px either side of the coarse edge is looked at again, block by
    block (FINE_BLOCK_PX, only blocks the band crosses are read, so a big slide stays fast and
    memory-flat), at f times the resolution from the nearest finer level: a fine px is tissue
    where its density (optical density against the local glass level, smoothed over
    FINE_BLUR_UM) is at least FINE_EDGE_FRACTION of the local tissue level, the
    Gaussian-weighted density of the coarse mask FINE_DEEP_PX px or more inside. On a hard
    edge that is where a fine px is half tissue; on a fade (stain thinning out symmetrically
    across the edge) where it is half there. `glass_blocks` is the glass level clear of pale
    stain and fades (_clear_glass). A fade far wider than the band (slope under
    FINE_WIDE_SLOPE per px, or its median where the cut runs in a block) keeps the coarse
    edge. What the coarse mask dropped as dust, specks or ink is never added back; holes under
    min_hole_um2 are filled again. On a slide whose big tissue fades out (`fade`: the fade's
    width in µm as _ramp_edges measured it, > 0) the band is then cut again on the fade's own
    ramp (_fine_ramp). Around big tissue on a hard-edged slide (_big_hard_tissue) the level is
    taken again with dark strokes under FINE_LEVEL_OPEN_UM opened away (ink, fibres, folds
    raise the mean, and the pale stain beside them was cut off), used where it is under
    FINE_LEVEL_OPEN_SHARE of the usual one, and fine px coloured like ink are not tissue.
    """
    h, w = mask.shape
    fine = np.repeat(np.repeat(mask, f, axis=0), f, axis=1)
    if not band.any():
        return fine
    deep = _deep_px(mask, FINE_DEEP_PX)
    banned = _shift_reduce(dropped, 1, erode=False, outside=False) & ~mask
    fdx, fdy = plan.downsample[0] / f, plan.downsample[1] / f  # level-0 px per fine px
    fine_um = fdx * plan.mpp0
    blur = FINE_BLUR_UM / fine_um
    opening = round(FINE_OPEN_UM / (fdx * plan.mpp0))
    # Big tissue on a hard-edged slide: its level is taken past wide dark strokes, and ink
    # over its glass is not tissue (_big_hard_tissue).
    big_hard = _big_hard_tissue(mask, plan, fade)
    level_opening = round(FINE_LEVEL_OPEN_UM / (fdx * plan.mpp0))
    spread = FINE_LEVEL_UM / (plan.downsample[0] * plan.mpp0)  # in mask px
    b, p = FINE_BLOCK_PX, FINE_PAD_PX
    done = np.zeros((-(-h // b), -(-w // b)), bool)
    for r0 in range(0, h, b):
        for c0 in range(0, w, b):
            r1, c1 = min(h, r0 + b), min(w, c0 + b)
            if not band[r0:r1, c0:c1].any():
                continue
            done[r0 // b, c0 // b] = True
            if check_cancel is not None:
                check_cancel()
            pr0, pr1, pc0, pc1 = max(0, r0 - p), min(h, r1 + p), max(0, c0 - p), min(w, c1 + p)
            hard_here = big_hard is not None and bool(big_hard[pr0:pr1, pc0:pc1].any())
            od, ink = _fine_read(
                reader, plan, glass_blocks, f, (pr0, pr1, pc0, pc1), with_ink=hard_here
            )
            smooth = ndimage.gaussian_filter(od, blur)
            # The tissue level, at mask px: nuclei (dark spots under FINE_OPEN_UM) opened
            # away, averaged over each mask px, Gaussian-weighted over the deep px around.
            dp = deep[pr0:pr1, pc0:pc1]
            weight = ndimage.gaussian_filter(dp.astype(np.float32), spread)
            tissue_f = _fine_level(smooth, opening, dp, weight, f, spread)
            lv = FINE_EDGE_FRACTION * np.maximum(tissue_f, 0.01)
            if hard_here and big_hard is not None and level_opening > opening:
                # Dark strokes wider than nuclei (ink, fibres, folds) across big tissue raise
                # its mean level, and the pale stain at the edge beside them was cut off
                # (`wide101`: missed 3.3 %). Where opening them away lowers the level much,
                # that lower level is the stain's.
                wide_level = _fine_level(smooth, level_opening, dp, weight, f, spread)
                lower = wide_level < FINE_LEVEL_OPEN_SHARE * tissue_f
                lower &= np.repeat(np.repeat(big_hard[pr0:pr1, pc0:pc1], f, 0), f, 1)
                lv = np.where(lower, FINE_EDGE_FRACTION * np.maximum(wide_level, 0.01), lv)
            coarse_f = np.repeat(np.repeat(mask[pr0:pr1, pc0:pc1], f, 0), f, 1)
            cut = smooth >= lv
            if FINE_SOFT_UM > 0:
                # A soft edge (a shallow fade) is cut on density smoothed wider: noise moves
                # the cut of a shallow fade by many µm.
                wide = ndimage.gaussian_filter(od, FINE_SOFT_UM / fine_um)
                gy, gx = np.gradient(wide)
                slope = np.hypot(gy, gx) / (fine_um * np.maximum(tissue_f, 0.01))
                soft_px = slope < FINE_SLOPE
                cut[soft_px] = wide[soft_px] >= lv[soft_px]
                if FINE_WIDE_SLOPE > 0:
                    # A fade far wider than the band: its tissue level, taken 16 µm in, is
                    # still on the fade, and the cut would run out onto the glass. The coarse
                    # edge stays there.
                    flat = slope < FINE_WIDE_SLOPE
                    cut[flat] = coarse_f[flat]
            if ink is not None and big_hard is not None:
                # Ink-coloured px are ink over the glass (over stain, ink is stain-tinted): a
                # stroke out from big tissue's edge is not tissue, at 2 µm as at 8 µm.
                ink &= np.repeat(np.repeat(big_hard[pr0:pr1, pc0:pc1], f, 0), f, 1)
                cut &= ~ink
            # Only the block itself (not its context) and only its band px are decided here.
            ir0, ir1 = (r0 - pr0) * f, (r1 - pr0) * f
            ic0, ic1 = (c0 - pc0) * f, (c1 - pc0) * f
            sel = np.repeat(np.repeat(band[r0:r1, c0:c1], f, 0), f, 1)
            near = weight[r0 - pr0 : r1 - pr0, c0 - pc0 : c1 - pc0] > FINE_NEAR_WEIGHT
            sel &= np.repeat(np.repeat(near, f, 0), f, 1)
            sel &= ~np.repeat(np.repeat(banned[r0:r1, c0:c1], f, 0), f, 1)
            if FINE_SOFT_UM > 0 and FINE_WIDE_SLOPE > 0 and FINE_WIDE_NEAR > 0:
                # Per px the slope is noisy on pale stain; its median where the cut runs
                # tells a wide fade well, and the whole block keeps the coarse edge then.
                blk = (slice(ir0, ir1), slice(ic0, ic1))
                at = sel & (np.abs(wide[blk] - lv[blk]) < FINE_WIDE_NEAR * lv[blk])
                if at.sum() >= 8 * f and np.median(slope[blk][at]) < FINE_WIDE_SLOPE:
                    cut = coarse_f
            view = fine[r0 * f : r1 * f, c0 * f : c1 * f]
            view[sel] = cut[ir0:ir1, ic0:ic1][sel]
    groups, _ = ndimage.label(_shift_reduce(done, 1, erode=False, outside=False))
    windows = [
        (ys.start * b, min(h, ys.stop * b), xs.start * b, min(w, xs.stop * b))
        for ys, xs in ndimage.find_objects(groups)
    ]
    if fade > 0 and FINE_RAMP:
        _fine_ramp(
            reader, plan, fine, glass_blocks, dropped | ~band, f, windows, fade, check_cancel
        )
    # Specks the cut left and holes it made, looked for only around the refined blocks (with
    # a block of untouched mask around them: the rest is the coarse mask, already clean).
    area = fdx * fdy * plan.mpp0**2
    for ys, xs in ndimage.find_objects(groups):
        win = (slice(ys.start * b * f, ys.stop * b * f), slice(xs.start * b * f, xs.stop * b * f))
        fine[win] = _clean_window(fine[win], FLOOR_UM2 / area, min_hole_um2 / area)
    return fine


def _big_hard_tissue(mask: np.ndarray, plan: MaskPlan, fade: float) -> np.ndarray | None:
    """Mask px within FINE_BAND_PX of an object of FINE_BIG_HARD_UM2 or more, on a slide
    whose big tissue does not fade out (`fade` 0), or None where there are none (or
    FINE_LEVEL_OPEN_UM is 0). Only there are wide dark strokes opened out of the fine
    level and ink-coloured fine px taken off: on small pieces what a wide opening takes away
    is mostly their own packed nuclei, at the edge as much as inside, and perturbed stains
    can unmix like ink (measured on the tuning fragment slides: IoU lost either way)."""
    if fade > 0 or FINE_LEVEL_OPEN_UM <= 0:
        return None
    lab, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    px_um2 = plan.downsample[0] * plan.downsample[1] * plan.mpp0**2
    big = np.bincount(lab.ravel(), minlength=n + 1) * px_um2 >= FINE_BIG_HARD_UM2
    big[0] = False
    if not big.any():
        return None
    return _shift_reduce(big[lab], FINE_BAND_PX, erode=False, outside=False)


def _fine_level(
    smooth: np.ndarray, size: int, deep: np.ndarray, weight: np.ndarray, f: int, spread: float
) -> np.ndarray:
    """The tissue level at fine px: the fine density `smooth` grey-opened over `size` fine
    px (dark spots narrower than that taken away), averaged over each mask px and
    Gaussian-weighted (`spread` mask px) over the `deep` mask px around (`weight`: the
    weights' sum), bilinearly resized to fine px."""
    base = ndimage.grey_opening(smooth, size=size) if size > 1 else smooth
    base_c = base.reshape(deep.shape[0], f, deep.shape[1], f).mean(axis=(1, 3))
    tissue = ndimage.gaussian_filter(np.where(deep, base_c, 0.0).astype(np.float32), spread)
    tissue /= np.maximum(weight, 1e-3)
    fh, fw = smooth.shape
    return np.asarray(Image.fromarray(tissue, mode="F").resize((fw, fh), Image.Resampling.BILINEAR))


def _fine_density(
    reader: SlideReader,
    plan: MaskPlan,
    glass_blocks: np.ndarray,
    f: int,
    box: tuple[int, int, int, int],
) -> np.ndarray:
    """Optical density of the luma (against the local glass grey) at the fine px of the mask
    px `box` (rows r0:r1, columns c0:c1), read from the nearest finer level and box-resized."""
    return _fine_read(reader, plan, glass_blocks, f, box, with_ink=False)[0]


def _fine_read(
    reader: SlideReader,
    plan: MaskPlan,
    glass_blocks: np.ndarray,
    f: int,
    box: tuple[int, int, int, int],
    with_ink: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(_fine_density's optical density, and when `with_ink` the fine px coloured like ink,
    or None where there are none: OD norm over INK_NEAR_OD and an eosin share under
    INK_EOSIN_SHARE, per channel against the local glass grey; ink over stain is not)."""
    r0, r1, c0, c1 = box
    fdx, fdy = plan.downsample[0] / f, plan.downsample[1] / f  # level-0 px per fine px
    level = reader.best_level_for_downsample(min(fdx, fdy))
    lds = reader.level_downsamples[level]
    lw, lh = reader.level_dimensions[level]
    fh, fw = (r1 - r0) * f, (c1 - c0) * f
    # The box, in the fine level's px, read and box-resized to fine px.
    sx0, sx1 = c0 * f * fdx / lds, min(lw, c1 * f * fdx / lds)
    sy0, sy1 = r0 * f * fdy / lds, min(lh, r1 * f * fdy / lds)
    rx0, ry0 = int(np.floor(sx0)), int(np.floor(sy0))
    rx1, ry1 = min(lw, int(np.ceil(sx1))), min(lh, int(np.ceil(sy1)))
    region = reader.read_region((round(rx0 * lds), round(ry0 * lds)), level, (rx1 - rx0, ry1 - ry0))
    k = (rx1 - rx0) / fw
    if region.shape[:2] == (fh * k, fw * k) and k.is_integer() and k > 1:
        region = np.asarray(Image.fromarray(region).reduce(int(k)))  # exact box means
    elif region.shape[:2] != (fh, fw):
        crop = (sx0 - rx0, sy0 - ry0, sx1 - rx0, sy1 - ry0)
        region = np.asarray(
            Image.fromarray(region).resize((fw, fh), Image.Resampling.BOX, box=crop)
        )
    grey = region.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    # The local glass grey, per mask px from the coarse map's blocks.
    ys = (np.arange(r0, r1) + 0.5) / LEVEL_BLOCK - 0.5
    xs = (np.arange(c0, c1) + 0.5) / LEVEL_BLOCK - 0.5
    glass_c = ndimage.map_coordinates(
        glass_blocks.astype(np.float32),
        np.meshgrid(ys, xs, indexing="ij"),
        order=1,
        mode="nearest",
    )
    glass_f = np.repeat(np.repeat(np.maximum(glass_c, 1.0), f, 0), f, 1)
    od = np.log10(glass_f / np.maximum(grey, 1.0))
    ink = None
    if with_ink:
        dark = np.min(region, axis=-1) <= glass_f * 10 ** (-INK_NEAR_OD / np.sqrt(3.0))
        if dark.any():
            od3 = np.log10(glass_f[dark][:, None] / np.maximum(region[dark], 1.0))
            e = od3 @ UNMIX[1]
            n = np.sqrt((od3 * od3).sum(axis=1))
            inky = (n >= INK_NEAR_OD) & (e <= INK_EOSIN_SHARE * n)
            if inky.any():
                ink = np.zeros(od.shape, bool)
                ink[dark] = inky
    return od, ink


def _fine_ramp(
    reader: SlideReader,
    plan: MaskPlan,
    fine: np.ndarray,
    glass_blocks: np.ndarray,
    stay: np.ndarray,
    f: int,
    windows: list[tuple[int, int, int, int]],
    fade_um: float,
    check_cancel: Callable[[], None] | None = None,
) -> None:
    """Cut the fine mask's edges (in place) again on the fade's own ramp, as _ramp_edges
    does the coarse mask's big tissue (_ramp_cut; FINE_RAMP_* settings in µm).

    On a fade the half-way cut of refine_fine needs the stain's full level at the edge, and
    the level it takes (16 µm and more inside, Gaussian-weighted) is still partly on the fade
    of a piece ~100-250 µm across, and more so the paler the stain (the generator's `wide106`
    fragment slide: the edges of most pieces 1.5-3.5 µm inside, IoU 0.951). The fade's ramp
    does not need it: its foot, where a line fitted to its outer half meets the glass, and
    its width W, pooled over the slide (the median over `windows`, mask px boxes of refined
    blocks), put the edge W / 2 past the foot. Only fine px near the edge and not in `stay`
    (mask px: what the coarse mask dropped, bigger tissue outside the fine band) change.
    """
    if fade_um > FINE_RAMP_MAX_UM + FINE_RAMP_AGREE_UM:
        return  # no fine width can pass both tests below: nothing read
    fine_um = plan.downsample[0] / f * plan.mpp0
    rs = Ramp(
        span=FINE_RAMP_SPAN_UM / fine_um,
        ref_sigma=FINE_RAMP_REF_UM / fine_um,
        fit_sigma=FINE_RAMP_FIT_UM / fine_um,
        foot_skip=FINE_RAMP_FOOT_UM / fine_um,
        knee_from=RAMP_KNEE_FROM,
        knee_past=FINE_RAMP_KNEE_PAST_UM / fine_um,
        band=FINE_RAMP_BAND_UM / fine_um,
        offset=FINE_RAMP_OFFSET_UM / fine_um,
        min_width=FINE_RAMP_MIN_UM / fine_um,
    )
    # (fine box, mask px box, density with its sign flipped: "grey" for _ramp_cut, distances),
    # the last two kept up to FINE_RAMP_KEEP_PX px, else read and measured again.
    pieces: list[tuple[tuple[slice, slice], tuple[int, int, int, int], Any, Any]] = []
    widths = []
    kept = 0
    # The profile only round the edges to be cut (not bigger tissue's, a wider fade maybe).
    reach = int(np.ceil(FINE_RAMP_SPAN_UM / (plan.downsample[0] * plan.mpp0)))
    round_cut = _shift_reduce(~stay, reach, erode=False, outside=False)
    for r0, r1, c0, c1 in windows:
        if check_cancel is not None:
            check_cancel()
        box = (slice(r0 * f, r1 * f), slice(c0 * f, c1 * f))
        neg = -_fine_density(reader, plan, glass_blocks, f, (r0, r1, c0, c1))
        ref = ndimage.gaussian_filter(fine[box].astype(np.float32), rs.ref_sigma) >= 0.5
        if ref.any() and not ref.all():
            where = np.repeat(np.repeat(round_cut[r0:r1, c0:c1], f, 0), f, 1)
            d = _signed_distance(ref)
            widths.append(_fade_width(ref, d, neg, rs.span, where, FINE_RAMP_STEP_UM / fine_um))
            kept += neg.size
            hold = kept <= FINE_RAMP_KEEP_PX
            pieces.append((box, (r0, r1, c0, c1), neg if hold else None, d if hold else None))
    valid = [x for x in widths if x >= rs.min_width]
    if not valid:
        return
    width = float(np.median(valid))
    # A fade wider than FINE_RAMP_MAX_UM, or one the coarse step measured otherwise (a piece
    # narrower than its fade shows less of it), keeps refine_fine's cut.
    if width * fine_um > FINE_RAMP_MAX_UM or abs(width * fine_um - fade_um) > FINE_RAMP_AGREE_UM:
        return
    for box, (r0, r1, c0, c1), neg, d in pieces:
        if check_cancel is not None:
            check_cancel()
        if neg is None:
            neg = -_fine_density(reader, plan, glass_blocks, f, (r0, r1, c0, c1))
        keep = np.repeat(np.repeat(stay[r0:r1, c0:c1], f, 0), f, 1)
        cut, _ = _ramp_cut(neg, fine[box], np.zeros_like(neg), 0.0, keep, rs, width, d)
        if cut is not None:
            fine[box] = cut


def _deep_px(mask: np.ndarray, k: int) -> np.ndarray:
    """The mask px `k` px or more inside; for a piece with none (a ~50-80 µm piece, or one
    whose pale stain between nuclei left gaps in it), its px that many fewer px inside as far
    as it has any: else it would set no tissue level and its edge would not be cut again."""
    deep = _shift_reduce(mask, k, erode=True, outside=False)
    if k <= 0 or not FINE_DEEP_FALLBACK:
        return deep
    lab, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return deep
    got = np.bincount(lab[deep], minlength=n + 1) > 0
    for j in range(k - 1, -1, -1):
        got[0] = True
        if got.all():
            break
        inner = _shift_reduce(mask, j, erode=True, outside=False) if j else mask
        need = ~got[lab] & inner
        deep |= need
        got |= np.bincount(lab[need], minlength=n + 1) > 0
    return deep


def _clean_window(mask: np.ndarray, min_object_px: float, min_hole_px: float) -> np.ndarray:
    """clean_mask within a window of a bigger mask: objects and holes touching the window's
    border may go on beyond it, so only those wholly inside are dropped or filled."""
    out = mask.copy()
    for value, structure in ((True, np.ones((3, 3), bool)), (False, None)):
        lab, n = ndimage.label(out == value, structure=structure)
        small = np.bincount(lab.ravel(), minlength=n + 1) < (
            min_object_px if value else min_hole_px
        )
        small[0] = False
        small[np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])] = False
        if small.any():
            out[small[lab]] = not value
    return out


def _glass_colour(rgb: np.ndarray, glass: np.ndarray, bright: float) -> np.ndarray:
    """Mean RGB of the glass (the bright class), from a sample of its pixels."""
    step = max(1, int(np.sqrt(glass.size / 200_000)))
    sub, on = rgb[::step, ::step], glass[::step, ::step]
    if not on.any():
        return np.full(3, bright)
    return sub[on].mean(axis=0)


def compute_tissue_mask(
    reader: SlideReader,
    params: MaskParams = DEFAULTS,
    *,
    check_cancel: Callable[[], None] | None = None,
    bands: Callable[[MaskPlan], np.ndarray] | None = None,
) -> TissueMask:
    """Tissue mask of the whole slide at about params.target_mpp µm/px.

    bands(plan) returns the mask image (the resumable job reads it band by band); by default
    it is read in one go, check_cancel called between blocks.
    """
    t0 = time.perf_counter()
    plan = plan_mask(reader, params)
    if bands is not None:
        rgb = bands(plan)
    else:
        on_block = None if check_cancel is None else (lambda _d, _t: check_cancel())
        rgb = reader.read_level_scaled(plan.level, plan.size, on_block)
    t1 = time.perf_counter()
    ds = plan.downsample
    mpp = (ds[0] * plan.mpp0, ds[1] * plan.mpp0)
    mask, threshold, glass, dropped, fade = _coarse_mask(
        rgb, mpp, params.min_object_um2, params.min_hole_um2
    )
    t2 = time.perf_counter()
    f = fine_factor(plan, params.edge_mpp)
    band = fine_band(mask, mpp) if f > 1 and glass is not None else None
    timings = {"read_s": t1 - t0, "mask_s": t2 - t1}
    if band is not None and dropped is not None and band.any():
        # Only slides with small pieces get a finer mask (bigger tissue keeps its edge).
        mask = refine_fine(
            reader, plan, mask, glass(), dropped, band, f, params.min_hole_um2, check_cancel, fade
        )
        ds = (ds[0] / f, ds[1] / f)
        timings["edges_s"] = time.perf_counter() - t2
    return TissueMask(
        mask=mask,
        downsample=ds,
        level=plan.level,
        mpp=mpp[0] * ds[0] / plan.downsample[0],
        mpp_assumed=plan.mpp_assumed,
        threshold=threshold,
        timings=timings,
        image=rgb,
        warnings=() if plan.warning is None else (plan.warning,),
    )
