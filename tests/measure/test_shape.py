"""Shape measurements against skimage.measure.regionprops on known shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon
from skimage.measure import regionprops

from wsitui.jobs.measure_cells.names import SHAPE
from wsitui.jobs.measure_cells.shape import rasterise, shape_rows

UM = 0.5  # µm per px
SIZE = 96


def ellipse(cx: float, cy: float, a: float, b: float, angle_deg: float) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    th = math.radians(angle_deg)
    x, y = a * np.cos(t), b * np.sin(t)
    return np.stack(
        [cx + x * math.cos(th) - y * math.sin(th), cy + x * math.sin(th) + y * math.cos(th)], 1
    )


def square(cx: float, cy: float, side: float) -> np.ndarray:
    h = side / 2
    return np.array([(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)])


def reference_mask(ring: np.ndarray, x0: float, y0: float, scale: float) -> np.ndarray:
    """Pixels whose centre is inside the polygon, by shapely (not by the code under test)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    return shapely.contains_xy(
        Polygon(ring), x0 + (xx + 0.5) * scale, y0 + (yy + 0.5) * scale
    ).astype(np.int32)


SHAPES = {
    "disc": ellipse(48.3, 47.7, 20, 20, 0),
    "ellipse at 30 degrees": ellipse(48.2, 48.1, 30, 12, 30),
    "square": square(48.25, 48.25, 40),
}


@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_shape_equals_regionprops_on_the_rasterised_polygon(name: str, scale: float) -> None:
    ring = SHAPES[name] * scale + 1000  # level-0 px, the region starting at 1000
    label = np.zeros((SIZE, SIZE), np.int32)
    rasterise(label, ring, 1, 1000.0, 1000.0, scale)
    ref = reference_mask(ring, 1000.0, 1000.0, scale)
    assert np.array_equal(label, ref)
    got = dict(zip(SHAPE, shape_rows(label, 1, UM)[0], strict=False))
    p = regionprops(ref)[0]
    assert got["Nucleus: Area µm^2"] == pytest.approx(p.area * UM**2)
    assert got["Nucleus: Perimeter µm"] == pytest.approx(p.perimeter * UM)
    assert got["Nucleus: Solidity"] == pytest.approx(p.solidity)
    assert got["Nucleus: Eccentricity"] == pytest.approx(p.eccentricity)
    assert got["Nucleus: Major axis µm"] == pytest.approx(p.axis_major_length * UM)
    assert got["Nucleus: Minor axis µm"] == pytest.approx(p.axis_minor_length * UM)
    assert got["Nucleus: Orientation degrees"] == pytest.approx(math.degrees(p.orientation))
    assert got["Nucleus: Circularity"] == pytest.approx(
        min(1.0, 4 * math.pi * p.area / p.perimeter**2)
    )


def test_known_shapes_have_their_geometric_values() -> None:
    def measure(ring: np.ndarray) -> dict[str, float]:
        label = np.zeros((SIZE, SIZE), np.int32)
        rasterise(label, ring, 1, 0.0, 0.0, 1.0)
        return dict(zip(SHAPE, shape_rows(label, 1, UM)[0], strict=False))

    disc = measure(SHAPES["disc"])
    assert disc["Nucleus: Area µm^2"] == pytest.approx(math.pi * 20**2 * UM**2, rel=0.02)
    assert disc["Nucleus: Circularity"] > 0.9
    # regionprops' estimate of the smooth outline (README), not a pixel-edge staircase (8 r)
    assert disc["Nucleus: Perimeter µm"] == pytest.approx(2 * math.pi * 20 * UM, rel=0.04)
    assert disc["Nucleus: Eccentricity"] < 0.1
    ell = measure(SHAPES["ellipse at 30 degrees"])
    assert ell["Nucleus: Major axis µm"] == pytest.approx(60 * UM, rel=0.03)
    assert ell["Nucleus: Minor axis µm"] == pytest.approx(24 * UM, rel=0.05)
    assert ell["Nucleus: Eccentricity"] == pytest.approx(math.sqrt(1 - (12 / 30) ** 2), abs=0.02)
    # regionprops: the angle between the row axis (y, down) and the major axis; the major
    # axis is 30° from x towards y, so 60° from the row axis.
    assert abs(ell["Nucleus: Orientation degrees"]) == pytest.approx(60, abs=2)
    sq = measure(SHAPES["square"])
    assert sq["Nucleus: Solidity"] == pytest.approx(1.0)
    assert sq["Nucleus: Area µm^2"] == pytest.approx(40 * 40 * UM**2, rel=0.01)


def test_many_cells_in_one_label_image_each_equal_regionprops() -> None:
    label = np.zeros((200, 200), np.int32)
    rasterise(label, SHAPES["disc"], 1, 0.0, 0.0, 1.0)
    rasterise(label, SHAPES["ellipse at 30 degrees"] + 100, 2, 0.0, 0.0, 1.0)
    rasterise(label, SHAPES["square"] + [100, 0], 3, 0.0, 0.0, 1.0)
    rasterise(label, ellipse(40, 150, 25, 9, -50), 4, 0.0, 0.0, 1.0)  # a neighbour: not asked
    got = shape_rows(label, 3, UM)
    assert got.shape == (3, len(SHAPE) - 1) and not np.isnan(got).any()
    for p in regionprops(label)[:3]:
        m = dict(zip(SHAPE, got[p.label - 1], strict=False))
        assert m["Nucleus: Area µm^2"] == pytest.approx(p.area * UM**2)
        assert m["Nucleus: Eccentricity"] == pytest.approx(p.eccentricity)
        assert m["Nucleus: Major axis µm"] == pytest.approx(p.axis_major_length * UM)
        assert m["Nucleus: Minor axis µm"] == pytest.approx(p.axis_minor_length * UM)
        assert m["Nucleus: Orientation degrees"] == pytest.approx(math.degrees(p.orientation))
        assert m["Nucleus: Solidity"] == pytest.approx(p.solidity)
