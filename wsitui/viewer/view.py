"""Where the viewer looks: a rectangle of the slide drawn at some number of screen pixels.

A `View` is immutable: level-0 top-left (x0, y0), `scale` level-0 px per view px, and the
view's size in view px. View pixel (i, j) shows level-0 area [x0 + i*scale, x0 + (i+1)*scale)
x [y0 + j*scale, ...). Moves return a new View. The view may hang over the slide's edge (so
a zoom keeps the point under the cursor fixed), but its centre never leaves the slide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

MAX_ZOOM_IN = 8.0  # view px per level-0 px at the closest zoom
PAN_FRACTION = 0.25  # arrows pan a quarter of the view
ZOOM_STEP = 2.0


@dataclass(frozen=True, slots=True)
class View:
    slide_w: int  # level-0 px
    slide_h: int
    x0: float  # level-0 coordinate of the view's top-left corner
    y0: float
    scale: float  # level-0 px per view px
    width: int  # view px
    height: int

    # ---- construction ---------------------------------------------------------------------
    @classmethod
    def fit(cls, slide: tuple[int, int], size: tuple[int, int]) -> View:
        """The whole slide, centred, as large as fits."""
        w0, h0 = slide
        vw, vh = max(1, size[0]), max(1, size[1])
        scale = max(w0 / vw, h0 / vh)
        return cls(w0, h0, (w0 - vw * scale) / 2, (h0 - vh * scale) / 2, scale, vw, vh)

    @classmethod
    def of_region(
        cls, slide: tuple[int, int], region: tuple[float, float, float, float], width: int
    ) -> View:
        """Exactly `region` (x, y, w, h in level-0 px) drawn `width` view px wide."""
        x, y, w, h = region
        scale = w / width
        return cls(slide[0], slide[1], x, y, scale, width, max(1, round(h / scale)))

    # ---- geometry -------------------------------------------------------------------------
    @property
    def fit_scale(self) -> float:
        return max(self.slide_w / self.width, self.slide_h / self.height)

    @property
    def region(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in level-0 px, possibly past the slide's edges."""
        return (
            self.x0,
            self.y0,
            self.x0 + self.width * self.scale,
            self.y0 + self.height * self.scale,
        )

    @property
    def visible(self) -> tuple[int, int, int, int] | None:
        """The part of the slide under the view, (x0, y0, x1, y1) whole level-0 px, or None."""
        x0, y0, x1, y1 = self.region
        ax, ay = max(0, math.floor(x0)), max(0, math.floor(y0))
        bx, by = min(self.slide_w, math.ceil(x1)), min(self.slide_h, math.ceil(y1))
        return (ax, ay, bx, by) if ax < bx and ay < by else None

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.region
        return (x0 + x1) / 2, (y0 + y1) / 2

    def to_slide(self, px: float, py: float) -> tuple[float, float]:
        """Level-0 coordinate of view position (px, py) (pixel centres are at +0.5)."""
        return self.x0 + px * self.scale, self.y0 + py * self.scale

    def to_view(self, x: float, y: float) -> tuple[float, float]:
        return (x - self.x0) / self.scale, (y - self.y0) / self.scale

    # ---- moves ----------------------------------------------------------------------------
    def _clamped(self, x0: float, y0: float, scale: float) -> View:
        cx = min(max(x0 + self.width * scale / 2, 0.0), float(self.slide_w))
        cy = min(max(y0 + self.height * scale / 2, 0.0), float(self.slide_h))
        return replace(
            self, x0=cx - self.width * scale / 2, y0=cy - self.height * scale / 2, scale=scale
        )

    def pan(self, fx: float, fy: float) -> View:
        """Move by fractions of the view (fx=0.25: a quarter of its width to the right)."""
        return self.pan_px(fx * self.width, fy * self.height)

    def pan_px(self, dx: float, dy: float) -> View:
        """Move by view px (a drag of the picture by (-dx, -dy))."""
        return self._clamped(self.x0 + dx * self.scale, self.y0 + dy * self.scale, self.scale)

    def zoom(self, factor: float, anchor: tuple[float, float] | None = None) -> View:
        """Zoom in by `factor` (0.5: out) keeping the slide point under `anchor` (view px,
        default the centre) where it is."""
        ax, ay = anchor if anchor is not None else (self.width / 2, self.height / 2)
        lo, hi = 1 / MAX_ZOOM_IN, max(self.fit_scale, 1 / MAX_ZOOM_IN)
        scale = min(max(self.scale / factor, lo), hi)
        sx, sy = self.to_slide(ax, ay)
        return self._clamped(sx - ax * scale, sy - ay * scale, scale)

    def centred_on(self, x: float, y: float) -> View:
        return self._clamped(x - self.width * self.scale / 2, y - self.height * self.scale / 2,
                             self.scale)  # fmt: skip

    def goto(self, x: float, y: float) -> View:
        """Centred on (x, y). From the whole-slide view (where centring alone moves nothing: the
        slide fits) it also zooms in to full resolution, one level-0 px per view px."""
        scale = self.scale
        if scale >= self.fit_scale * (1 - 1e-9):
            scale = max(min(self.fit_scale, 1.0), 1 / MAX_ZOOM_IN)
        return self._clamped(x - self.width * scale / 2, y - self.height * scale / 2, scale)

    def fitted(self) -> View:
        return View.fit((self.slide_w, self.slide_h), (self.width, self.height))

    def resized(self, width: int, height: int) -> View:
        """The same centre and scale on a view of another size."""
        cx, cy = self.centre
        width, height = max(1, width), max(1, height)
        return replace(
            self,
            width=width,
            height=height,
            x0=cx - width * self.scale / 2,
            y0=cy - height * self.scale / 2,
        )


