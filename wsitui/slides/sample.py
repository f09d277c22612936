"""Deterministic synthetic H&E-like Aperio SVS slides, with exact ground truth beside them.

Real slides cannot be downloaded here, so the project makes its own: white glass, irregular
pink tissue with holes, purple elliptical nuclei only inside tissue. Everything is a pure
function of (seed, size), and any 256-px tile can be rendered on its own:

* Tissue is a smooth signed field defined on a coarse grid (one value per `field_ds` level-0
  pixels, 16 by default, ~8 µm) and bilinearly upsampled per tile; a pixel is tissue where the
  field is > 0. The truth mask is the field's sign on that grid (`tissue_downsample`).
* Nuclei are seeded per 128-px cell with a counter-based hash (no sequential RNG state), and
  a candidate is dropped when it overlaps a lower-keyed candidate of the 3x3 neighbouring cells.
  So a nucleus' fate depends only on its neighbourhood: tiles are seamless and the truth list
  (every drawn centroid, semi-axes and angle) is exact. `rasterize_nuclei` is the drawing rule.
* Pixel noise is seeded per tile.

Ground truth goes beside the slide as `NAME.truth.npz` (see `load_truth` / `SampleTruth`):
`tissue` (bool grid, one cell per `tissue_downsample` level-0 px), `nuclei` (N x 5 float64:
cx, cy, a, b, theta in level-0 px / radians; draw them with `rasterize_nuclei`), plus `width`,
`height`, `seed`, `mpp` and `version`.

The writer streams: level-0 tiles are rendered row by row and handed to tifffile; level 1 (4x)
is built during that pass, lower levels from level 1, and the tissue field is built in strips.
Peak memory is about level 1 (width*height*3/16 bytes) plus a row of tiles: ~0.4 GB for
40k x 30k. The default size (`DEFAULT_SIZE`, 8192 x 6144) takes ~4 s on two cores.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image, ImageDraw
from scipy import ndimage
from scipy.spatial import cKDTree

from wsitui.slides.errors import SlideError, quoted

TILE = 256  # TIFF tile side (level-0 px)
CELL = 128  # nucleus seeding cell side; divides TILE so each cell belongs to one tile
MPP = 0.4990  # µm per level-0 pixel, as on a 20x Aperio scan
APP_MAG = 20
JPEG_QUALITY = 80
LEVEL_FACTOR = 4
THUMBNAIL_MAX = 1024
DEFAULT_SIZE = (8192, 6144)
MIN_SIDE = 1024  # so there is always a level 1 to build the thumbnail from
MAX_SIDE = 200_000

# Nuclei: ellipse semi-axes in level-0 px (0.5 µm/px -> 2-4.5 µm), 12 slots per cell.
A_MIN, A_MAX, B_MIN = 4.0, 9.0, 4.0
SLOTS = 12
SLOT_P = 0.75
GAP = 1.5  # min px between two nuclei's bounding circles

GLASS = np.array([243.0, 243.0, 241.0], np.float32)
PINK_LIGHT = np.array([236.0, 178.0, 208.0], np.float32)
PINK_DARK = np.array([214.0, 128.0, 178.0], np.float32)
NUC_LIGHT = np.array([128.0, 78.0, 166.0], np.float32)
NUC_DARK = np.array([72.0, 40.0, 122.0], np.float32)

_DESC_HEAD = "Aperio Image Library v12.0.15\r\n"
TRUTH_VERSION = 1


# ---------------------------------------------------------------------------- public helpers


def parse_size(text: str) -> tuple[int, int]:
    """Parse 'WxH' (e.g. '4096x3072'); raise ValueError with a one-line message otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m:
        raise ValueError(
            f"size {text!r} is not WxH: give width and height in pixels, e.g. 4096x3072"
        )
    size = (int(m.group(1)), int(m.group(2)))
    check_size(size)
    return size


def check_size(size: tuple[int, int]) -> None:
    w, h = size
    if not (MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE):
        raise ValueError(
            f"size {w}x{h} is out of range: each side must be {MIN_SIDE:,}-{MAX_SIDE:,} px"
        )


