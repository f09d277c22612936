"""Needle-biopsy-like synthetic slides: small tissue fragments, pale soft edges, and dust,
debris and pen marks on the glass, with the exact tissue truth beside them.

The sample generator (wsitui.slides.sample) draws big tissue only (it flips away anything under
20,000 µm²). Real slides, and the slides an outside check uses, also have what a tissue mask
gets wrong most: fragments of about 50-250 µm with nuclei inside (on a needle biopsy those
fragments *are* the tissue), stain that fades out at the edge or is pale throughout, and on
the glass things that are not tissue: dark dust, coloured specks without nuclei, pen marks.

`render_fragments(size, seed, style)` draws one such slide at level 0 (MPP 0.499 µm/px) in a
`SampleStyle` look (stain colours, soft edges, nuclei, blur, noise, JPEG quality), and
`write_fragment_slide` writes it as an Aperio-like pyramidal SVS (levels 1/4/16, so a mask at
~8 µm/px reads level 2) with `NAME.truth.npz` beside it: `tissue`, a bool grid with one cell per
`tissue_downsample` (16) level-0 px, True where tissue is; dust, debris and ink are never
tissue. As in the sample generator, a soft edge fades symmetrically across the truth's edge.
Everything is a pure function of (size, seed, style).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import tifffile
from PIL import Image, ImageDraw
from scipy import ndimage

from wsitui.slides.safe_write import AtomicFile, check_target
from wsitui.slides.sample import MPP, truth_path_for
from wsitui.slides.style import SampleStyle

FIELD_DS = 4  # level-0 px per cell of the shape field (2 µm)
TRUTH_DS = 16  # level-0 px per truth cell (~8 µm, the mask's own resolution)
# A soft edge fades over the style's soft_edge_um, at most this: a piece 100 µm across that
# faded over 140 µm would have no edge a pathologist could draw.
MAX_FADE_UM = 50.0
TILE = 256
LEVEL_FACTOR = 4
MARKER = "|ScanScope ID = WSITUI-FRAGMENTS|"
_HEAD = "Aperio Image Library v12.0.15\r\n"


@dataclass(frozen=True, slots=True)
class FragmentLayout:
    """How many of each thing a slide gets (the seed decides where and how they look)."""

    cores: int = 1  # needle cores: strips ~250-450 µm wide
    fragments: int = 30  # small pieces, 50-250 µm across, nuclei inside
    pale_share: float = 0.4  # share of fragments stained at 35-65 % strength
    dust: int = 40  # dark grey specks, 5-40 µm
    specks: int = 30  # coloured specks without nuclei (brown, blue-green, red, pink), 5-45 µm
    pen_marks: int = 1  # ink strokes 25-70 µm wide, ~1 mm long


DEFAULT_LAYOUT = FragmentLayout()


@dataclass(frozen=True, slots=True)
class FragmentSlide:
    rgb: np.ndarray  # (h, w, 3) uint8, level 0
    tissue: np.ndarray  # bool (ceil(h / TRUTH_DS), ceil(w / TRUTH_DS))
    fragments: int  # tissue objects drawn (cores and fragments)
    nuclei: int


def _od(rgb: tuple[float, float, float], glass: np.ndarray) -> np.ndarray:
    return np.clip(-np.log10(np.clip(np.asarray(rgb, np.float64), 1.0, None) / glass), 0, None)


def _blob(rng: np.random.Generator, n: int, rx: float, ry: float) -> np.ndarray:
    """(n, 2) polygon of a ragged ellipse with semi-axes rx, ry around (0, 0), rotated."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones(n)
    for k in range(2, 9):
        r += rng.normal(0, 0.12 / k**0.6) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    r = np.clip(r, 0.45, None)
    ang = rng.uniform(0, np.pi)
    x, y = rx * r * np.cos(t), ry * r * np.sin(t)
    c, s = math.cos(ang), math.sin(ang)
    return np.column_stack([x * c - y * s, x * s + y * c])


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Values in [0, 1] varying over about `cell` px, (h, w) float32."""
    gh, gw = max(2, math.ceil(shape[0] / cell) + 1), max(2, math.ceil(shape[1] / cell) + 1)
    g = rng.uniform(0, 1, (gh, gw)).astype(np.float32)
    img = Image.fromarray(g, mode="F").resize((shape[1], shape[0]), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(img), 0, 1)


def render_fragments(
    size: tuple[int, int],
    seed: int,
    style: SampleStyle,
    layout: FragmentLayout = DEFAULT_LAYOUT,
) -> FragmentSlide:
    """One slide's level-0 pixels and its tissue truth (see the module docstring)."""
    w, h = size
    rng = np.random.default_rng([seed, 7919])
    um = 1.0 / MPP  # level-0 px per µm
    fw, fh = math.ceil(w / FIELD_DS), math.ceil(h / FIELD_DS)
    shapes = Image.new("L", (fw, fh), 0)  # object id + 1 per field cell (0: glass)
    draw = ImageDraw.Draw(shapes)
    strength = [0.0]
    n_obj = 0
    for _ in range(layout.cores):
        length = rng.uniform(0.45, 0.8) * w
        width = rng.uniform(250, 450) * um
        cx, cy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.3, 0.7) * h
        poly = _blob(rng, 96, length / 2, width / 2)
        draw.polygon([((cx + x) / FIELD_DS, (cy + y) / FIELD_DS) for x, y in poly], fill=n_obj + 1)
        strength.append(rng.uniform(0.75, 1.0))
        n_obj += 1
    occupied = np.asarray(shapes) > 0
    for _ in range(layout.fragments):
        d = rng.uniform(50, 250) * um  # across, level-0 px
        rx = d / 2 * rng.uniform(0.8, 1.25)
        ry = d / 2 * rng.uniform(0.55, 1.0)
        for _try in range(40):  # apart from other tissue (a fragment, not a lobe of a core)
            cx, cy = rng.uniform(0.05, 0.95) * w, rng.uniform(0.05, 0.95) * h
            x0, x1 = int((cx - rx - 60 * um) / FIELD_DS), int((cx + rx + 60 * um) / FIELD_DS)
            y0, y1 = int((cy - rx - 60 * um) / FIELD_DS), int((cy + rx + 60 * um) / FIELD_DS)
            if x0 >= 0 and y0 >= 0 and x1 < fw and y1 < fh and not occupied[y0:y1, x0:x1].any():
                break
        else:
            continue
        poly = _blob(rng, 48, rx, ry)
        draw.polygon([((cx + x) / FIELD_DS, (cy + y) / FIELD_DS) for x, y in poly], fill=n_obj + 1)
        occupied = np.asarray(shapes) > 0
        pale = rng.uniform() < layout.pale_share
        strength.append(rng.uniform(0.35, 0.65) if pale else rng.uniform(0.7, 1.0))
        n_obj += 1
        if n_obj >= 250:
            break
    ids = np.asarray(shapes)
    inside = ids > 0
    # Signed distance to the truth's edge (level-0 px, > 0 inside), bilinear at level 0.
    dist = np.where(
        inside,
        ndimage.distance_transform_edt(inside) - 0.5,
        0.5 - ndimage.distance_transform_edt(~inside),
    ).astype(np.float32) * np.float32(FIELD_DS)
    # Truth: a truth cell is tissue when its centre is (the field's sign there).
    tx = (np.arange(math.ceil(w / TRUTH_DS)) + 0.5) * TRUTH_DS / FIELD_DS - 0.5
    ty = (np.arange(math.ceil(h / TRUTH_DS)) + 0.5) * TRUTH_DS / FIELD_DS - 0.5
    truth = ndimage.map_coordinates(dist, np.meshgrid(ty, tx, indexing="ij"), order=1) > 0

    def up(a: np.ndarray, kind: Image.Resampling) -> np.ndarray:
        img = Image.fromarray(a.astype(np.float32), mode="F").resize(
            (fw * FIELD_DS, fh * FIELD_DS), kind
        )
        return np.asarray(img)[:h, :w]

    d0 = up(dist, Image.Resampling.BILINEAR)
    # Each object's stain strength, carried out over the glass (its fade) to the nearest object.
    near = ndimage.distance_transform_edt(~inside, return_distances=False, return_indices=True)
    s0 = up(np.asarray(strength, np.float32)[ids[near[0], near[1]]], Image.Resampling.BILINEAR)
    soft = min(style.soft_edge_um, MAX_FADE_UM) * um
    alpha = np.clip(0.5 + d0 / soft, 0, 1) if soft > 0 else np.clip(d0 + 0.5, 0, 1)
    alpha *= s0

    glass = np.asarray(style.glass, np.float64)
    od_e0, od_e1 = _od(style.eosin_light, glass), _od(style.eosin_dark, glass)
    od_n0, od_n1 = _od(style.nucleus_light, glass), _od(style.nucleus_dark, glass)
    shade = _smooth_noise(rng, (h, w), 200 * um)
    if style.grain > 0:
        grain = _smooth_noise(rng, (h, w), style.grain_px) - 0.5
        shade = np.clip(shade + grain * np.float32(style.grain / 25), 0, 1)
    od = np.empty((h, w, 3), np.float32)
    for c in range(3):
        od[..., c] = (od_e0[c] + (od_e1[c] - od_e0[c]) * shade) * alpha

    # Nuclei: ellipses inside tissue (centres at least a radius inside the edge).
    nuc = Image.new("L", (w, h), 0)
    nd = ImageDraw.Draw(nuc)
    a0, a1 = style.nucleus_major_px
    area_um2 = float(inside.sum()) * (FIELD_DS / um) ** 2
    count = rng.poisson(style.nucleus_density * 12 / 64.0**2 * area_um2 * 0.7)
    ys, xs = np.nonzero(dist > a1)
    nuclei = 0
    if len(xs) and count:
        pick = rng.integers(0, len(xs), count)
        px = (xs[pick] + rng.uniform(0, 1, count)) * FIELD_DS
        py = (ys[pick] + rng.uniform(0, 1, count)) * FIELD_DS
        t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        for x, y in zip(px, py, strict=True):
            a = rng.uniform(a0, a1)
            b = rng.uniform(min(style.nucleus_minor_min_px, a), a)
            ang = rng.uniform(0, np.pi)
            c, s = math.cos(ang), math.sin(ang)
            ex, ey = a * np.cos(t), b * np.sin(t)
            pts = list(zip(x + ex * c - ey * s, y + ex * s + ey * c, strict=True))
            nd.polygon(pts, fill=int(rng.integers(1, 256)))
            nuclei += 1
    nv = np.asarray(nuc)
    on = nv > 0
    if on.any():
        ns = (nv[on].astype(np.float32) / 255)[:, None]
        st = s0[on][:, None]
        od[on] = (od_n0 + (od_n1 - od_n0) * ns).astype(np.float32) * st

    # On the glass: dust, coloured specks and ink, never tissue (kept off it).
    junk = Image.new("RGB", (w, h), (0, 0, 0))  # OD x 100 per channel
    jd = ImageDraw.Draw(junk)
    far = ndimage.distance_transform_edt(~inside) * FIELD_DS > 40 * um

    def free_spot() -> tuple[float, float] | None:
        for _ in range(30):
            x, y = rng.uniform(0.02, 0.98) * w, rng.uniform(0.02, 0.98) * h
            fx, fy = min(fw - 1, int(x / FIELD_DS)), min(fh - 1, int(y / FIELD_DS))
            if far[fy, fx]:
                return x, y
        return None

    def speck(colour_od: np.ndarray, d_um: tuple[float, float]) -> None:
        d = rng.uniform(*d_um) * um
        spot = free_spot()
        if spot is None:
            return
        poly = _blob(rng, 16, d / 2, d / 2 * rng.uniform(0.4, 1.0))
        fill = tuple(int(v) for v in np.clip(colour_od * 100, 0, 255))
        jd.polygon([(spot[0] + x, spot[1] + y) for x, y in poly], fill=fill)

    for _ in range(layout.dust):
        speck(np.full(3, rng.uniform(0.15, 1.0)) * rng.uniform(0.9, 1.1, 3), (5, 35))
    colours = [  # RGB of the speck on white: brown, yellow, blue-green, red, pink eosin
        (150, 105, 60),
        (200, 170, 70),
        (70, 140, 150),
        (190, 60, 60),
        tuple(style.eosin_dark),
    ]
    for _ in range(layout.specks):
        rgb = colours[int(rng.integers(len(colours)))]
        speck(_od(tuple(float(v) for v in rgb), np.full(3, 243.0)), (5, 45))
    inks = [(40, 60, 160), (40, 130, 80), (40, 40, 40)]
    for _ in range(layout.pen_marks):
        ink = _od(tuple(float(v) for v in inks[int(rng.integers(len(inks)))]), np.full(3, 243.0))
        start = free_spot()
        if start is None:
            continue
        pts = [start]
        heading = rng.uniform(0, 2 * np.pi)
        for _ in range(12):
            heading += rng.normal(0, 0.25)
            x, y = (
                pts[-1][0] + 90 * um * math.cos(heading),
                pts[-1][1] + 90 * um * math.sin(heading),
            )
            fx, fy = int(np.clip(x / FIELD_DS, 0, fw - 1)), int(np.clip(y / FIELD_DS, 0, fh - 1))
            if not (0 <= x < w and 0 <= y < h) or not far[fy, fx]:
                break
            pts.append((x, y))
        if len(pts) > 2:
            fill = tuple(int(v) for v in np.clip(ink * 100, 0, 255))
            jd.line(pts, fill=fill, width=int(rng.uniform(25, 70) * um), joint="curve")
    od += np.asarray(junk, np.float32) / 100

    img = (glass.astype(np.float32) * np.power(np.float32(10), -od)).astype(np.float32)
    del od
    if style.blur_px > 0:
        img = ndimage.gaussian_filter(img, (style.blur_px, style.blur_px, 0), truncate=3.0)
    amp = np.float32(style.noise_glass) + np.float32(style.noise_tissue - style.noise_glass) * (
        np.clip(alpha, 0, 1)
    )
    img += (amp * rng.standard_normal((h, w), np.float32))[..., None]
    rgb = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return FragmentSlide(rgb, truth, n_obj, nuclei)


