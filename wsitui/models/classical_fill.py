"""The classical fill: an InstanSeg model's label image, completed with the classical
fallback's nuclei where the model drew none or only part of one.

Measured 2026-12-05 (README "Model quality", model card "Classical fill"): the shipped model and
the classical fallback miss different nuclei. The model leaves big dark nuclei packed in tumour
nests bare on real H&E and draws only pieces of some big vesicular ones; the watershed misses
fewer of those and more of the touching and pale ones the model separates. On the judge-like
generated slides a user-run job found 0.738 of the true nuclei with the model, 0.668 with the
fallback and 0.813 with either. So, per tile, after the model's own nuclear check:

- the classical fallback segments the same tile (`classical.segment_tile`, the same pixels);
- a classical nucleus the model's instances cover at most `ADD_MAX_COVER` of is *added* (its
  pixels the model left free), if it keeps at least `MIN_PX` of them and shows nuclear evidence
  (`nuclear_gate`: the watershed also outlines faint specks in stroma that the model rightly
  ignores; on a judge-like wide slide 96 of 103 such additions were dropped by it, the one true
  one kept);
- a classical nucleus the model covers more than that but under `REPLACE_MAX_COVER` of, and that
  is convex (`MIN_SOLIDITY`: one nucleus, not two touching ones the watershed joined), *replaces*
  the model's instances lying mostly (`INSIDE`) within it: the model drew pieces of one nucleus;
- a model instance that is not convex (`SPLIT_MAX_SOLIDITY`) and holds two or more whole
  classical nuclei (each at least `SPLIT_INSIDE` within it and `SPLIT_MIN_PX` big) making up at
  least `SPLIT_COVER` of it is *split* along them: the model joined touching nuclei the
  watershed told apart (its pixels outside them go to the nearest one: the model's outline
  stays);
- a model instance whose outline is ragged (solidity under `RAGGED_SOLIDITY`) is not trusted:
  it gives way, before the rules above, to the classical nucleus there if one passes them, or to
  nothing (on real H&E such outlines spill into cytoplasm and stroma: issue #24's complaint);
- everything else stays the model's (its splits of touching nuclei above all).

The constants were set on generated looks (held-out slides, four fresh dense looks, judge-like
slides); the real check images (wsitui/models/real_images.py) were looked at, not tuned on.
Pure numpy/scipy/skimage; applied by the model layer (`wsitui/models/loaded.py`) when a model's
`wsitui_model.json` asks for it (`"classical_fill": true`, every model `wsitui model train`
writes) or a job sets `classical_fill = "on"`; never to the classical fallback itself.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage.measure import regionprops

from wsitui.models import nuclear_gate
from wsitui.models.classical import VERSION as CLASSICAL_VERSION
from wsitui.models.classical import segment_tile

MODES = ("auto", "on", "off")
# What these rules are, for a job's manifest and its shard plan (a resumed job never mixes tiles
# of two rule sets): fill-1 (2026-12-05 night) added and replaced; fill-2 (2026-12-06) also
# splits joined nuclei and lets ragged outlines give way. With the classical version it runs.
VERSION = f"fill-2+{CLASSICAL_VERSION}"
ADD_MAX_COVER = 0.1  # share of a classical nucleus the model covers, at most: added
REPLACE_MAX_COVER = 0.5  # ... under this (and convex): it replaces the model's pieces in it
INSIDE = 0.6  # a model instance with this share of its pixels in such a nucleus is a piece
MIN_SOLIDITY = 0.85  # area / convex hull area of a classical nucleus that may replace pieces
MIN_PX = 8  # an addition left smaller (2 µm² at 0.5 µm/px, a job's size filter) is dropped
# 2026-12-06: split a model instance along the classical nuclei it holds whole. Over cached
# predictions (held-out nine, seed 0): touching recall 0.933 -> 0.946, F1 0.9934 -> 0.9944; the
# four fresh dense looks and `tumour` unchanged (their misses are nuclei nobody found, not
# joined pairs), the judge-like slides too; inside 0.7-0.9 and cover 0.5-0.7 scored within
# 0.0004.
SPLIT_INSIDE = 0.8
SPLIT_COVER = 0.6
SPLIT_MIN_PX = 20  # 5 µm²: a classical fragment this small is no nucleus to split along
# A model instance this convex (area / convex hull area) is one nucleus, not a joined pair, and
# stays whole: without it the watershed's cuts through big vesicular nuclei (pale middles) split
# them (`vesicular` 0.985 -> 0.976, precision 0.971 -> 0.952); 0.92-0.95 kept every gain of
# `clustered` (0.987 -> 0.990, touching 0.948 -> 0.962) and `vesicular` unchanged, 0.88 lost some.
SPLIT_MAX_SOLIDITY = 0.93
# 2026-12-06: a model instance less convex than this is dropped before the merge. Over cached
# predictions: held-out nine unchanged (0.9944, touching 0.946), four fresh dense looks 0.928 ->
# 0.931 (precision 0.942 -> 0.953), real he_target low-H share 0.044 -> 0.040 (99 of 525 model
# instances gave way, dark isolated recall 1.0 kept), he_histo 0.090 -> 0.080, IHC 0.135 ->
# 0.115; 0.85 cost the nine's touching recall (0.946 -> 0.928), 0.75 kept half the real gain.
RAGGED_SOLIDITY = 0.8


def mode_of(value: object) -> str:
    """A `classical_fill` setting, checked: ValueError in one line naming the choices."""
    if value not in MODES:
        raise ValueError(f"classical_fill {value!r} is unknown: use 'auto', 'on' or 'off'")
    return str(value)


def in_effect(setting: object, own: bool) -> bool:
    """Whether a `classical_fill` setting completes a model's labels: `on` and `off` say, `auto`
    is the model's `own` (its `wsitui_model.json`); ValueError (one line) for any other. The one
    rule: the model's predict (`TorchModel.fill_on`) and the job's manifest and shard key
    (`jobs/segment_cells/model_info.fill_in_effect`) both ask it."""
    mode = mode_of(setting)
    return own if mode == "auto" else mode == "on"


def fill(rgb: np.ndarray, labels: np.ndarray, hed: np.ndarray | None = None) -> np.ndarray:
    """`labels` (int (H, W), the model's, 0 background) completed on `rgb` (module docstring);
    `hed`: `rgb2hed(rgb)` when the caller has it (`wsitui/models/finish.py`)."""
    return merge(rgb, labels, segment_tile(rgb, hed), hed)


def merge(
    rgb: np.ndarray, model: np.ndarray, classical: np.ndarray, hed: np.ndarray | None = None
) -> np.ndarray:
    """The model's labels with the classical labels' additions and replacements (int32)."""
    m = drop_ragged(np.asarray(model).astype(np.int64))
    c = np.asarray(classical).astype(np.int64)
    nm, nc = int(m.max(initial=0)), int(c.max(initial=0))
    if nc == 0:
        return m.astype(np.int32)
    c_area = np.bincount(c.ravel(), minlength=nc + 1)
    m_area = np.bincount(m.ravel(), minlength=nm + 1)
    both = (m > 0) & (c > 0)
    pair = np.bincount(m[both] * (nc + 1) + c[both], minlength=(nm + 1) * (nc + 1))
    pair = pair.reshape(nm + 1, nc + 1)  # pixels of model instance i in classical nucleus j
    cover = pair.sum(axis=0) / np.maximum(c_area, 1)
    real = c_area > 0
    real[0] = False
    add = real & (cover <= ADD_MAX_COVER)
    replace = real & (cover > ADD_MAX_COVER) & (cover < REPLACE_MAX_COVER)
    if replace.any():
        candidates = np.where(np.isin(c, np.flatnonzero(replace)), c, 0)
        replace[less_solid(candidates, MIN_SOLIDITY)] = False
    # Model instances that are pieces of a replacing nucleus go.
    inside = pair[:, replace] >= INSIDE * np.maximum(m_area, 1)[:, None]
    pieces = inside.any(axis=1)
    pieces[0] = False
    keep_m = np.arange(nm + 1)
    keep_m[pieces] = 0
    out = keep_m[m]
    taken = add | replace
    new_ids = np.zeros(nc + 1, np.int64)
    new_ids[taken] = np.arange(1, int(taken.sum()) + 1) + nm
    extra = new_ids[c]
    extra[out > 0] = 0  # the model's remaining instances keep their pixels
    count = np.bincount(extra.ravel())
    extra[(count < MIN_PX)[extra]] = 0
    out = np.where(out > 0, out, extra)
    out = split_joined(out, c, nm)
    added = new_ids[add]
    if added.size:
        ev = nuclear_gate.evidence(rgb, out, hed=hed)
        drop = ev.ids[np.isin(ev.ids, added) & ~ev.nuclear()]
        if drop.size:
            out[np.isin(out, drop)] = 0
    return out.astype(np.int32)


def drop_ragged(labels: np.ndarray) -> np.ndarray:
    """`labels` without its instances less convex than `RAGGED_SOLIDITY` (a copy when any)."""
    ragged = less_solid(labels, RAGGED_SOLIDITY)
    if ragged.size == 0:
        return labels
    return np.where(np.isin(labels, ragged), 0, labels)


# Normals (row, col) of the sides of the polygons `hull_bounds` counts in: every direction of
# integer steps up to 4 (48 sides). On the real he_target 448² tile's 331 network instances they
# leave 8 for regionprops to decide at RAGGED_SOLIDITY (the 16 of steps up to 2: 74).
_SIDES = tuple(
    (a, b) for a in range(-4, 5) for b in range(0, 5) if (b > 0 or a == 1) and math.gcd(a, b) == 1
)


def hull_bounds(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(area, low, high), int64 per label 0..max: `low` <= skimage's convex hull pixel count
    (regionprops' `area_convex`) <= `high`, in integer arithmetic, for all labels at once.

    skimage's hull is that of each pixel's four edge midpoints (centre +- 0.5 along an axis),
    its image the pixel centres in or on it (`convex_hull_image`, `include_borders`). `high`
    counts, row by row, the pixel centres in the polygon of sides normal to `_SIDES`, each
    pushed out to the midpoints' extreme along it: that polygon holds the hull. `low` counts
    those in or on the polygon through the pixel centres extreme along the same normals, grown
    by the midpoints' diamond: it lies in the hull. Both vertex sets are half-integers and
    skimage's point-in-polygon test (differences, products, signs) is exact on them, so a
    centre on that inner polygon's border, in or on the hull, is one skimage counts."""
    n = int(labels.max(initial=0))
    flat = np.asarray(labels, dtype=np.int64).ravel()
    px = np.flatnonzero(flat)
    lab = flat[px]
    order = np.argsort(lab, kind="stable")
    lab, px = lab[order], px[order]
    r, c = np.divmod(px, labels.shape[1])
    area = np.bincount(lab, minlength=n + 1)
    low, high = np.zeros(n + 1, np.int64), np.zeros(n + 1, np.int64)
    ids = np.flatnonzero(area[1:]) + 1
    if ids.size == 0:
        return area, low, high
    # Only each row's first and last pixel can be extreme along any side: keep those.
    key = lab * labels.shape[0] + r
    ends = np.flatnonzero(key[1:] != key[:-1])
    keep = np.stack([np.r_[0, ends + 1], np.r_[ends, key.size - 1]], axis=1).ravel()
    lab, r, c = lab[keep], r[keep], c[keep]
    starts = np.searchsorted(lab, ids)
    owner_px = np.searchsorted(ids, lab)
    rmin, rmax = np.minimum.reduceat(r, starts), np.maximum.reduceat(r, starts)
    nrows = rmax - rmin + 1
    owner = np.repeat(np.arange(ids.size), nrows)  # one entry per row of each label's box
    rows = rmin[owner] + np.arange(owner.size) - (np.cumsum(nrows) - nrows)[owner]
    lo, hi = np.full(owner.size, -(2**40)), np.full(owner.size, 2**40)
    support = []  # (angle of the outward normal, row, col of a pixel centre extreme along it)
    last = np.iinfo(np.int64).max
    for a, b in _SIDES:
        p = a * r + b * c
        pmin, pmax = np.minimum.reduceat(p, starts), np.maximum.reduceat(p, starts)
        for ext, sign in ((pmin, -1), (pmax, 1)):
            at = np.where(p == ext[owner_px], np.arange(p.size), last)
            at = np.minimum.reduceat(at, starts)
            support.append((float(np.arctan2(sign * b, sign * a)), r[at], c[at]))
        if b == 0:
            continue  # rows: rmin..rmax already
        # a*row + b*col within [pmin - h/2, pmax + h/2] (h: the midpoints' reach), doubled.
        h = max(abs(a), abs(b))
        lo = np.maximum(lo, -((2 * a * rows - (2 * pmin - h)[owner]) // (2 * b)))
        hi = np.minimum(hi, ((2 * pmax + h)[owner] - 2 * a * rows) // (2 * b))
    high[ids] = np.bincount(owner, weights=np.maximum(hi - lo + 1, 0), minlength=ids.size)
    support.sort(key=lambda s: s[0])
    vr, vc = np.stack([s[1] for s in support]), np.stack([s[2] for s in support])
    dr, dc = np.roll(vr, -1, axis=0) - vr, np.roll(vc, -1, axis=0) - vc
    # P: the polygon through those centres (in angular order: convex). The hull holds P plus the
    # midpoints' diamond; count the lattice points strictly inside that sum, row by row: each
    # side of P pushed out by the diamond's reach along its normal, doubled to stay integer.
    turn = np.where((vr * (vc + dc) - (vr + dr) * vc).sum(axis=0) < 0, -1, 1)
    er, ec = dc * turn, -dr * turn  # outward normals of P's sides (a point's side: 0, 0)
    lim = 2 * (er * vr + ec * vc) + np.maximum(np.abs(er), np.abs(ec))
    er, ec, lim = er[:, owner], ec[:, owner], lim[:, owner]
    rest = lim - 2 * er * rows
    safe = np.where(ec == 0, 1, 2 * ec)
    up = np.where(ec > 0, rest // safe, 2**40)  # ec > 0: col <= rest / (2 ec)
    down = np.where(ec < 0, -(rest // -safe), -(2**40))  # ec < 0: col >= rest / (2 ec)
    flat_side = (ec == 0) & ((er != 0) & (rest < 0))  # a side along a row: this row is out
    for a, b in ((1, 1), (-1, 1)):  # the diamond's own sides: a*row + b*col within extremes
        p = a * r + b * c
        pmin, pmax = np.minimum.reduceat(p, starts), np.maximum.reduceat(p, starts)
        up = np.vstack([up, (pmax[owner] - a * rows)[None]])
        down = np.vstack([down, (pmin[owner] - a * rows)[None]])
    span = np.maximum(up.min(axis=0) - down.max(axis=0) + 1, 0) * ~flat_side.any(axis=0)
    inside = np.bincount(owner, weights=span, minlength=ids.size).astype(np.int64)
    low[ids] = np.maximum(inside, area[ids])
    return area, low, high


def less_solid(labels: np.ndarray, threshold: float) -> np.ndarray:
    """The labels (int64, sorted) whose skimage regionprops `solidity` (area / convex hull
    pixel count) is below `threshold`: the same set, decided by `hull_bounds` where they settle
    it and by regionprops for the rest (2026-12-06, drop_ragged on the shipped network's labels
    of the real he_target 448² tile: 88.6 -> 23.8 ms CPU, load 3.9)."""
    area, low, high = hull_bounds(labels)
    with np.errstate(divide="ignore", invalid="ignore"):
        surely_not = area / high >= threshold
        surely = area / np.maximum(low, 1) < threshold
    real = area > 0
    real[0] = False
    out = np.flatnonzero(real & surely & ~surely_not)
    unsure = np.flatnonzero(real & ~surely & ~surely_not)
    if unsure.size:
        rest = np.where(np.isin(labels, unsure), labels, 0)
        below = [g.label for g in regionprops(rest) if g.solidity < threshold]
        out = np.union1d(out, np.asarray(below, np.int64))
    return out.astype(np.int64)


def split_joined(labels: np.ndarray, classical: np.ndarray, first: int) -> np.ndarray:
    """`labels` with each model instance (id 1..`first`) that holds two or more whole classical
    nuclei making up most of it split along them (module docstring); new ids follow the highest."""
    n, nc = int(labels.max(initial=0)), int(classical.max(initial=0))
    if n == 0 or nc < 2:
        return labels
    m = np.where(labels <= first, labels, 0)
    c_area = np.bincount(classical.ravel(), minlength=nc + 1)
    m_area = np.bincount(m.ravel(), minlength=first + 1)
    both = (m > 0) & (classical > 0)
    pair = np.bincount(m[both] * (nc + 1) + classical[both], minlength=(first + 1) * (nc + 1))
    pair = pair.reshape(first + 1, nc + 1)
    whole = (pair >= SPLIT_INSIDE * c_area[None, :]) & (c_area >= SPLIT_MIN_PX)[None, :]
    whole[0] = False
    whole[:, 0] = False
    held = (pair * whole).sum(axis=1)
    joined = np.flatnonzero((whole.sum(axis=1) >= 2) & (held >= SPLIT_COVER * m_area))
    if joined.size:  # a convex instance is one nucleus the watershed cut (a vesicular one)
        candidates = np.where(np.isin(m, joined), m, 0)
        joined = joined[np.isin(joined, less_solid(candidates, SPLIT_MAX_SOLIDITY))]
    if joined.size == 0:
        return labels
    out = labels.copy()
    next_id = n + 1
    for i in joined:
        ys, xs = np.nonzero(m == i)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        region = m[y0:y1, x0:x1] == i
        seeds = np.zeros(region.shape, np.int64)
        box = classical[y0:y1, x0:x1]
        for j in np.flatnonzero(whole[i]):
            seeds[region & (box == j)] = next_id
            next_id += 1
        near = ndimage.distance_transform_edt(
            seeds == 0, return_distances=False, return_indices=True
        )
        grown = seeds[near[0], near[1]]
        out[y0:y1, x0:x1][region] = grown[region]
    return out
