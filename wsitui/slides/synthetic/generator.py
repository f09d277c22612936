"""The synthetic slide's content: a pure function of (seed, size, look, mpp).

White glass, irregular pink tissue with holes, purple elliptical nuclei only inside tissue.
Any 256-px tile can be rendered on its own:

* Tissue is a smooth signed field defined on a coarse grid (one value per `field_ds` level-0
  pixels, 16 by default, ~8 µm) and bilinearly upsampled per tile; a pixel is tissue where the
  field is > 0. The truth mask is the field's sign on that grid (`tissue_downsample`).
* Nuclei are seeded per 128-px cell with a counter-based hash (no sequential RNG state), and
  a candidate is dropped when it overlaps a lower-keyed candidate of the 3x3 neighbouring cells.
  So a nucleus' fate depends only on its neighbourhood: tiles are seamless and the truth list
  (every drawn centroid, semi-axes and angle) is exact. `rasterize_nuclei` is the drawing rule.
* Pixel noise is seeded per tile.

The look (stains, eosin texture and lumens, soft edges, nuclei, blur, noise, JPEG quality) is
a `SampleStyle` (wsitui.slides.style); the default style is the generator's original look,
pixel for pixel. `wsitui.slides.patches.render_patch` draws training patches with this code.
The truth format is wsitui.slides.synthetic.truth, the SVS writer wsitui.slides.synthetic.writer.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from wsitui.slides.style import DEFAULT_STYLE, SampleStyle
from wsitui.slides.synthetic.mpp import MPP, TOLERANCE, ZOOMS, offered

TILE = 256  # TIFF tile side (level-0 px)
CELL = 128  # nucleus seeding cell side; divides TILE so each cell belongs to one tile
MIN_SIDE = 1024  # so there is always a level 1 to build the thumbnail from
MAX_SIDE = 200_000
# 1.6 Gpx (e.g. 40,000 x 40,000): level 1 alone is 300 MB, the file ~200 MB, ~3 min on 2 cores.
# 200,000 x 200,000 would need ~7.5 GB for level 1 and hours.
MAX_PIXELS = 1_600_000_000

# Nuclei of the default style: ellipse semi-axes in level-0 px (0.5 µm/px -> 2-4.5 µm), 12
# slots per cell (other styles: wsitui.slides.style).
A_MIN, A_MAX = DEFAULT_STYLE.nucleus_major_px
B_MIN = DEFAULT_STYLE.nucleus_minor_min_px
SLOTS = 12
LUMEN_CELL = 256  # lumens are seeded per cell of this side (level-0 px), at most 2 per cell


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
    if w * h > MAX_PIXELS:
        raise ValueError(
            f"size {w}x{h} is {w * h:,} px, over the {MAX_PIXELS:,} px limit for a sample "
            f"(e.g. 40000x40000; level 1 alone would take {w * h * 3 / 16 / 1e9:.1f} GB); "
            "give a smaller size"
        )


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


def magnification_zoom(mpp: float) -> int:
    """1 for a 20x sample (mpp ~0.5), 2 for 40x (~0.25); ValueError (one line) otherwise."""
    for zoom in ZOOMS:
        if math.isclose(mpp, MPP / zoom, rel_tol=TOLERANCE):
            return zoom
    raise ValueError(f"mpp {mpp:g} is not offered for samples: use {offered()}")


def _zoomed(style: SampleStyle, zoom: int) -> SampleStyle:
    """The look with its pixel sizes times `zoom` (its µm sizes stay)."""
    a0, a1 = style.nucleus_major_px
    g0, g1 = style.nucleus_big_px
    return replace(
        style,
        nucleus_major_px=(a0 * zoom, a1 * zoom),
        nucleus_big_px=(g0 * zoom, g1 * zoom),
        nucleus_minor_min_px=style.nucleus_minor_min_px * zoom,
        nucleus_gap_px=style.nucleus_gap_px * zoom,
        grain_px=min(32.0, style.grain_px * zoom),
        blur_px=min(8.0, style.blur_px * zoom),
        membrane_px=min(8.0, style.membrane_px * zoom),
    )


class SamplePlan:
    """Everything that defines a sample slide's pixels, for a (width, height, seed)."""

    def __init__(
        self,
        width: int,
        height: int,
        seed: int,
        style: SampleStyle = DEFAULT_STYLE,
        mpp: float = MPP,
    ) -> None:
        check_size((width, height))
        if not 0 <= seed < 2**63:
            raise ValueError(f"seed {seed} is out of range: use 0 <= seed < 2**63")
        self.width, self.height, self.seed, self.style = width, height, seed, style
        # 20x (0.499 µm/px) or 40x (0.2495): at 40x the look's pixel sizes double and the
        # nucleus cell doubles, so the same tissue is drawn at twice the resolution.
        self.zoom = magnification_zoom(mpp)
        self.mpp = MPP / self.zoom
        self.cell = CELL * self.zoom
        self.look = style if self.zoom == 1 else _zoomed(style, self.zoom)
        self._colors = {
            name: np.array(getattr(style, name), np.float32)
            for name in ("glass", "eosin_light", "eosin_dark", "nucleus_light", "nucleus_dark")
        }
        ds = 16
        while math.ceil(width / ds) * math.ceil(height / ds) > 8_000_000:
            ds *= 2
        self.field_ds = ds
        # (2, fh, fw) float32: tissue signed field, shade; with soft edges a third channel,
        # the signed distance to the tissue edge in level-0 px.
        self.fields = self._make_fields()
        self.truth_tissue = self.fields[0] > 0
        self.cells_x = math.ceil(width / self.cell)
        self.cells_y = math.ceil(height / self.cell)

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
        clean = _flip_small(tissue > 0, max(0.002 * fw * fh, 20_000 / (ds * self.mpp) ** 2))
        np.abs(tissue, out=tissue)
        np.negative(tissue, out=tissue, where=~clean)
        tissue[tissue == 0] = -1e-6
        if self.look.soft_edge_um > 0:
            # Signed distance (level-0 px, > 0 inside) to the truth's edge: the stain fades
            # symmetrically across the edge the truth draws, filled holes included.
            inside = tissue > 0
            d_in = ndimage.distance_transform_edt(inside)
            d_out = ndimage.distance_transform_edt(~inside)
            dist = np.where(inside, d_in - 0.5, 0.5 - d_out) * ds
            fields = np.concatenate([fields, dist.astype(np.float32)[None]])
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
        st = self.look
        slots = st.nucleus_slots
        cx = np.repeat(gx.ravel(), slots)
        cy = np.repeat(gy.ravel(), slots)
        k = np.tile(np.arange(slots), gx.size)
        a_min, a_max = st.nucleus_major_px
        b_min, gap = st.nucleus_minor_min_px, st.nucleus_gap_px
        draws = [_hash_u01(self.seed, cx, cy, k * 8 + j) for j in range(7)]
        density = st.nucleus_density
        if st.nucleus_clustering > 0:
            density = density * self._nests(cx, cy)
        act = draws[0] < density
        cx, cy, k = cx[act], cy[act], k[act]
        d = [x[act] for x in draws]
        x = (cx + d[1]) * self.cell
        y = (cy + d[2]) * self.cell
        a = a_min + (a_max - a_min) * d[3]
        b = np.minimum(b_min + (a - b_min) * d[4], a)
        theta = np.pi * d[5]
        key = ((cy + 1) * (self.cells_x + 3) + (cx + 1)) * slots + k  # row-major cell order
        if st.nucleus_big_share > 0:
            # Big (tumour) nuclei: roundish, and they win overlaps against small ones.
            big = _hash_u01(self.seed, cx, cy, k * 8 + 7) < st.nucleus_big_share
            g0, g1 = st.nucleus_big_px
            a = np.where(big, g0 + (g1 - g0) * d[3], a)
            b = np.where(big, a * (0.6 + 0.4 * d[4]), b)
            key = np.where(big, key - 2**40, key)
            a_max = max(a_max, g1)
        rejected = np.zeros(len(x), bool)
        pairs = cKDTree(np.column_stack([x, y])).query_pairs(2 * a_max + gap, output_type="ndarray")
        if len(pairs):
            i, j = pairs[:, 0], pairs[:, 1]
            close = np.hypot(x[i] - x[j], y[i] - y[j]) < a[i] + a[j] + gap
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
        if st.lumens_per_mm2 > 0 and ok.any():
            # Not inside (or cut by) a lumen: lumens are empty spaces in the tissue.
            lx, ly, lr = self.lumens_in_box(
                x0=cx0 * self.cell - a_max,
                y0=cy0 * self.cell - a_max,
                x1=cx1 * self.cell + a_max,
                y1=cy1 * self.cell + a_max,
            )
            if len(lx):
                idx = np.nonzero(ok)[0]
                dist = np.hypot(x[idx, None] - lx[None], y[idx, None] - ly[None])
                ok[idx[(dist < lr[None] + a[idx, None]).any(axis=1)]] = False
        params = np.column_stack([x, y, a, b, theta])[ok]
        return params, d[6][ok], cy[ok]

    def _nests(self, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
        """Density factor (0-2) per nucleus cell: smooth lattice noise over ~3 cells, so nuclei
        crowd in nests with sparse stroma between (`nucleus_clustering` of the way)."""
        g = 3.0
        fx, fy = (cx + 0.5) / g, (cy + 0.5) / g
        ix, iy = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
        tx, ty = fx - ix, fy - iy

        def at(ox: int, oy: int) -> np.ndarray:
            return _hash_u01(self.seed, ix + ox, iy + oy, np.full(ix.shape, 5151))

        f = (at(0, 0) * (1 - tx) + at(1, 0) * tx) * (1 - ty)
        f = f + (at(0, 1) * (1 - tx) + at(1, 1) * tx) * ty
        nest = np.clip((f - 0.3) / 0.35, 0.0, 1.0) * 2.0
        c = self.look.nucleus_clustering
        return (1 - c) + c * nest

    # -- eosin texture -----------------------------------------------------------------------

    def lumens_in_box(
        self, x0: float, y0: float, x1: float, y1: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Lumens (cx, cy, radius in level-0 px) that reach the box [x0, x1) x [y0, y1).

        Seeded per LUMEN_CELL cell like nuclei (no RNG state): any region sees the same ones.
        A lumen lies wholly inside the tissue.
        """
        st = self.look
        none = (np.zeros(0), np.zeros(0), np.zeros(0))
        if st.lumens_per_mm2 <= 0:
            return none
        r_max = st.lumen_radius_um[1] / self.mpp
        c0x, c1x = math.floor((x0 - r_max) / LUMEN_CELL), math.floor((x1 + r_max) / LUMEN_CELL)
        c0y, c1y = math.floor((y0 - r_max) / LUMEN_CELL), math.floor((y1 + r_max) / LUMEN_CELL)
        gx, gy = np.meshgrid(np.arange(c0x, c1x + 1), np.arange(c0y, c1y + 1))
        cx, cy = np.repeat(gx.ravel(), 2), np.repeat(gy.ravel(), 2)
        k = np.tile(np.arange(2), gx.size) + 1000  # draw indices apart from the nuclei's
        u = [_hash_u01(self.seed, cx, cy, k * 8 + j) for j in range(4)]
        p = min(1.0, st.lumens_per_mm2 * (LUMEN_CELL * self.mpp / 1000) ** 2 / 2)
        on = u[0] < p
        x = (cx + u[1])[on] * LUMEN_CELL
        y = (cy + u[2])[on] * LUMEN_CELL
        r0, r1 = st.lumen_radius_um
        r = (r0 + (r1 - r0) * u[3][on] ** 2) / self.mpp  # many small, few big
        ok = (x + r >= x0) & (x - r < x1) & (y + r >= y0) & (y - r < y1)
        for ang in [None, *np.linspace(0, 2 * np.pi, 8, endpoint=False)]:
            if ang is None:
                px, py = x, y
            else:
                px, py = x + (r + 4) * np.cos(ang), y + (r + 4) * np.sin(ang)
            ok &= self.tissue_at_points(px, py) > 0
        return x[ok], y[ok], r[ok]

    def distractors_in_box(
        self, kind: str, x0: float, y0: float, x1: float, y1: float
    ) -> np.ndarray:
        """Fibres, blobs or specks (things that are not nuclei) reaching the box, seeded per
        LUMEN_CELL cell like lumens; rows (cx, cy, half-length or radius, half-width, angle, wave
        amplitude, wave period, phase), level-0 px. Centres lie in tissue."""
        st = self.look
        if kind == "fibres":
            per_mm2, per_cell, base_k = st.fibres_per_mm2, 4, 2000
            l0, l1 = (v / self.mpp / 2 for v in st.fibre_length_um)
            w0, w1 = (v / self.mpp / 2 for v in st.fibre_width_um)
        elif kind == "blobs":
            per_mm2, per_cell, base_k = st.blobs_per_mm2, 6, 3000
            l0, l1 = (v / self.mpp for v in st.blob_radius_um)
            w0, w1 = l0, l1
        else:  # specks: small pale discs, many per cell
            per_mm2, per_cell, base_k = st.specks_per_mm2, 40, 5000
            l0, l1 = (v / self.mpp for v in st.speck_radius_um)
            w0, w1 = l0, l1
        if per_mm2 <= 0:
            return np.zeros((0, 8))
        r_max = l1 + w1 + 2
        c0x, c1x = math.floor((x0 - r_max) / LUMEN_CELL), math.floor((x1 + r_max) / LUMEN_CELL)
        c0y, c1y = math.floor((y0 - r_max) / LUMEN_CELL), math.floor((y1 + r_max) / LUMEN_CELL)
        gx, gy = np.meshgrid(np.arange(c0x, c1x + 1), np.arange(c0y, c1y + 1))
        cx, cy = np.repeat(gx.ravel(), per_cell), np.repeat(gy.ravel(), per_cell)
        k = np.tile(np.arange(per_cell), gx.size) + base_k
        d = [_hash_u01(self.seed, cx, cy, k * 8 + j) for j in range(8)]
        p = min(1.0, per_mm2 * (LUMEN_CELL * self.mpp / 1000) ** 2 / per_cell)
        on = d[0] < p
        d = [v[on] for v in d]
        x, y = (cx[on] + d[1]) * LUMEN_CELL, (cy[on] + d[2]) * LUMEN_CELL
        length = l0 + (l1 - l0) * d[3]
        width = w0 + (w1 - w0) * d[4] if kind == "fibres" else length * (0.6 + 0.4 * d[4])
        angle = np.pi * d[5]
        amp = width * 2.0 * d[6] if kind == "fibres" else 0.25 * d[6]
        period = (20 + 60 * d[7]) / self.mpp
        phase = 2 * np.pi * d[7]
        reach = length + width + 2
        ok = (x + reach >= x0) & (x - reach < x1) & (y + reach >= y0) & (y - reach < y1)
        ok &= self.tissue_at_points(x, y) > 0
        return np.column_stack([x, y, length, width, angle, amp, period, phase])[ok]

    def _distractor_mask(self, kind: str, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        """Coverage (h, w) float32 in [0, 1] of the fibres or blobs over the region."""
        objs = self.distractors_in_box(kind, x0, y0, x0 + w, y0 + h)
        out = np.zeros((h, w), np.float32)
        for cx, cy, length, width, ang, amp, period, phase in objs:
            r = length + width + 2
            xa, xb = max(x0, math.floor(cx - r)), min(x0 + w, math.ceil(cx + r) + 1)
            ya, yb = max(y0, math.floor(cy - r)), min(y0 + h, math.ceil(cy + r) + 1)
            if xa >= xb or ya >= yb:
                continue
            dx = (np.arange(xa, xb) + 0.5 - cx).astype(np.float32)
            dy = (np.arange(ya, yb) + 0.5 - cy).astype(np.float32)[:, None]
            c, s = math.cos(ang), math.sin(ang)
            u, v = dx * c + dy * s, dy * c - dx * s
            if kind == "fibres":
                v = v - amp * np.sin(2 * np.pi * u / period + phase)
                taper = np.clip(length - np.abs(u) + 0.5, 0, 1)
                m = np.clip(width - np.abs(v) + 0.5, 0, 1) * taper
            else:  # an irregular disc: radius wobbles with the angle
                phi = np.arctan2(v, u)
                rad = length * (1 + amp * np.sin(3 * phi + phase))
                ell = np.hypot(u, v * (length / max(width, 0.5)))
                m = np.clip(rad - ell + 0.5, 0, 1)
            sub = out[ya - y0 : yb - y0, xa - x0 : xb - x0]
            np.maximum(sub, m.astype(np.float32), out=sub)
        return out

    def _grain(
        self, x0: int, y0: int, w: int, h: int, g: float | None = None, key: int = 4242
    ) -> np.ndarray:
        """Grain in [-1, 1]: hashed values on a lattice, bilinear between (seamless)."""
        g = self.look.grain_px if g is None else g
        gx0, gy0 = math.floor(x0 / g), math.floor(y0 / g)
        gx1, gy1 = math.floor((x0 + w) / g) + 1, math.floor((y0 + h) / g) + 1
        lx, ly = np.meshgrid(np.arange(gx0, gx1 + 1), np.arange(gy0, gy1 + 1))
        lattice = _hash_u01(self.seed, lx, ly, np.full(lx.shape, key)).astype(np.float32) * 2 - 1
        fx = (np.arange(x0, x0 + w) + 0.5) / g - gx0
        fy = (np.arange(y0, y0 + h) + 0.5) / g - gy0
        ix, iy = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
        tx, ty = (fx - ix).astype(np.float32), (fy - iy).astype(np.float32)[:, None]
        top = lattice[iy][:, ix] * (1 - tx) + lattice[iy][:, ix + 1] * tx
        bot = lattice[iy + 1][:, ix] * (1 - tx) + lattice[iy + 1][:, ix + 1] * tx
        return top * (1 - ty) + bot * ty

    # -- pixels ----------------------------------------------------------------------------

    def render_tile(
        self, tx: int, ty: int, nuclei: tuple[np.ndarray, np.ndarray] | None = None
    ) -> np.ndarray:
        """Level-0 TIFF tile (tx, ty): (256, 256, 3) uint8, padding past the edge included.

        nuclei: (params, shade) containing at least every nucleus that reaches the tile or
        its blur margin (a speed-up for the writer); by default computed from the neighbours.
        """
        x0, y0 = tx * TILE, ty * TILE
        m = self.blur_margin
        if nuclei is None:
            reach = 1 + math.ceil(self.nucleus_reach / self.cell)
            c = TILE // self.cell
            p, shade, _ = self.nuclei_in_cells(
                c * tx - reach, c * tx + c + reach, c * ty - reach, c * ty + c + reach
            )
        else:
            p, shade = nuclei
        # Triangular noise (sum of two uniform bytes, unit std): ~5x cheaper than Gaussian.
        raw = np.frombuffer(
            np.random.default_rng([self.seed, 2, tx, ty]).bytes(2 * TILE * TILE), np.uint8
        ).reshape(2, TILE, TILE)
        noise = (raw[0].astype(np.float32) + raw[1] - 255.0) * (1 / 104.4)
        img, amp = self._base(x0 - m, y0 - m, TILE + 2 * m, TILE + 2 * m, p, shade)
        if m:
            b = self.look.blur_px
            img = ndimage.gaussian_filter(img, (b, b, 0), truncate=3.0)[m:-m, m:-m]
            amp = amp[m:-m, m:-m]
        img += (amp * noise)[..., None]
        img += 0.5
        return np.clip(img, 0, 255, out=img).astype(np.uint8)

    @property
    def blur_margin(self) -> int:
        b = self.look.blur_px
        return math.ceil(3 * b) if b > 0 else 0

    def _base(
        self, x0: int, y0: int, w: int, h: int, p: np.ndarray, shade: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(colour before noise (h, w, 3) float32, noise amplitude (h, w) float32)."""
        st, col = self.look, self._colors
        f = self.fields_at_region(x0, y0, w, h)
        if st.soft_edge_um > 0:
            alpha = np.clip(0.5 + f[2] / np.float32(st.soft_edge_um / self.mpp), 0, 1)
            a3 = alpha[..., None]
            stain = col["eosin_light"] + (col["eosin_dark"] - col["eosin_light"]) * f[1][..., None]
            img = col["glass"] + (stain - col["glass"]) * a3
            amp = np.float32(st.noise_glass) + np.float32(st.noise_tissue - st.noise_glass) * alpha
        else:
            tissue = f[0] > 0
            amp = np.where(tissue, np.float32(st.noise_tissue), np.float32(st.noise_glass))
            shade_px = np.where(tissue, f[1], np.float32(0.0))[..., None]
            img = np.where(tissue[..., None], col["eosin_light"], col["glass"])
            img = img + (col["eosin_dark"] - col["eosin_light"]) * shade_px
            alpha = tissue.astype(np.float32)
        if st.grain > 0:
            img += (self._grain(x0, y0, w, h) * np.float32(st.grain) * alpha)[..., None]
        if st.lumens_per_mm2 > 0:
            lx, ly, lr = self.lumens_in_box(x0, y0, x0 + w, y0 + h)
            if len(lx):
                xs = np.arange(x0, x0 + w, dtype=np.float32) + 0.5
                ys = (np.arange(y0, y0 + h, dtype=np.float32) + 0.5)[:, None]
                inside = np.zeros((h, w), bool)
                for cx, cy, r in zip(lx, ly, lr, strict=True):
                    inside |= (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
                img[inside] = np.array(st.lumen_color, np.float32)
                amp = np.where(inside, np.float32(st.noise_glass), amp)
        for kind, color, alpha, per_mm2 in (
            ("fibres", st.fibre_color, st.fibre_alpha, st.fibres_per_mm2),
            ("blobs", st.blob_color, st.blob_alpha, st.blobs_per_mm2),
            ("specks", st.speck_color, st.speck_alpha, st.specks_per_mm2),
        ):
            if per_mm2 > 0:
                m = self._distractor_mask(kind, x0, y0, w, h) * np.float32(alpha)
                self._multiply(img, m, color)
        if st.cytoplasm_scale > 0 and len(p):
            grown = p.copy()
            grown[:, 2:4] *= st.cytoplasm_scale
            cyto = (rasterize_nuclei(grown, x0, y0, w, h) > 0).astype(np.float32)
            if st.cytoplasm_texture > 0:  # blotchy: strength varies over a few µm
                blotch = self._grain(x0, y0, w, h, max(2.0, st.grain_px * 1.5), 4646)
                cyto *= 1 - np.float32(st.cytoplasm_texture) * 0.5 * (1 + blotch)
            self._multiply(img, cyto * np.float32(st.cytoplasm_alpha), st.cytoplasm_color)
            if st.cytoplasm_grain > 0:  # dark granules, ~1 µm, towards the darkest nucleus
                speck = self._grain(x0, y0, w, h, 1.6, 4747)
                amt = np.clip(speck * 2 - 0.4, 0, 1) * (cyto > 0) * np.float32(st.cytoplasm_grain)
                img += (col["nucleus_dark"] - img) * amt[..., None]
        labels = rasterize_nuclei(p, x0, y0, w, h)
        nz = labels > 0
        under = img.copy() if st.vesicular_tone > 0 and nz.any() else None
        if nz.any():
            ns = shade[labels[nz] - 1].astype(np.float32)[:, None]
            img[nz] = col["nucleus_light"] + (col["nucleus_dark"] - col["nucleus_light"]) * ns
            if st.nucleus_texture > 0:
                tex = self._grain(x0, y0, w, h, 1.3, 4343)[nz] * np.float32(st.nucleus_texture)
                img[nz] += tex[:, None]
            if st.nucleus_vesicular > 0 and st.nucleus_big_share > 0:
                self._vesicular(img, labels, p, x0, y0, under)
            amp = np.where(nz, np.float32(st.noise_nucleus), amp)
        return img, amp.astype(np.float32, copy=False)

    def _vesicular(
        self,
        img: np.ndarray,
        labels: np.ndarray,
        p: np.ndarray,
        x0: int,
        y0: int,
        under: np.ndarray | None = None,
    ) -> None:
        """Big nuclei drawn vesicular: interior paler towards the glass (or, with
        `vesicular_tone`, towards `under`, the colour beneath the nucleus), chromatin at the
        membrane (a soft band, or a crisp `membrane_px` line) and in coarse clumps, one
        nucleolus off centre or up to `nucleoli` (their places from the nucleus' own
        parameters, so any tile draws them alike)."""
        st = self.look
        v = np.float32(st.nucleus_vesicular)
        glass = self._colors["glass"]
        nucleolus = np.asarray(st.nucleolus_color, np.float32)
        h, w = labels.shape
        clumps = None
        dark = None
        if st.chromatin_clumps > 0:
            # Grain above a threshold: dark chromatin clumps over about `chromatin_clumps` of
            # the interior (the bilinear grain is not uniform, hence the 0.6).
            grain = self._grain(x0, y0, w, h, 2.0, 4848)
            dark = np.clip((grain - (0.6 - 1.2 * st.chromatin_clumps)) * 3, 0, 1)
        for i in np.flatnonzero(p[:, 2] >= st.nucleus_big_px[0] - 1e-6):
            cx, cy, a, b, th = p[i]
            xa, xb = max(x0, math.floor(cx - a)), min(x0 + w, math.ceil(cx + a) + 1)
            ya, yb = max(y0, math.floor(cy - a)), min(y0 + h, math.ceil(cy + a) + 1)
            if xa >= xb or ya >= yb:
                continue
            sub = (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))
            mine = labels[sub] == i + 1
            if not mine.any():
                continue
            if clumps is None:
                clumps = self._grain(x0, y0, w, h, 2.2, 4545)
            dx = (np.arange(xa, xb) + 0.5 - cx).astype(np.float32)
            dy = (np.arange(ya, yb) + 0.5 - cy).astype(np.float32)[:, None]
            c, s = math.cos(th), math.sin(th)
            u, q = (dx * c + dy * s) / a, (dy * c - dx * s) / b
            r = np.sqrt(u * u + q * q)
            if st.membrane_px > 0:
                # px from the membrane along the ray from the centre: a crisp rim line.
                reach = np.where(r > 1e-6, np.hypot(dx, dy) / np.maximum(r, 1e-6), b)
                rim = np.clip((1 - r) * reach - np.float32(st.membrane_px) + 0.5, 0, 1)
            else:
                # 0 at the membrane (r >= 0.8), 1 inside.
                rim = np.clip((0.8 - r) / 0.25, 0, 1)
            if st.membrane_px > 0:
                # As real ones: the interior pales most of the way, mottled; the clumps
                # (`chromatin_clumps`) are drawn dark below.
                inner = rim * np.clip(0.9 - 0.3 * clumps[sub], 0, 1) * np.float32(0.85)
            else:
                # Clumps keep some chromatin dark.
                inner = rim * np.clip(0.75 - 0.6 * clumps[sub], 0, 1) * np.float32(0.6)
            if dark is not None:
                inner = inner * (1 - dark[sub])
            pale = (v * inner)[..., None]
            px = img[sub]
            target = glass
            if under is not None:
                tone = np.float32(st.vesicular_tone)
                target = glass + (under[sub] - glass) * tone
            px[:] = np.where(mine[..., None], px + (target - px) * pale, px)
            ndark = self._colors["nucleus_dark"]
            if st.membrane_px > 0:  # the rim: condensed chromatin, towards the darkest nuclei
                px += (ndark - px) * ((1 - rim) * mine * np.float32(0.4))[..., None]
            if dark is not None:  # clumps: darker than the rim, towards the darkest nuclei
                px += (ndark - px) * (dark[sub] * mine * rim * np.float32(0.7))[..., None]
            # Nucleoli, ~1.2-2 µm, somewhere within half the radius.
            count = 1
            if st.nucleoli > 1:
                count += int(((cx * 5.113 + cy * 9.719) % 1.0) * st.nucleoli)
                count = min(count, st.nucleoli)
            for n in range(count):
                frac = (cx * 12.9898 * (n + 1) + cy * 78.233 + 0.371 * n) % 1.0
                ang = 2 * math.pi * frac
                rad = 0.45 * ((cx * 3.7 + cy * 1.3 * (n + 1) + 0.53 * n) % 1.0)
                nx, ny = cx + rad * a * math.cos(ang), cy + rad * b * math.sin(ang)
                rn = max(1.0, 0.12 * a)
                dot = (np.arange(xa, xb) + 0.5 - nx) ** 2 + (
                    (np.arange(ya, yb) + 0.5 - ny)[:, None]
                ) ** 2
                dot = (dot <= rn * rn) & mine
                px[dot] = px[dot] + (nucleolus - px[dot]) * v

    @staticmethod
    def _multiply(img: np.ndarray, cover: np.ndarray, color: tuple[float, float, float]) -> None:
        """Light through a layer of `color` (transmission color/255) where `cover` > 0."""
        if not cover.any():
            return
        absorb = 1 - np.asarray(color, np.float32) / np.float32(255.0)
        img *= 1 - cover[..., None] * absorb

    @property
    def nucleus_reach(self) -> float:
        """How far (level-0 px) a nucleus' pixels reach from its centre: its major semi-axis
        (times the cytoplasm scale when cytoplasm is drawn) plus the blur margin."""
        st = self.look
        a_max = st.nucleus_major_px[1]
        if st.nucleus_big_share > 0:
            a_max = max(a_max, st.nucleus_big_px[1])
        return a_max * max(1.0, st.cytoplasm_scale) + self.blur_margin + 2

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
