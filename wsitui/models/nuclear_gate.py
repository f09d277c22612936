"""The nuclear-evidence check: an InstanSeg detection is kept only if it is darker in
haematoxylin than its immediate surroundings.

A nucleus binds haematoxylin: whatever the slide's stain strength, a nucleus (a pale one on pale
tissue included) has a higher haematoxylin optical density than the thin band of tissue just
outside it. Outlines a model draws on collagen, cytoplasm, stroma, eosin or DAB do not: their
haematoxylin OD is that of their surroundings, or lower when they are a ring of cytoplasm around
a nucleus. So, per detection:

- `h_in`: mean haematoxylin OD of its pixels (colour deconvolution with fixed stain vectors,
  skimage `rgb2hed`; the same for every tile and slide, so a verdict never depends on which tile
  a nucleus was seen in);
- `h_ring`: the median haematoxylin OD of the background pixels more than `RING_GAP_PX` and
  at most `RING_PX` from it, each background pixel given to its nearest detection (so a
  neighbour's pixels, or the other half of a nucleus the model cut in two, are never
  "surroundings"). The first pixel out is skipped, since a model's outline sits a pixel or so
  inside a blurred nucleus and that pixel is still the nucleus's own; the median, not the
  mean, since in packed tissue the band also crosses slivers of undetected neighbours; pixels
  stained by a chromogen
  (DAB OD over `CHROMOGEN_OD`) are left out, since fixed H&E vectors read part of DAB as
  haematoxylin (a pale nucleus in brown IHC cytoplasm would otherwise look empty);
- kept when it is judged nuclear on two counts: its contrast `h_in - h_ring` is at least
  `MIN_CONTRAST` and at least `CONTRAST_FRACTION` of the tile's nuclear contrast (the
  `CONTRAST_QUANTILE` percentile of the contrasts of the tile's detections: scale-free, so pale
  nuclei on a pale slide pass as dark ones on a dark slide); and `h_in >= RATIO * h_ring`. A
  detection with fewer than `MIN_RING_PX` surrounding pixels (packed among other detections)
  is kept: there is no evidence against it.
- or kept when it holds clearly less eosin than its band (`e_ring - e_in >= MIN_EOSIN_DEFICIT`,
  the same band, eosin by the same fixed vectors) and no less haematoxylin. Where a nucleus lies
  in purple, haematoxylin-dark stroma, the fixed vectors read the stroma as about as much
  haematoxylin as the nucleus, so its haematoxylin contrast is gone; but the nucleus still has
  no eosin and the stroma has. An outline on collagen, cytoplasm or stroma is the same material
  as its band (no eosin deficit), and one on a lumen or on glass is paler in haematoxylin.

Until 2026-12-05 a third count also required `h_in` to reach 0.8 of the tile's haematoxylin
Otsu level. A dark fold, a dense dark stroma band or a population of dark nuclei in the tile
raises that level over its pale nuclei: on four fresh `dense_style` looks the check cut the
shipped model's F1 from 0.926 to 0.838 (one slide 0.816 -> 0.484), while the count removed
nothing on the two real H&E check images that the contrast counts did not (measured: README,
Model quality).

Seams: the per-detection evidence is local (a nucleus whole in two overlapping tiles has the
same pixels and band in both) and the stain vectors are fixed; the tile's contrast reference
comes from a whole model tile (672 px by default, hundreds of nuclei), so neighbouring tiles
agree unless a detection sits right at the limit. Then the seam merge
(`jobs/segment_cells/merge.py`) still keeps exactly one record or none: a nucleus is never
doubled by the check. Pure numpy/scipy/skimage; applied by the model layer
(`wsitui/models/loaded.py`) to every InstanSeg model's output, never to the classical fallback
(which segments haematoxylin to begin with).
The constants were set on the generator's looks (wsitui.slides.style, held-out slides), never on
the real check images (wsitui/models/real_images.py), which are for checking.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from wsitui.models.classical import deconvolve

MODES = ("auto", "off")
RING_PX = 4  # the band judged "just outside": out to 2 µm at the models' 0.5 µm/px ...
RING_GAP_PX = 1  # ... beyond the first pixel out (still the nucleus's own blurred edge)
MIN_RING_PX = 6  # fewer surrounding pixels than this: not judged (kept)
CHROMOGEN_OD = 0.05  # DAB OD of a band pixel that is not used (as jobs/segment_cells/domain.py)
# Set on the generator's looks (held-out slides, `wsitui model eval`, shipped model): its true
# nuclei there stand 0.018 (pale look) to 0.11 OD over their band, its false detections
# (collagen, cytoplasm, stroma) at most 0.012, caught by the tile's contrast when over 0.008;
# 98 % of true nuclei have >= 1.33x their band's OD (tumour look; all others >= 1.5x); a tile's
# true nuclei have contrasts of at least ~0.55x its 75th percentile.
MIN_CONTRAST = 0.008  # haematoxylin OD (rgb2hed units) over the band, whatever the tile
RATIO = 1.2  # h_in >= RATIO * h_ring
CONTRAST_FRACTION = 0.3  # ... and >= this share of the tile's nuclear contrast:
CONTRAST_QUANTILE = 75.0  # that percentile of its judged detections' contrasts
MIN_REFERENCE_DETECTIONS = 5  # a tile with fewer judged detections has no such reference
# On four fresh `dense_style` looks (never trained on), true nuclei the haematoxylin counts
# dropped in purple stroma held a median 0.066 less eosin OD than their band, the check's false
# detections kept there 0.010; the detections the counts drop on the two real H&E check images
# hold about as much eosin as their band (median deficit 0.000, none of them over 0.01).
MIN_EOSIN_DEFICIT = 0.02  # eosin OD (rgb2hed units) under the band's: a nucleus in purple stroma


@dataclass(frozen=True, slots=True)
class Evidence:
    """Per detection of one label image (ids ascending)."""

    ids: np.ndarray
    h_in: np.ndarray
    h_ring: np.ndarray
    ring_px: np.ndarray
    e_in: np.ndarray
    e_ring: np.ndarray

    def nuclear(self) -> np.ndarray:
        """Which detections show nuclear evidence (bool over `ids`)."""
        judged = self.ring_px >= MIN_RING_PX
        d = self.h_in - self.h_ring
        floor = MIN_CONTRAST
        if np.count_nonzero(judged) >= MIN_REFERENCE_DETECTIONS:
            tile_contrast = float(np.percentile(d[judged], CONTRAST_QUANTILE))
            floor = max(floor, CONTRAST_FRACTION * tile_contrast)
        ok = (d >= floor) & (self.h_in >= RATIO * self.h_ring)
        no_eosin = (self.e_ring - self.e_in >= MIN_EOSIN_DEFICIT) & (d >= 0)
        return ~judged | ok | no_eosin


def evidence(
    rgb: np.ndarray,
    labels: np.ndarray,
    ring_px: int = RING_PX,
    gap_px: int = RING_GAP_PX,
    *,
    hed: np.ndarray | None = None,
) -> Evidence:
    """`Evidence` of every detection in `labels` (int (H, W), 0 background) on `rgb`; `hed`:
    `rgb2hed(rgb)` when the caller has it (the model layer deconvolves a tile once for the
    check and the classical fill, `wsitui/models/finish.py`)."""
    lab = np.asarray(labels)
    n = int(lab.max()) if lab.size else 0
    if n <= 0:
        z = np.zeros(0)
        return Evidence(np.zeros(0, np.int64), z, z, z, z, z)
    if hed is None:
        hed = deconvolve(rgb)  # fixed (Ruifrok) vectors: the same unmixing on every tile, slide
    h, e = hed[..., 0], hed[..., 1]
    flat = lab.ravel().astype(np.int64)
    count = np.bincount(flat, minlength=n + 1)
    s_in = np.bincount(flat, weights=h.ravel(), minlength=n + 1)
    se_in = np.bincount(flat, weights=e.ravel(), minlength=n + 1)
    bg = lab == 0
    # Each background pixel within ring_px of a detection belongs to the nearest one.
    dist, (iy, ix) = ndimage.distance_transform_edt(bg, return_indices=True)
    band = bg & (dist <= ring_px) & (dist > gap_px)
    # Where a chromogen (DAB) stains the band, fixed H&E vectors read part of it as
    # haematoxylin: such pixels are not surroundings (a pale nucleus in brown cytoplasm).
    band &= hed[..., 2] <= CHROMOGEN_OD
    owner = lab[iy[band], ix[band]].astype(np.int64)
    ids = np.nonzero(count[1:])[0] + 1
    h_ring, r_count = _medians(owner, h[band], n)
    e_ring, _ = _medians(owner, e[band], n)
    return Evidence(
        ids,
        s_in[ids] / count[ids],
        h_ring[ids],
        r_count[ids].astype(np.float64),
        se_in[ids] / count[ids],
        e_ring[ids],
    )


def _medians(owner: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(median of `values` per owner 0..n, 0 where none; count per owner): one sort, no loop."""
    count = np.bincount(owner, minlength=n + 1)
    med = np.zeros(n + 1)
    if not owner.size:
        return med, count
    order = np.lexsort((values, owner))
    v = values[order]
    start = np.concatenate(([0], np.cumsum(count)[:-1]))
    has = count > 0
    lo = start[has] + (count[has] - 1) // 2
    hi = start[has] + count[has] // 2
    med[has] = 0.5 * (v[lo] + v[hi])
    return med, count


