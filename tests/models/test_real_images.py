"""Real images (checking, never training): what the shipped model does on two H&E images from
package wheels (committed, see tests/models/data/README.md) and on scikit-image's IHC image,
measured against the classical fallback on the same image (wsitui/models/real_images.py).
Floors are just under what was measured; the card and README have the numbers."""

from __future__ import annotations

import numpy as np
import pytest

from wsitui.models.classical import ClassicalModel
from wsitui.models.evaluate import segment_image
from wsitui.models.real_images import REAL_IMAGES, RealMeasures, load_real, real_measures

IMAGES = (*REAL_IMAGES, "ihc")
# Measured 2026-12-04 (evening) with the retrained shipped model (dense and tumour looks) and
# the model layer's nuclear check (`nuclear_check = "auto"`, the default;
# wsitui/models/nuclear_gate.py), re-measured 2026-12-05 against the classical fallback
# `classical-2` (its level floored over the tissue instead of at a fixed 0.05 OD, see
# wsitui/models/classical.py): low-H share 0.043 / 0.081 on the H&E images (0.139 / 0.132
# without the check), dark isolated nuclei 0.973 of 37 / 1.0 of 14. Issue #24's number goal
# (under 0.10, dark recall >= 0.9) holds; by eye the model still misses big vesicular tumour
# nuclei on he_target, so it is not the default. On IHC `classical-2` also finds the pale
# nuclei of the stroma and the pale blue ones between DAB (337 detections; `classical-1` 115),
# so the dark isolated reference grew from 38 to 75 and the shipped model finds 0.68 of them
# (0.64 with the check, which drops pale nuclei under DAB; a job runs IHC tiles without it,
# `domain.TIGHT`). The IHC checks that matter are the largest detection and DAB density.
# Re-measured against `classical-6` (2026-12-05 afternoon: outlines at each nucleus's own
# contrast, tighter, so more of its detections are nucleus-sized and isolated): low-H share
# 0.041 / 0.065 / 0.263; dark isolated nuclei 0.918 of 61 / 0.920 of 25 / 0.696 of 79 (the
# check drops one of he_target's 61: 0.934 without it). The shipped model is unchanged.
# Run 4 of the shipped model (2026-12-05 evening, against `classical-7`, which draws the same
# cells here): low-H share 0.042 / 0.093 / 0.200, dark isolated nuclei 0.918 / 0.960 / 0.722
# (MODEL_CARD.md, "Run 4"); the floors hold for both runs.
# With the classical fill (2026-12-05 night, wsitui/models/classical_fill.py, on for the shipped
# model): low-H share 0.046 / 0.090 / 0.133, dark isolated nuclei 1.0 / 1.0 / 0.987; the model
# alone (fill off) keeps the numbers above.
# Against `classical-8` (2026-12-06: no slivers on IHC's brown membranes, 355 -> 311 classical
# detections; the fill uses it too): low-H share 0.042 / 0.080 / 0.134, dark isolated nuclei
# 1.0 of 60 / 1.0 of 25 / 0.986 of 70; the model alone 0.917 / 0.960 / 0.714 of them; in DAB
# per 1000 µm² 2.45 against the fallback's 2.66.
LOW_H_SHARE_MAX = {"he_target": 0.06, "he_histo": 0.11, "ihc": 0.20}  # 0.046, 0.090, 0.133
DARK_RECALL_MIN = {"he_target": 0.97, "he_histo": 0.97, "ihc": 0.95}  # 1.0, 1.0, 0.987
MODEL_ONLY_DARK_RECALL_MIN = {"he_target": 0.9, "he_histo": 0.9, "ihc": 0.6}  # .918 .960 .722
# On IHC the check may drop a few pale nuclei under DAB (measured 0.734 -> 0.696 of 79).
CHECK_DARK_LOSS_MAX = {"he_target": 0.02, "he_histo": 0.0, "ihc": 0.06}
# What the check removes, at least (measured: 139 of 584, 65 of 398, 76 of 243).
CHECK_DROPS_MIN = {"he_target": 0.15, "he_histo": 0.1, "ihc": 0.1}
IHC_MAX_AREA_UM2 = 200.0  # a 16-µm disc: nothing a nucleus of colon mucosa reaches
# Detections in DAB per 1000 µm² of it: at most this share over the classical fallback's on the
# same image (the run-1 model drew 6.9 where `classical-1` drew 1.12). `classical-7` outlines the
# pale nuclei between the DAB of the glands (2.96; looked at: nuclei), and the classical fill
# adds those same outlines (2.96; the model alone 0.6).
IHC_DAB_OVER_CLASSICAL_MAX = 1.1