def nearest_level(downsamples: tuple[float, ...], scale: float) -> int:
    """The pyramid level whose pixel size is nearest the view's (in ratio; finer on a tie)."""
    best, best_d = 0, math.inf
    for i, ds in enumerate(downsamples):
        d = abs(math.log(ds / scale))
        if d < best_d - 1e-9:
            best, best_d = i, d
    return best


def objective(um_per_px: float) -> float:
    """The objective power with this pixel size (20x ~ 0.5 µm/px, 40x ~ 0.25)."""
    return 10.0 / um_per_px


def scale_bar(um_per_px: float, max_px: float) -> tuple[float, float]:
    """A round length in µm (1, 2 or 5 x 10^k) whose bar is at most max_px long: (µm, px)."""
    limit = um_per_px * max_px
    k = math.floor(math.log10(limit))
    for m in (5, 2, 1):
        um = m * 10.0**k
        if um <= limit:
            return um, um / um_per_px
    um = 10.0 ** (k - 1) * 5
    return um, um / um_per_px


def format_um(um: float) -> str:
    if um >= 1000:
        return f"{um / 1000:g} mm"
    return f"{um:g} µm"


def parse_goto(text: str, mpp: float | None) -> tuple[float, float]:
    """'X,Y' or 'X,Y px' (level-0 px) or 'X,Y um' / 'µm' -> level-0 px; ValueError (one line)."""
    t = text.strip().lower().replace("µ", "u")
    unit = "px"
    for u in ("um", "px"):
        if t.endswith(u):
            unit, t = u, t[: -len(u)].strip()
    parts = [p for p in t.replace(",", " ").split() if p]
    try:
        x, y = (float(p) for p in parts)
    except ValueError:
        raise ValueError(
            f"{text!r} is not X,Y: give e.g. 12000,8000 (px) or 6000,4000 um"
        ) from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"{text!r} is not a finite position")
    if unit == "um":
        if not mpp:
            raise ValueError("this slide does not give its µm per pixel: give the position in px")
        return x / mpp, y / mpp
    return x, y
