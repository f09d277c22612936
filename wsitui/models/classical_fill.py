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
- everything else stays the model's (its splits of touching nuclei above all).

The constants were set on generated looks (held-out slides, four fresh dense looks, judge-like
slides); the real check images (wsitui/models/real_images.py) were looked at, not tuned on.
Pure numpy/scipy/skimage; applied by the model layer (`wsitui/models/loaded.py`) when a model's
`wsitui_model.json` asks for it (`"classical_fill": true`, every model `wsitui model train`
writes) or a job sets `classical_fill = "on"`; never to the classical fallback itself.
"""

from __future__ import annotations

import numpy as np
from skimage.measure import regionprops

from wsitui.models import nuclear_gate
from wsitui.models.classical import segment_tile

MODES = ("auto", "on", "off")
ADD_MAX_COVER = 0.1  # share of a classical nucleus the model covers, at most: added
REPLACE_MAX_COVER = 0.5  # ... under this (and convex): it replaces the model's pieces in it
INSIDE = 0.6  # a model instance with this share of its pixels in such a nucleus is a piece
MIN_SOLIDITY = 0.85  # area / convex hull area of a classical nucleus that may replace pieces
MIN_PX = 8  # an addition left smaller (2 µm² at 0.5 µm/px, a job's size filter) is dropped


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
    m = np.asarray(model).astype(np.int64)
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
        for region in regionprops(candidates):
            if region.solidity < MIN_SOLIDITY:
                replace[region.label] = False
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
    added = new_ids[add]
    if added.size:
        ev = nuclear_gate.evidence(rgb, out, hed=hed)
        drop = ev.ids[np.isin(ev.ids, added) & ~ev.nuclear()]
        if drop.size:
            out[np.isin(out, drop)] = 0
    return out.astype(np.int32)
