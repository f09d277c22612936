"""View maths: pans, zooms about a point, fit, level choice, positions typed by the user."""

from __future__ import annotations

import pytest

from wsitui.viewer.view import View, nearest_level, objective, parse_goto, scale_bar

SLIDE = (40_000, 30_000)


def test_fit_shows_the_whole_slide_centred():
    v = View.fit(SLIDE, (1280, 800))
    x0, y0, x1, y1 = v.region
    assert x0 <= 0 and y0 <= 0 and x1 >= SLIDE[0] and y1 >= SLIDE[1]
    assert v.centre == pytest.approx((20_000, 15_000))
    assert v.visible == (0, 0, *SLIDE)


@pytest.mark.parametrize("anchor", [(0.0, 0.0), (100.5, 700.5), (1279.0, 3.0), None])
@pytest.mark.parametrize("factor", [2.0, 0.5])
def test_zoom_keeps_the_point_under_the_anchor(anchor, factor):
    v = View(SLIDE[0], SLIDE[1], 12_000.0, 9_000.0, 4.0, 1280, 800)
    a = anchor or (640.0, 400.0)
    before = v.to_slide(*a)
    z = v.zoom(factor, anchor)
    assert z.scale == pytest.approx(4.0 / factor)
    assert z.to_slide(*a) == pytest.approx(before)


def test_zoom_stops_at_the_closest_and_the_whole_slide():
    v = View.fit(SLIDE, (1280, 800))
    assert v.zoom(0.5).scale == pytest.approx(v.scale)  # no further out than the fit
    for _ in range(30):
        v = v.zoom(2.0)
    assert v.scale == pytest.approx(1 / 8)


def test_pan_moves_a_quarter_and_keeps_the_centre_on_the_slide():
    v = View(SLIDE[0], SLIDE[1], 1000.0, 1000.0, 2.0, 1280, 800)
    p = v.pan(0.25, 0)
    assert p.x0 - v.x0 == pytest.approx(0.25 * 1280 * 2.0)
    assert p.y0 == v.y0
    far = v
    for _ in range(200):
        far = far.pan(-0.25, -0.25)
    assert far.centre == pytest.approx((0.0, 0.0))


def test_nearest_level_by_ratio():
    ds = (1.0, 4.0, 16.0, 64.0)
    assert nearest_level(ds, 0.125) == 0
    assert nearest_level(ds, 1.9) == 0
    assert nearest_level(ds, 2.1) == 1
    assert nearest_level(ds, 11.0) == 2
    assert nearest_level(ds, 1000.0) == 3


def test_goto_from_the_whole_slide_zooms_to_full_resolution_and_keeps_a_zoom_chosen():
    """`g X,Y` from the whole-slide view only centred it, which moves nothing when the slide
    fits: the view did not change at all."""
    fit = View.fit((40_000, 30_000), (160, 90))
    there = fit.goto(22_400.0, 15_900.0)
    assert there.scale == 1.0 and there.centre == (22_400.0, 15_900.0)
    closer = there.zoom(4)
    assert closer.goto(1_000.0, 2_000.0).scale == closer.scale  # a zoom chosen is kept
    small = View.fit((100, 80), (160, 90))  # a slide smaller than the view: it stays fitted
    assert small.goto(50.0, 40.0).scale == small.scale


def test_goto_parses_px_and_um():
    assert parse_goto("12000,8000", 0.5) == (12000, 8000)
    assert parse_goto(" 12000 8000 px", 0.5) == (12000, 8000)
    assert parse_goto("6000,4000 µm", 0.5) == (12000, 8000)
    assert parse_goto("6000, 4000um", 0.5) == (12000, 8000)
    with pytest.raises(ValueError, match="not X,Y"):
        parse_goto("here", 0.5)
    with pytest.raises(ValueError, match="µm per pixel"):
        parse_goto("1,2 um", None)


def test_scale_bar_and_objective():
    um, px = scale_bar(0.5, 256)  # 128 µm fit: 100 µm
    assert (um, px) == (100, 200)
    um, px = scale_bar(2.0, 100)  # 200 µm fit
    assert (um, px) == (200, 100)
    assert objective(0.5) == pytest.approx(20)
    assert objective(0.25) == pytest.approx(40)
