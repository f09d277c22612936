"""The tissue mask on tissue another slide generator (or a real lab) may draw and ours does
not (issue 20): fat, ink crossing a piece's edge, very pale eosin-only stroma, tiny pale
fragments with a few nuclei, pale fragments packed with nuclei. Each is drawn here at 0.5
µm/px (Beer-Lambert H&E on glass, JPEG), with its exact truth, and the mask is judged on
it; and the held-out look whose ink strokes run out over the glass (`wide101`), with the
same kind redrawn on a tuning look (`default` with wide black strokes).

Measured 2026-12-05 (before: commit fc1ea84): fat IoU 0.991 (before 0.090), ink across a
piece's edge false tissue 1.1 % (before 5.4 %), wide101 sample slide IoU 0.946 / false 2.2 %
(before 0.917 / 5.6 %); pale stroma and tiny pale fragments held before too (guards). Later
(before: commit 2b14313): wide101 0.983 / 1.0 %, `default` with strokes 0.983 / 0.6 % (before
0.889 / 1.0 %).
Pale fragments packed with nuclei, worst piece kept 0.959 / 0.913 / 0.898 (before, commit
0d54328: 0.000 / 0.718 / 0.574).
"""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageDraw
from scipy import ndimage
from scipy.spatial import cKDTree

from wsitui.jobs.tissue_mask.mask import compute_tissue_mask
from wsitui.slides.fragments import mask_on_truth_grid
from wsitui.slides.reader import open_slide
from wsitui.slides.sample import load_truth, write_sample_slide
from wsitui.slides.style import INK_OD, STYLES, stain_rgb, wide_style

MPP = 0.5
GLASS = 238.0
_E = np.array([0.072, 0.990, 0.105]) / np.linalg.norm([0.072, 0.990, 0.105])
_H = np.array([0.650, 0.704, 0.286]) / np.linalg.norm([0.650, 0.704, 0.286])


def polygon(
    size: tuple[int, int], cx: float, cy: float, rx: float, ry: float, k: int
) -> np.ndarray:
    """A lobed ellipse (bool mask of `size` = (w, h))."""
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    r = 1 + 0.1 * np.sin(k * t)
    img = Image.new("L", size, 0)
    pts = list(zip(cx + rx * r * np.cos(t), cy + ry * r * np.sin(t), strict=True))
    ImageDraw.Draw(img).polygon(pts, fill=1)
    return np.asarray(img, bool)


def slide(path: Path, od_e: np.ndarray, od_h: np.ndarray, od_other: np.ndarray | None = None):
    """Write the stain densities as an RGB tiled JPEG TIFF at MPP (seeded glass noise)."""
    od = od_e[..., None] * _E + od_h[..., None] * _H
    if od_other is not None:
        od = od + od_other
    rng = np.random.default_rng(0)
    rgb = GLASS * 10 ** (-od) + rng.normal(0, 1.5, od.shape)
    tifffile.imwrite(
        path,
        np.clip(rgb, 0, 255).astype(np.uint8),
        tile=(256, 256),
        photometric="rgb",
        compression="jpeg",
        compressionargs={"level": 85},
        metadata=None,
        resolution=(1e4 / MPP, 1e4 / MPP),
        resolutionunit="CENTIMETER",
    )
    return path


def judged(path: Path, truth: np.ndarray) -> tuple[float, float, float]:
    """(IoU, missed, false) of the mask against a level-0 truth (shares of the truth)."""
    with open_slide(path) as r:
        tm = compute_tissue_mask(r)
    h, w = truth.shape
    ys = np.minimum(((np.arange(h) + 0.5) / tm.downsample[1]).astype(int), tm.mask.shape[0] - 1)
    xs = np.minimum(((np.arange(w) + 0.5) / tm.downsample[0]).astype(int), tm.mask.shape[1] - 1)
    m = tm.mask[np.ix_(ys, xs)]
    t, hit, false = truth.sum(), (m & truth).sum(), (m & ~truth).sum()
    return hit / (t + false), (t - hit) / t, false / t


def test_fat_is_tissue(tmp_path: Path):
    # A fat lobule ~1 mm across: white cells 30-150 µm in pink septa 2-4 µm thick, a few
    # nuclei on them. At 8 µm/px the septa are a faint net the threshold kept in pieces and
    # the cells are as white as the glass: 91 % of the lobule was missed (IoU 0.090; now 0.991).
    w, h = 2400, 2400
    lobule = polygon((w, h), w / 2, h / 2, 1000, 950, 3)
    rng = np.random.default_rng(1)
    pts = rng.uniform(0, w, (140, 2))
    yy, xx = np.mgrid[0:h, 0:w]
    d, _ = cKDTree(pts).query(np.column_stack([yy.ravel(), xx.ravel()]), k=2)
    wall = (d[:, 1] - d[:, 0]).reshape(h, w) / 2 < rng.uniform(2, 4) / MPP / 2
    rim = lobule & ~ndimage.binary_erosion(lobule, iterations=6)
    septa = (wall & lobule) | rim
    od_h = np.zeros((h, w), np.float32)
    sy, sx = np.nonzero(septa)
    for j in rng.integers(0, len(sy), 60):
        od_h[sy[j] - 4 : sy[j] + 4, sx[j] - 3 : sx[j] + 3] = 0.5
    path = slide(tmp_path / "fat.tif", septa * np.float32(0.35), od_h)
    iou, missed, false = judged(path, lobule)
    assert iou >= 0.97 and false <= 0.02, (iou, missed, false)