class _With:
    """The shipped model with some post-processing settings (`nuclear_check`, `classical_fill`)."""

    def __init__(self, model, **postprocess: str) -> None:
        self.model = model
        self.postprocess = postprocess

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.model.predict(batch, postprocess=self.postprocess)


def _measure(name: str, which: str) -> RealMeasures:
    rgb = load_real(name)
    classical = segment_image(ClassicalModel(), rgb, 256, 64)
    if which == "classical":
        return real_measures(name, rgb, classical, classical)
    pytest.importorskip("torch")
    from wsitui.models.loaded import load
    from wsitui.models.source import resolve

    model = load(resolve("shipped"), "cpu", cpu_threads=1)
    if which == "unchecked":  # the network's own outlines
        model = _With(model, nuclear_check="off", classical_fill="off")
    elif which == "model only":  # the check, no fill
        model = _With(model, classical_fill="off")
    return real_measures(name, rgb, segment_image(model, rgb, 256, 64), classical)


@pytest.fixture(scope="module")
def shipped() -> dict[str, RealMeasures]:
    return {name: _measure(name, "shipped") for name in IMAGES}


@pytest.fixture(scope="module")
def model_only() -> dict[str, RealMeasures]:
    return {name: _measure(name, "model only") for name in IMAGES}


@pytest.mark.parametrize("name", IMAGES)
def test_the_nuclear_check_removes_low_haematoxylin_outlines_and_no_dark_nucleus(
    model_only: dict[str, RealMeasures], name
):
    checked, raw = model_only[name], _measure(name, "unchecked")
    assert checked.detections <= (1 - CHECK_DROPS_MIN[name]) * raw.detections, (checked, raw)
    assert checked.low_h_share < raw.low_h_share
    assert checked.dark_recall >= raw.dark_recall - CHECK_DARK_LOSS_MAX[name]


def test_the_real_images_are_there_and_real():
    for name in IMAGES:
        rgb = load_real(name)
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and min(rgb.shape[:2]) >= 300
        assert rgb.std() > 20  # tissue, not a flat placeholder


@pytest.mark.parametrize("name", IMAGES)
def test_shipped_model_outlines_haematoxylin_not_stroma(shipped: dict[str, RealMeasures], name):
    m = shipped[name]
    assert m.detections > 50, m
    assert m.low_h_share <= LOW_H_SHARE_MAX[name], m.as_dict()


@pytest.mark.parametrize("name", IMAGES)
def test_shipped_model_finds_the_dark_isolated_nuclei(shipped: dict[str, RealMeasures], name):
    m = shipped[name]
    assert m.dark_reference >= 10, m
    assert m.dark_recall >= DARK_RECALL_MIN[name], m.as_dict()


@pytest.mark.parametrize("name", IMAGES)
def test_the_classical_fill_outlines_the_dark_nuclei_the_model_leaves_bare(
    shipped: dict[str, RealMeasures], model_only: dict[str, RealMeasures], name
):
    """Issue #24's eye: big dark nuclei packed in nests had no outline from the model alone;
    the fill adds the classical fallback's there, and adds no pale outlines in their place."""
    alone, filled = model_only[name], shipped[name]
    assert alone.dark_recall >= MODEL_ONLY_DARK_RECALL_MIN[name], alone.as_dict()
    assert filled.dark_recall > alone.dark_recall, (alone.as_dict(), filled.as_dict())
    assert filled.detections > alone.detections
    assert filled.low_h_share <= LOW_H_SHARE_MAX[name], filled.as_dict()


def test_shipped_model_invents_no_big_cells_on_ihc(shipped: dict[str, RealMeasures]):
    m = shipped["ihc"]
    assert m.max_area_um2 <= IHC_MAX_AREA_UM2, m.as_dict()
    assert m.dab_area_share > 0.2  # the DAB compartment is found by colour deconvolution
    classical = _measure("ihc", "classical")
    assert m.dab_per_1000um2 <= IHC_DAB_OVER_CLASSICAL_MAX * classical.dab_per_1000um2, (
        m.as_dict(),
        classical.as_dict(),
    )


def test_classical_reference_is_what_the_measures_assume():
    m = _measure("he_target", "classical")
    assert m.low_h_share == pytest.approx(0.05, abs=0.02)  # its own 5th percentile
    assert m.dark_recall == 1.0