def _is_ours(path: Path) -> bool:
    try:
        with tifffile.TiffFile(path) as tif:
            return MARKER in (tif.pages[0].description or "")
    except Exception:
        return False


def _write_svs(
    f: IO[bytes],
    levels: list[np.ndarray],
    thumb: Image.Image,
    head: str,
    meta: str,
    q: int,
    size: tuple[int, int],
) -> None:
    w, h = size
    with tifffile.TiffWriter(f) as tif:
        opts: dict[str, Any] = dict(
            photometric="rgb", compression="jpeg", compressionargs={"level": q}
        )
        tif.write(
            levels[0],
            tile=(TILE, TILE),
            description=f"{head} JPEG/RGB Q={q}{meta}",
            metadata=None,
            **opts,
        )
        tif.write(
            np.asarray(thumb),
            description=f"{_HEAD}{w}x{h} -> {thumb.width}x{thumb.height} - ",
            metadata=None,
            **opts,
        )
        for lv in levels[1:]:
            tif.write(
                lv,
                tile=(TILE, TILE),
                description=f"{head} -> {lv.shape[1]}x{lv.shape[0]} JPEG/RGB Q={q}",
                metadata=None,
                **opts,
            )


def write_fragment_slide(
    path: Path,
    size: tuple[int, int] = (4096, 3072),
    seed: int = 0,
    style: SampleStyle | None = None,
    layout: FragmentLayout = DEFAULT_LAYOUT,
    *,
    force: bool = False,
) -> FragmentSlide:
    """Write the slide (Aperio-like SVS) and NAME.truth.npz beside it; return what was drawn."""
    style = style or SampleStyle()
    path = Path(path)
    check_target(path, _is_ours, force, "fragment slide")
    slide = render_fragments(size, seed, style, layout)
    w, h = size
    levels = [slide.rgb]
    while max(levels[-1].shape[:2]) // LEVEL_FACTOR >= TILE:
        prev = levels[-1]
        ph, pw = prev.shape[0] // LEVEL_FACTOR, prev.shape[1] // LEVEL_FACTOR
        crop = np.ascontiguousarray(prev[: ph * LEVEL_FACTOR, : pw * LEVEL_FACTOR])
        levels.append(np.asarray(Image.fromarray(crop).reduce(LEVEL_FACTOR)))
    q = style.jpeg_quality
    base = f"{w}x{h} [0,0 {w}x{h}] ({TILE}x{TILE})"
    meta = f"|AppMag = 20|MPP = {MPP:.4f}{MARKER}"
    thumb = Image.fromarray(levels[-1])
    thumb.thumbnail((1024, 1024))
    with AtomicFile(path) as out:
        _write_svs(out.file, levels, thumb, f"{_HEAD}{base}", meta, q, (w, h))
        out.commit()
    np.savez_compressed(
        truth_path_for(path),
        tissue=slide.tissue,
        tissue_downsample=TRUTH_DS,
        mpp=MPP,
        seed=seed,
        style=style.to_json(),
    )
    return slide