def test_ink_crossing_a_pieces_edge_goes_with_the_glass(tmp_path: Path):
    # Black strokes 8-16 µm wide drawn across a piece's edge and 40-100 µm out over the glass
    # (a pen, a hair, a thread): the part over the glass is not tissue, the part over the
    # piece is. Measured IoU 0.977, false 1.1 %; before 0.937, 5.4 % (the strokes on the glass
    # were tissue).
    w, h = 2400, 2000
    piece = polygon((w, h), w / 2, h / 2, 800, 650, 4)
    ink = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(ink)
    rng = np.random.default_rng(2)
    dist_out = ndimage.distance_transform_edt(~piece)
    edge = np.argwhere(piece & ~ndimage.binary_erosion(piece))
    for y, x in edge[rng.choice(len(edge), 24, replace=False)]:
        ang = np.arctan2(y - h / 2, x - w / 2) + rng.uniform(-0.5, 0.5)
        out, inn = rng.uniform(80, 200), rng.uniform(40, 200)  # px out over glass, in
        a = (x - inn * np.cos(ang), y - inn * np.sin(ang))
        b = (x + out * np.cos(ang), y + out * np.sin(ang))
        draw.line([a, b], fill=1, width=int(rng.uniform(16, 32)))
    stroke = np.asarray(ink, bool)
    assert (stroke & (dist_out > 40)).sum() > 0.03 * piece.sum()  # plenty of ink on glass
    od_e = np.where(piece, np.float32(0.35), np.float32(0.0))
    od_ink = stroke[..., None] * np.full(3, 0.8, np.float32)
    path = slide(tmp_path / "ink.tif", od_e, np.zeros((h, w), np.float32), od_ink)
    iou, missed, false = judged(path, piece)
    assert false <= 0.015 and iou >= 0.97, (iou, missed, false)


def sample_slide_errors(path: Path) -> tuple[float, float]:
    """(IoU, false tissue as a share of the true tissue) of the mask of a sample slide."""
    truth = load_truth(path)
    with open_slide(path) as r:
        tm = compute_tissue_mask(r)
    tissue = truth.tissue
    share = mask_on_truth_grid(tm.mask, tm.downsample, tissue.shape, truth.tissue_downsample)
    t, hit, false = tissue.sum(), (share * tissue).sum(), (share * ~tissue).sum()
    return float(hit / (t + false)), float(false / t)


def test_ink_on_the_held_out_look_wide101(tmp_path: Path):
    # wide101 (held out, slide seed 11): black ink strokes 8-22 µm wide over big tissue, many
    # running out over the glass. Measured IoU 0.983, false 1.0 % (2026-12-05; before the
    # fine cut's stroke-free level and ink-off, commit 2b14313: 0.946 / 2.3 %; before the
    # ink-by-neighbours rule 0.917 / 5.6 %).
    style = wide_style(np.random.default_rng(101), "wide101")
    path = tmp_path / "wide101.svs"
    write_sample_slide(path, size=(4096, 3072), seed=11, style=style)
    iou, false = sample_slide_errors(path)
    assert iou >= 0.978 and false <= 0.012, (iou, false)


def test_pale_stain_beside_wide_ink_strokes_is_kept_to_the_edge(tmp_path: Path):
    # A tuning look (`default`) with black ink strokes 6-20 µm wide drawn across its
    # hard-edged tissue and out over the glass: strokes wider than nuclei raised the fine
    # cut's mean tissue level, the pale stain at the edge beside them was cut off, and the
    # strokes past the edge were called tissue. Measured 2026-12-05 at slide seed 5: IoU
    # 0.983, false 0.6 % (commit 2b14313: 0.889 / 1.0 %).
    ink = stain_rgb([(INK_OD[0], 1.2)], 255.0)
    style = replace(
        STYLES["default"],
        name="default+ink",
        fibres_per_mm2=300.0,
        fibre_color=ink,
        fibre_width_um=(6.0, 20.0),
        fibre_length_um=(50.0, 200.0),
        fibre_alpha=0.95,
    )
    path = tmp_path / "ink.svs"
    write_sample_slide(path, size=(4096, 3072), seed=5, style=style)
    iou, false = sample_slide_errors(path)
    assert iou >= 0.975 and false <= 0.008, (iou, false)