def check(
    rgb: np.ndarray, labels: np.ndarray, hed: np.ndarray | None = None
) -> tuple[np.ndarray, int, int]:
    """(`labels` without the detections lacking nuclear evidence, detections, dropped); `hed`
    as `evidence`'s."""
    ev = evidence(rgb, labels, hed=hed)
    if not ev.ids.size:
        return labels, 0, 0
    keep = ev.nuclear()
    dropped = int(np.count_nonzero(~keep))
    if not dropped:
        return labels, int(ev.ids.size), 0
    lut = np.zeros(int(labels.max()) + 1, labels.dtype)
    lut[ev.ids[keep]] = ev.ids[keep]
    return lut[labels], int(ev.ids.size), dropped


# ---- counting, for the job's manifest ----------------------------------------------------------
_TALLY: contextvars.ContextVar[list[tuple[int, int]] | None] = contextvars.ContextVar(
    "wsitui_nuclear_tally", default=None
)


@contextmanager
def tally() -> Iterator[list[tuple[int, int]]]:
    """Within it (on this thread), every checked tile appends (detections, dropped) to the list
    yielded, in order: the backends put each tile's count in its shard."""
    out: list[tuple[int, int]] = []
    token = _TALLY.set(out)
    try:
        yield out
    finally:
        _TALLY.reset(token)


def count(counts: list[tuple[int, int]]) -> None:
    """Append a batch's (detections, dropped) per checked tile, in order, to any `tally` open on
    this thread (`wsitui/models/finish.py` checks the tiles)."""
    sink = _TALLY.get()
    if sink is not None:
        sink.extend(counts)


def mode_of(value: object) -> str:
    """A `nuclear_check` setting, checked: ValueError in one line naming the choices."""
    if value not in MODES:
        raise ValueError(f"nuclear_check {value!r} is unknown: use 'auto' or 'off'")
    return str(value)