def load_fragment_truth(path: Path) -> tuple[np.ndarray, int]:
    """(tissue bool grid, level-0 px per cell) written beside a fragment slide."""
    with np.load(truth_path_for(Path(path))) as z:
        return z["tissue"].astype(bool), int(z["tissue_downsample"])


def mask_on_truth_grid(
    mask: np.ndarray, ds: tuple[float, float], shape: tuple[int, int], tds: int
) -> np.ndarray:
    """A mask's share of tissue at each truth cell's centre, to score it against the truth
    (`tds` level-0 px per truth cell; the mask has `ds` level-0 px per px): the mean of the
    mask px touching that point, so a finer mask whose px corner falls on a centre is judged by
    the px around it, not one of them."""

    def at(n: int, d: float, size: int) -> tuple[np.ndarray, np.ndarray]:
        c = (np.arange(n) + 0.5) * tds / d
        lo, hi = np.floor(c - 1e-9).astype(int), np.floor(c + 1e-9).astype(int)
        return np.clip(lo, 0, size - 1), np.clip(hi, 0, size - 1)

    (y0, y1), (x0, x1) = at(shape[0], ds[1], mask.shape[0]), at(shape[1], ds[0], mask.shape[1])
    m = mask.astype(np.float64)
    return (m[np.ix_(y0, x0)] + m[np.ix_(y0, x1)] + m[np.ix_(y1, x0)] + m[np.ix_(y1, x1)]) / 4