def truth_path_for(slide: Path) -> Path:
    """Where the ground truth of a sample slide lives: 'x.svs' -> 'x.truth.npz'."""
    return slide.with_name(slide.stem + ".truth.npz")


def level_dimensions(width: int, height: int) -> list[tuple[int, int]]:
    """Pyramid of a sample slide: 4x steps while the new level's long side is >= 256 px."""
    dims = [(width, height)]
    while True:
        w, h = dims[-1]
        nw, nh = w // LEVEL_FACTOR, h // LEVEL_FACTOR
        if max(nw, nh) < TILE or min(nw, nh) < 1:
            return dims
        dims.append((nw, nh))


def rasterize_nuclei(nuclei: np.ndarray, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """Label image (h, w) int32 of the region at level-0 (x0, y0): 0 = none, i+1 = nuclei[i].

    nuclei rows are (cx, cy, a, b, theta) in level-0 px; pixel (x, y) belongs to a nucleus when
    its centre (x+.5, y+.5) is inside the ellipse. This is the rule the sample slides are drawn
    with, so labels from the truth file match the drawn pixels exactly (before JPEG).
    """
    labels = np.zeros((h, w), np.int32)
    for i, (cx, cy, a, b, th) in enumerate(nuclei):
        xa, xb = max(x0, math.floor(cx - a)), min(x0 + w, math.ceil(cx + a) + 1)
        ya, yb = max(y0, math.floor(cy - a)), min(y0 + h, math.ceil(cy + a) + 1)
        if xa >= xb or ya >= yb:
            continue
        dx = np.arange(xa, xb) + 0.5 - cx
        dy = (np.arange(ya, yb) + 0.5 - cy)[:, None]
        c, s = math.cos(th), math.sin(th)
        u = (dx * c + dy * s) / a
        v = (dy * c - dx * s) / b
        inside = u * u + v * v <= 1.0
        labels[ya - y0 : yb - y0, xa - x0 : xb - x0][inside] = i + 1
    return labels


@dataclass(frozen=True, slots=True)
class SampleTruth:
    """Ground truth of a sample slide (see module docstring for the exact meaning)."""

    width: int
    height: int
    seed: int
    mpp: float
    tissue: np.ndarray  # bool (rows, cols); cell (i, j) = level-0 block at (j*ds, i*ds)
    tissue_downsample: float  # level-0 px per tissue pixel
    nuclei: np.ndarray  # float64 (N, 5): cx, cy, a, b, theta (level-0 px, radians)


def load_truth(path: Path) -> SampleTruth:
    """Load a sidecar written by write_sample_slide (give the .truth.npz or the slide path)."""
    path = Path(path)
    if not path.name.endswith(".truth.npz"):
        path = truth_path_for(path)
    if not path.is_file():
        raise SlideError(f"ground truth {quoted(path)} does not exist; regenerate the sample")
    try:
        with np.load(path) as z:
            if int(z["version"]) != TRUTH_VERSION:
                raise SlideError(
                    f"ground truth {quoted(path)} has version {int(z['version'])}, expected "
                    f"{TRUTH_VERSION}; regenerate the sample"
                )
            return SampleTruth(
                width=int(z["width"]),
                height=int(z["height"]),
                seed=int(z["seed"]),
                mpp=float(z["mpp"]),
                tissue=z["tissue"].astype(bool),
                tissue_downsample=float(z["tissue_downsample"]),
                nuclei=z["nuclei"].astype(np.float64),
            )
    except (OSError, KeyError, ValueError) as e:
        raise SlideError(f"ground truth {quoted(path)} is unreadable: {e}") from e


# ------------------------------------------------------------------------- the slide's content


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _hash_u01(seed: int, cx: np.ndarray, cy: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) draws that depend only on (seed, cell, draw index): no RNG state."""
    x = _splitmix(np.full(np.broadcast(cx, cy, k).shape, seed, np.uint64))
    for part in (cx, cy, k):
        x = _splitmix(x ^ np.asarray(part).astype(np.int64).view(np.uint64))
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53


class _Waves:
    """A sum of random plane waves (1/f amplitudes, unit-ish std): smooth, analytic noise
    that can be evaluated on any part of the grid, so the field is built in strips."""

    def __init__(self, rng: np.random.Generator, fmin: float, fmax: float, n: int) -> None:
        self.f = rng.uniform(fmin, fmax, n)
        ang = rng.uniform(0, 2 * np.pi, n)
        self.cx, self.cy = np.cos(ang), np.sin(ang)
        self.phase = rng.uniform(0, 7, n)
        self.amp = 1.0 / self.f / math.sqrt(float(np.sum(1.0 / self.f**2)) / 2)

    def __call__(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        out = np.zeros(np.broadcast_shapes(u.shape, v.shape))
        for f, cx, cy, ph, amp in zip(self.f, self.cx, self.cy, self.phase, self.amp, strict=True):
            out += amp * np.cos(2 * np.pi * f * (cx * u + cy * v) + ph)
        return out


def _flip_small(raw: np.ndarray, min_px: float) -> np.ndarray:
    """raw with objects and enclosed holes smaller than min_px removed/filled."""
    lab, n = ndimage.label(raw, structure=np.ones((3, 3)))
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    small = sizes < min_px
    small[0] = False
    out = raw & ~small[lab]
    lab, n = ndimage.label(~out)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    fill = sizes < min_px
    fill[0] = False
    fill[border] = False
    return out | fill[lab]


class SamplePlan:
    """Everything that defines a sample slide's pixels, for a (width, height, seed)."""

    def __init__(self, width: int, height: int, seed: int) -> None:
        check_size((width, height))
        if not 0 <= seed < 2**63:
            raise ValueError(f"seed {seed} is out of range: use 0 <= seed < 2**63")
        self.width, self.height, self.seed = width, height, seed
        ds = 16
        while math.ceil(width / ds) * math.ceil(height / ds) > 8_000_000:
            ds *= 2
        self.field_ds = ds
        self.fields = self._make_fields()  # (2, fh, fw) float32: tissue signed field, shade
        self.truth_tissue = self.fields[0] > 0
        self.cells_x = math.ceil(width / CELL)
        self.cells_y = math.ceil(height / CELL)

    # -- fields (coarse grid) --------------------------------------------------------------

    def _make_fields(self) -> np.ndarray:
        w, h, ds = self.width, self.height, self.field_ds
        fw, fh = math.ceil(w / ds), math.ceil(h / ds)
        rng = np.random.default_rng([self.seed, 0])
        s = min(w, h)  # shapes scale with the slide: the same seed looks alike at any size
        blobs = []
        for _ in range(rng.integers(2, 5)):
            cu, cv = rng.uniform(0.22, 0.78) * w / s, rng.uniform(0.25, 0.75) * h / s
            rx, ry, ang = rng.uniform(0.16, 0.32), rng.uniform(0.14, 0.28), rng.uniform(0, np.pi)
            blobs.append((cu, cv, rx, ry, math.cos(ang), math.sin(ang)))
        coarse, fine = _Waves(rng, 1.5, 6.0, 16), _Waves(rng, 8.0, 20.0, 16)
        shade_waves = _Waves(rng, 1.0, 5.0, 10)

        def base(u: np.ndarray, v: np.ndarray) -> np.ndarray:
            """Tissue field before holes: the union of elliptic blobs, made ragged by noise."""
            env = np.full(np.broadcast_shapes(u.shape, v.shape), -1.0)
            for cu, cv, rx, ry, c, sn in blobs:
                du, dv = u - cu, v - cv
                env = np.maximum(
                    env, 1.0 - ((du * c + dv * sn) / rx) ** 2 - ((dv * c - du * sn) / ry) ** 2
                )
            return env + 0.22 * coarse(u, v) + 0.06 * fine(u, v)

        holes = []  # (u, v, radius): centres well inside tissue, found by rejection sampling
        for _ in range(rng.integers(3, 8)):
            for _ in range(1000):
                hu, hv = rng.uniform(0, w / s), rng.uniform(0, h / s)
                if base(np.array(hu), np.array(hv)) > 0.35:
                    holes.append((hu, hv, rng.uniform(0.035, 0.07)))
                    break
        # Built in strips of rows in float32: full-size float64 temporaries would cost ~0.5 GB
        # on a 40k x 30k slide.
        fields = np.empty((2, fh, fw), np.float32)
        u = ((np.arange(fw) + 0.5) * ds / s)[None, :]
        for r0 in range(0, fh, 256):
            v = ((np.arange(r0, min(fh, r0 + 256)) + 0.5) * ds / s)[:, None]
            f = base(u, v)
            for hu, hv, rh in holes:
                f -= 1.8 * np.exp(-((((u - hu) ** 2 + (v - hv) ** 2) / rh**2) ** 2))
            fields[0, r0 : r0 + len(v)] = f
            fields[1, r0 : r0 + len(v)] = 0.5 + 0.5 * np.tanh(1.2 * shade_waves(u, v))
        # No features below 0.2% of the slide or 20,000 µm²: tissue fragments are big. Flipping
        # the sign of whole components keeps the field continuous (it is ~0 on their edges).
        tissue = fields[0]
        clean = _flip_small(tissue > 0, max(0.002 * fw * fh, 20_000 / (ds * MPP) ** 2))
        np.abs(tissue, out=tissue)
        np.negative(tissue, out=tissue, where=~clean)
        tissue[tissue == 0] = -1e-6
        return fields

    def _axis(self, start: int, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Grid index and weight of the bilinear sample at pixel centres start..start+n-1."""
        g = np.clip((np.arange(start, start + n) + 0.5) / self.field_ds - 0.5, 0, size - 1)
        j0 = np.minimum(np.floor(g).astype(np.int64), size - 2)
        return j0, (g - j0).astype(np.float32)

    def fields_at_region(self, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        """(2, h, w) bilinear fields at level-0 pixel centres.

        Plain indexing, no matmul: BLAS on tiny matrices stalls when the cores are busy.
        """
        fh, fw = self.fields.shape[1:]
        jx, tx = self._axis(x0, w, fw)
        jy, ty = self._axis(y0, h, fh)
        lx, ly = int(jx.min()), int(jy.min())
        sub = self.fields[:, ly : int(jy.max()) + 2, lx : int(jx.max()) + 2]
        jx, jy = jx - lx, jy - ly
        cols = sub[:, :, jx] * (1 - tx) + sub[:, :, jx + 1] * tx
        return cols[:, jy] * (1 - ty)[:, None] + cols[:, jy + 1] * ty[:, None]

    def tissue_at_points(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Tissue field (float) at level-0 points (bilinear, same rule as fields_at_region)."""
        fh, fw = self.fields.shape[1:]
        gx = np.clip(x / self.field_ds - 0.5, 0, fw - 1)
        gy = np.clip(y / self.field_ds - 0.5, 0, fh - 1)
        jx = np.minimum(np.floor(gx).astype(np.int64), fw - 2)
        jy = np.minimum(np.floor(gy).astype(np.int64), fh - 2)
        tx, ty = gx - jx, gy - jy
        f = self.fields[0]
        top = f[jy, jx] * (1 - tx) + f[jy, jx + 1] * tx
        bot = f[jy + 1, jx] * (1 - tx) + f[jy + 1, jx + 1] * tx
        return top * (1 - ty) + bot * ty

    # -- nuclei ----------------------------------------------------------------------------

    def nuclei_in_cells(self, cx0: int, cx1: int, cy0: int, cy1: int) -> tuple[np.ndarray, ...]:
        """Accepted nuclei of cells [cx0, cx1) x [cy0, cy1), in key order.

        Returns (params (N, 5) float64: cx, cy, a, b, theta; shade (N,); cell row (N,)).
        """
        gx, gy = np.meshgrid(np.arange(cx0 - 1, cx1 + 1), np.arange(cy0 - 1, cy1 + 1))
        cx = np.repeat(gx.ravel(), SLOTS)
        cy = np.repeat(gy.ravel(), SLOTS)
        k = np.tile(np.arange(SLOTS), gx.size)
        draws = [_hash_u01(self.seed, cx, cy, k * 8 + j) for j in range(7)]
        act = draws[0] < SLOT_P
        cx, cy, k = cx[act], cy[act], k[act]
        d = [x[act] for x in draws]
        x = (cx + d[1]) * CELL
        y = (cy + d[2]) * CELL
        a = A_MIN + (A_MAX - A_MIN) * d[3]
        b = B_MIN + (a - B_MIN) * d[4]
        theta = np.pi * d[5]
        key = ((cy + 1) * (self.cells_x + 3) + (cx + 1)) * SLOTS + k  # row-major cell order
        rejected = np.zeros(len(x), bool)
        pairs = cKDTree(np.column_stack([x, y])).query_pairs(2 * A_MAX + GAP, output_type="ndarray")
        if len(pairs):
            i, j = pairs[:, 0], pairs[:, 1]
            close = np.hypot(x[i] - x[j], y[i] - y[j]) < a[i] + a[j] + GAP
            i, j = i[close], j[close]
            rejected[np.where(key[i] > key[j], i, j)] = True
        keep = ~rejected & (cx >= cx0) & (cx < cx1) & (cy >= cy0) & (cy < cy1)
        keep &= (x - a >= 0) & (x + a <= self.width) & (y - a >= 0) & (y + a <= self.height)
        # Whole ellipse inside tissue: centre and 8 points on its bounding circle.
        ok = keep.copy()
        for ang in [None, *np.linspace(0, 2 * np.pi, 8, endpoint=False)]:
            if ang is None:
                px, py = x, y
            else:
                px, py = x + (a + 1) * np.cos(ang), y + (a + 1) * np.sin(ang)
            ok &= self.tissue_at_points(px, py) > 0
        params = np.column_stack([x, y, a, b, theta])[ok]
        return params, d[6][ok], cy[ok]

    # -- pixels ----------------------------------------------------------------------------

    def render_tile(
        self, tx: int, ty: int, nuclei: tuple[np.ndarray, np.ndarray] | None = None
    ) -> np.ndarray:
        """Level-0 TIFF tile (tx, ty): (256, 256, 3) uint8, padding past the edge included.

        nuclei: (params, shade) containing at least every nucleus that reaches the tile (a
        speed-up for the writer); by default they are computed from the tile's neighbour cells.
        """
        x0, y0 = tx * TILE, ty * TILE
        if nuclei is None:
            c = TILE // CELL
            p, shade, _ = self.nuclei_in_cells(
                c * tx - 1, c * tx + c + 1, c * ty - 1, c * ty + c + 1
            )
        else:
            p, shade = nuclei
        f = self.fields_at_region(x0, y0, TILE, TILE)
        tissue = f[0] > 0
        # Triangular noise (sum of two uniform bytes, unit std): ~5x cheaper than Gaussian.
        raw = np.frombuffer(
            np.random.default_rng([self.seed, 2, tx, ty]).bytes(2 * TILE * TILE), np.uint8
        ).reshape(2, TILE, TILE)
        noise = (raw[0].astype(np.float32) + raw[1] - 255.0) * (1 / 104.4)
        amp = np.where(tissue, np.float32(7.0), np.float32(2.0))
        shade_px = np.where(tissue, f[1], np.float32(0.0))[..., None]
        img = np.where(tissue[..., None], PINK_LIGHT, GLASS) + (PINK_DARK - PINK_LIGHT) * shade_px
        img += (amp * noise)[..., None]
        labels = rasterize_nuclei(p, x0, y0, TILE, TILE)
        nz = labels > 0
        if nz.any():
            ns = shade[labels[nz] - 1].astype(np.float32)[:, None]
            img[nz] = NUC_LIGHT + (NUC_DARK - NUC_LIGHT) * ns + (9.0 * noise[nz])[:, None]
        img += 0.5
        return np.clip(img, 0, 255, out=img).astype(np.uint8)

    def render_region(self, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        """Level-0 pixels of any region, composed from independently rendered tiles."""
        out = np.zeros((h, w, 3), np.uint8)
        for ty in range(y0 // TILE, (y0 + h - 1) // TILE + 1):
            for tx in range(x0 // TILE, (x0 + w - 1) // TILE + 1):
                t = self.render_tile(tx, ty)
                ax, ay = max(x0, tx * TILE), max(y0, ty * TILE)
                bx, by = min(x0 + w, tx * TILE + TILE), min(y0 + h, ty * TILE + TILE)
                out[ay - y0 : by - y0, ax - x0 : bx - x0] = t[
                    ay - ty * TILE : by - ty * TILE, ax - tx * TILE : bx - tx * TILE
                ]
        return out


# ------------------------------------------------------------------------------- the writer


@dataclass(frozen=True, slots=True)
class SampleInfo:
    path: Path
    truth_path: Path
    width: int
    height: int
    seed: int
    level_dimensions: tuple[tuple[int, int], ...]
    nuclei: int
    tissue_fraction: float
    file_bytes: int
    seconds: float


def _reduce4(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """4x4 box average (rounded) of the top-left (4*out_h, 4*out_w) of img.

    PIL's reduce is ~20x faster than numpy; strips keep its copy of the input small.
    """
    strips = []
    for r in range(0, out_h, 128):
        rows = min(128, out_h - r)
        strip = np.ascontiguousarray(img[r * 4 : (r + rows) * 4, : out_w * 4])
        strips.append(np.asarray(Image.fromarray(strip).reduce(LEVEL_FACTOR)))
    return np.concatenate(strips) if len(strips) > 1 else strips[0]


def _desc_level(w0: int, h0: int, w: int, h: int) -> str:
    base = f"{w0}x{h0} [0,0 {w0}x{h0}] ({TILE}x{TILE})"
    if (w, h) == (w0, h0):
        return f"{_DESC_HEAD}{base} JPEG/RGB Q={JPEG_QUALITY}"
    return f"{_DESC_HEAD}{base} -> {w}x{h} JPEG/RGB Q={JPEG_QUALITY}"


def _label_image(seed: int, size: tuple[int, int]) -> np.ndarray:
    img = Image.new("RGB", (400, 400), (250, 250, 250))
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(["wsitui sample", f"seed {seed}", f"{size[0]}x{size[1]}"]):
        draw.text((24, 24 + 28 * i), line, fill=(20, 20, 20))
    bits = _hash_u01(seed, np.arange(48), np.zeros(48), np.full(48, 99)) < 0.5
    for i, bit in enumerate(bits):  # a fake barcode that differs per seed
        draw.rectangle([24 + 7 * i, 200, 24 + 7 * i + (4 if bit else 2), 360], fill=(0, 0, 0))
    return np.asarray(img)


def _macro_image(label: np.ndarray, overview: np.ndarray) -> np.ndarray:
    h = 400
    macro = Image.new("RGB", (1200, h), (225, 228, 232))  # glass seen by the macro camera
    macro.paste(Image.fromarray(label), (0, 0))
    ov = Image.fromarray(overview)
    ov.thumbnail((760, h - 40), Image.Resampling.BOX)
    macro.paste(ov, (420 + (760 - ov.width) // 2, (h - ov.height) // 2))
    return np.asarray(macro)


def _write_svs(
    dest: Path,
    plan: SamplePlan,
    scratch: Path,
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> np.ndarray:
    """Write the SVS at dest; return the truth nuclei (N, 5) in key order."""
    width, height, seed = plan.width, plan.height, plan.seed
    dims = level_dimensions(width, height)
    ntx, nty = math.ceil(width / TILE), math.ceil(height / TILE)
    w1, h1 = dims[1]
    # Level 1 lives in a file-backed array when big, so RSS stays flat on huge slides.
    if w1 * h1 * 3 > 256 * 2**20:
        level1: np.ndarray = np.lib.format.open_memmap(
            scratch / "level1.npy", mode="w+", dtype=np.uint8, shape=(h1, w1, 3)
        )
    else:
        level1 = np.empty((h1, w1, 3), np.uint8)
    truth_nuclei: list[np.ndarray] = []
    c = TILE // CELL  # cells per tile side
    q = TILE // LEVEL_FACTOR  # a level-0 tile's side at level 1

    def row_tiles(pool: ThreadPoolExecutor) -> Iterator[np.ndarray]:
        for ty in range(nty):
            # Nuclei of the row's cells plus one cell row either side (they reach in).
            p, shade, crow = plan.nuclei_in_cells(0, plan.cells_x, c * ty - 1, c * ty + c + 1)
            truth_nuclei.append(p[(crow >= c * ty) & (crow < c * ty + c)])

            def render(tx: int, ty: int = ty, p: np.ndarray = p, sh: np.ndarray = shade) -> Any:
                near = np.abs(p[:, 0] - (tx * TILE + TILE / 2)) < TILE / 2 + A_MAX + 2
                return plan.render_tile(tx, ty, (p[near], sh[near]))

            tiles = list(pool.map(render, range(ntx)))  # one row: ~31 MB on 40k px
            for tx, tile in enumerate(tiles):
                r0, c0 = ty * q, tx * q
                rh, cw = min(q, h1 - r0), min(q, w1 - c0)
                if rh > 0 and cw > 0:
                    level1[r0 : r0 + rh, c0 : c0 + cw] = _reduce4(tile, q, q)[:rh, :cw]
            # Report before yielding: tifffile stops pulling right after the last tile.
            if progress is not None:
                progress((ty + 1) * ntx, ntx * nty)
            yield from tiles

    desc0 = (
        f"{_desc_level(width, height, width, height)}|AppMag = {APP_MAG}|StripeWidth = 2040"
        f"|ScanScope ID = WSITUI|Filename = wsitui-sample-{seed}|Date = 01/01/25"
        f"|Time = 00:00:00|User = wsitui|MPP = {MPP:.4f}|Left = 0|Top = 0"
        f"|Title = wsitui synthetic sample (seed {seed})"
    )
    common: dict[str, Any] = {
        "photometric": "rgb",
        "metadata": None,  # else tifffile puts its own JSON in ImageDescription
        "compression": "jpeg",
        "compressionargs": {"level": JPEG_QUALITY},
    }
    # tifffile buffers up to 512 MB of raw tiles per batch by default: keep it to 16 MB.
    batch = {"maxworkers": workers, "buffersize": 16 * 2**20}
    with (
        tifffile.TiffWriter(dest, bigtiff=width * height * 3 > 2**31) as tif,
        ThreadPoolExecutor(workers) as pool,
    ):
        tif.write(
            row_tiles(pool),
            shape=(height, width, 3),
            dtype=np.uint8,
            tile=(TILE, TILE),
            description=desc0,
            **batch,
            **common,
        )
        levels = [level1]
        for w, h in dims[2:]:
            levels.append(_reduce4(levels[-1], h, w))
        # Thumbnail from the smallest level that is still at least its size.
        src = next(a for a in reversed(levels) if max(a.shape[:2]) >= THUMBNAIL_MAX or a is level1)
        thumb = Image.fromarray(np.asarray(src))
        thumb.thumbnail((THUMBNAIL_MAX, THUMBNAIL_MAX), Image.Resampling.BOX)
        thumb_arr = np.asarray(thumb)
        tif.write(
            thumb_arr,
            description=f"{_DESC_HEAD}{width}x{height} -> {thumb.width}x{thumb.height} - ",
            rowsperstrip=16,
            **common,
        )
        for (w, h), arr in zip(dims[1:], levels, strict=True):
            tif.write(
                arr,
                tile=(TILE, TILE),
                description=_desc_level(width, height, w, h),
                **batch,
                **common,
            )
        label = _label_image(seed, (width, height))
        tif.write(
            label,
            description=f"{_DESC_HEAD}label {label.shape[1]}x{label.shape[0]}",
            subfiletype=1,
            photometric="rgb",
            metadata=None,
            compression="lzw",
            rowsperstrip=16,
        )
        macro = _macro_image(label, thumb_arr)
        tif.write(
            macro,
            description=f"{_DESC_HEAD}macro {macro.shape[1]}x{macro.shape[0]}",
            subfiletype=9,
            rowsperstrip=16,
            **common,
        )
    return np.concatenate(truth_nuclei) if truth_nuclei else np.zeros((0, 5))


def write_sample_slide(
    out: Path,
    size: tuple[int, int] = DEFAULT_SIZE,
    seed: int = 0,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SampleInfo:
    """Write a synthetic Aperio SVS at `out` and its ground truth at `truth_path_for(out)`.

    OpenSlide opens it as vendor 'aperio' (levels 4x apart, thumbnail, label, macro, MPP 0.499,
    AppMag 20). Same (size, seed) -> identical files. Both files appear atomically (written
    under temporary names, then renamed). `progress(tiles_done, tiles_total)` is called per
    row of level-0 tiles. Raises SlideError (bad output location) or ValueError (bad size/seed).
    """
    t_start = time.perf_counter()
    out = Path(out)
    plan = SamplePlan(size[0], size[1], seed)
    if not out.parent.is_dir():
        raise SlideError(
            f"cannot write {quoted(out)}: directory {quoted(out.parent)} does not exist"
        )
    if out.is_dir():
        raise SlideError(f"cannot write {quoted(out)}: it is a directory; give a file name")
    truth = truth_path_for(out)
    try:
        scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as e:
        raise SlideError(f"cannot write {quoted(out)}: {e.strerror or e}") from e
    try:
        tmp_slide, tmp_truth = scratch / "slide.svs", scratch / "truth.npz"
        nuclei = _write_svs(
            tmp_slide, plan, scratch, workers or min(4, os.cpu_count() or 1), progress
        )
        np.savez_compressed(
            tmp_truth,
            version=TRUTH_VERSION,
            width=plan.width,
            height=plan.height,
            seed=seed,
            mpp=MPP,
            tissue=plan.truth_tissue,
            tissue_downsample=float(plan.field_ds),
            nuclei=nuclei,
        )
        tmp_truth.replace(truth)
        tmp_slide.replace(out)
    except OSError as e:
        raise SlideError(f"cannot write {quoted(out)}: {e.strerror or e}") from e
    finally:
        for leftover in scratch.iterdir():
            leftover.unlink()
        scratch.rmdir()
    return SampleInfo(
        path=out,
        truth_path=truth,
        width=plan.width,
        height=plan.height,
        seed=seed,
        level_dimensions=tuple(level_dimensions(plan.width, plan.height)),
        nuclei=len(nuclei),
        tissue_fraction=float(plan.truth_tissue.mean()),
        file_bytes=out.stat().st_size,
        seconds=time.perf_counter() - t_start,
    )


def sample_command(out: Path, size: tuple[int, int] = DEFAULT_SIZE, seed: int = 0) -> None:
    """`wsitui sample OUT.svs [--size WxH] [--seed N]`: write a sample and print one line.

    The size defaults to `DEFAULT_SIZE` (8192 x 6144), like write_sample_slide.
    """
    info = write_sample_slide(out, size, seed)
    levels = " ".join(f"{w}x{h}" for w, h in info.level_dimensions)
    print(
        f"wrote {info.path} ({info.file_bytes / 1e6:.1f} MB, levels {levels}, "
        f"{info.nuclei:,} nuclei, {info.tissue_fraction:.0%} tissue, {info.seconds:.1f} s) "
        f"and its ground truth {info.truth_path.name}"
    )