def test_very_pale_eosin_only_stroma_and_tiny_pale_fragments_are_kept(tmp_path: Path):
    # Guards (they held before): stroma at eosin OD ~0.06 with grain, no nuclei, 500 µm
    # across; ten fragments 70-150 µm across at eosin OD 0.06-0.14 with 2-5 nuclei each.
    # Measured IoU 0.987, false 0.5 %.
    w, h = 3200, 2000
    rng = np.random.default_rng(3)
    stroma = polygon((w, h), 800, 1000, 500, 350, 4)
    grain = ndimage.gaussian_filter(rng.normal(0, 1, (h, w)).astype(np.float32), 3)
    od_e = np.where(stroma, np.clip(0.06 * (1 + 0.5 * grain / grain.std()), 0, None), 0)
    od_h = np.zeros((h, w), np.float32)
    frags = []
    for k in range(10):
        d_um = rng.uniform(70, 150)
        cx, cy = 1700 + (k % 5) * 300, 500 + (k // 5) * 900
        m = polygon((w, h), cx, cy, d_um / MPP / 2, 0.75 * d_um / MPP / 2, 3)
        od_e = np.where(m, rng.uniform(0.06, 0.14), od_e)
        for _ in range(int(rng.integers(2, 6))):
            ny, nx = cy + rng.uniform(-0.3, 0.3) * d_um, cx + rng.uniform(-0.4, 0.4) * d_um
            od_h[int(ny) - 5 : int(ny) + 5, int(nx) - 5 : int(nx) + 5] = 0.45
        frags.append(m)
    path = slide(tmp_path / "pale.tif", od_e.astype(np.float32), od_h)
    truth = stroma | np.any(frags, axis=0)
    iou, missed, false = judged(path, truth)
    assert iou >= 0.97 and false <= 0.02, (iou, missed, false)
    with open_slide(path) as r:
        tm = compute_tissue_mask(r)
    for m in frags:
        ys, xs = np.nonzero(m)
        kept = tm.mask[(ys / tm.downsample[1]).astype(int), (xs / tm.downsample[0]).astype(int)]
        assert kept.mean() >= 0.85, kept.mean()


def packed_fragments(seed: int, packing: float, eosin: tuple[float, float]):
    """(eosin OD, haematoxylin OD, [(truth, µm across)]): 14 pale pieces 50-150 µm across,
    eosin OD in `eosin`, nuclei 8-18 x 8-14 µm (OD 0.4-0.7) covering ~`packing` of each."""
    w, h = 3200, 2000
    rng = np.random.default_rng(seed)
    od_e, od_h = np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
    frags = []
    for k in range(14):
        d_um = rng.uniform(50, 150)
        cx, cy = 300 + (k % 7) * 430, 450 + (k // 7) * 1000
        m = polygon((w, h), cx, cy, d_um / MPP / 2, 0.75 * d_um / MPP / 2, 3)
        od_e[m] = rng.uniform(*eosin)
        ys, xs = np.nonzero(m)
        for j in rng.integers(0, len(ys), int(packing * m.sum() / (16 * 12))):
            ry, rx = int(rng.integers(5, 9)), int(rng.integers(4, 7))
            box = (slice(ys[j] - ry, ys[j] + ry), slice(xs[j] - rx, xs[j] + rx))
            od_h[box] = np.where(m[box], rng.uniform(0.4, 0.7), od_h[box])
        frags.append((m, d_um))
    return od_e, od_h, frags


@pytest.mark.parametrize(
    ("seed", "packing", "eosin", "floor"),
    [(4, 0.4, (0.05, 0.12), 0.95), (5, 0.6, (0.05, 0.12), 0.90), (6, 0.3, (0.04, 0.08), 0.89)],
)
def test_pale_fragments_packed_with_nuclei_keep_their_pale_rims(
    tmp_path: Path, seed: int, packing: float, eosin: tuple[float, float], floor: float
):
    # Pale 50-150 µm pieces packed with nuclei (issue 20's hidden slides: "small ~100 µm
    # fragments with nuclei dropped, pale edges missed"). A small piece was re-cut at half the
    # density of its darkest quarter, its nuclear clumps, so its pale stain between and around
    # them fell outside; and a piece with no px 2 px inside (~50-90 µm) was never cut again at
    # 2 µm. Measured 2026-12-05, worst piece kept: 0.959, 0.913, 0.898, none dropped, false
    # 1.2-1.4 % (before: 0.000 (a 53 µm piece dropped), 0.718, 0.574).
    od_e, od_h, frags = packed_fragments(seed, packing, eosin)
    path = slide(tmp_path / "packed.tif", od_e, od_h)
    with open_slide(path) as r:
        tm = compute_tissue_mask(r)
    kept = []
    for m, d_um in frags:
        ys, xs = np.nonzero(m)
        on = tm.mask[(ys / tm.downsample[1]).astype(int), (xs / tm.downsample[0]).astype(int)]
        kept.append((round(float(on.mean()), 3), round(d_um)))
    assert min(kept)[0] >= floor, sorted(kept)[:3]
    truth = np.any([m for m, _ in frags], axis=0)
    _, _, false = judged(path, truth)
    assert false <= 0.02, false


@pytest.fixture(autouse=True)
def _quiet_numpy():
    with np.errstate(divide="ignore"):
        yield
