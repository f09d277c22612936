"""The nuclear-evidence check on InstanSeg detections (wsitui/models/nuclear_gate.py): what it
drops (a ring of cytoplasm, a blob on collagen), what it keeps (pale nuclei on pale tissue,
nuclei packed together), that a nucleus seen by two overlapping tiles gets the same verdict,
and that it counts what it dropped."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import hed2rgb
from skimage.draw import disk

from wsitui.models import nuclear_gate
from wsitui.models.evaluate import heldout_slide

SIZE = 160


def _paint(h: np.ndarray, e: np.ndarray) -> np.ndarray:
    """uint8 RGB of haematoxylin / eosin OD maps (skimage's stain vectors)."""
    rgb = hed2rgb(np.stack([h, e, np.zeros_like(h)], axis=-1))
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def _scene(h_nucleus: float, h_tissue: float, e_tissue: float):
    """A tissue of (h_tissue, e_tissue) with six nuclei of h_nucleus in a row (ids 1-6),
    one more nucleus at the centre of a ring-shaped detection of cytoplasm (id 7, the nucleus
    itself not detected), and a blob of collagen with nothing in it (id 8)."""
    h = np.full((SIZE, SIZE), h_tissue)
    e = np.full((SIZE, SIZE), e_tissue)
    labels = np.zeros((SIZE, SIZE), np.int32)
    for i in range(6):
        rr, cc = disk((30, 15 + 25 * i), 6, shape=h.shape)
        h[rr, cc] = h_nucleus
        labels[rr, cc] = i + 1
    # Cytoplasm ring (id 7) around an undetected nucleus at (100, 50).
    rr, cc = disk((100, 50), 14, shape=h.shape)
    labels[rr, cc] = 7
    e[rr, cc] = e_tissue * 1.3
    rr, cc = disk((100, 50), 6, shape=h.shape)
    labels[rr, cc] = 0
    h[rr, cc] = h_nucleus
    # A collagen blob (id 8): eosin-dense, no more haematoxylin than around it.
    rr, cc = disk((110, 120), 8, shape=h.shape)
    labels[rr, cc] = 8
    e[rr, cc] = e_tissue * 2.0
    return _paint(h, e), labels


@pytest.mark.parametrize(
    ("look", "h_nucleus", "h_tissue", "e_tissue"),
    [("H&E", 0.12, 0.03, 0.12), ("pale H&E", 0.035, 0.008, 0.04)],
)
def test_drops_a_ring_of_cytoplasm_and_collagen_and_keeps_nuclei_pale_ones_too(
    look, h_nucleus, h_tissue, e_tissue
):
    rgb, labels = _scene(h_nucleus, h_tissue, e_tissue)
    out, n, dropped = nuclear_gate.check(rgb, labels)
    kept = set(np.unique(out[out > 0]).tolist())
    assert kept == {1, 2, 3, 4, 5, 6}, (look, kept)
    assert (n, dropped) == (8, 2)
    # Kept detections are untouched, pixel for pixel.
    assert np.array_equal(out[np.isin(labels, list(kept))], labels[np.isin(labels, list(kept))])


def test_nuclei_packed_together_are_not_judged_against_each_other():
    h = np.full((SIZE, SIZE), 0.03)
    labels = np.zeros((SIZE, SIZE), np.int32)
    k = 0
    for r in range(40, 120, 12):  # a 7 x 7 block of touching nuclei, the same darkness
        for c in range(40, 120, 12):
            k += 1
            rr, cc = disk((r, c), 6.5, shape=h.shape)
            h[rr, cc] = 0.1
            labels[rr, cc] = k
    _, n, dropped = nuclear_gate.check(_paint(h, np.full_like(h, 0.1)), labels)
    assert n == k and dropped == 0


def test_nuclei_in_purple_stroma_are_kept_by_their_missing_eosin():
    """Purple stroma (haematoxylin-dark and eosin-dense, as `dense_style` draws it and as the
    fixed vectors read it): a nucleus there holds barely more haematoxylin than the stroma but
    no eosin, and is kept (ids 1-6); an outline on the same stroma (id 7, no eosin deficit) and
    one on a lumen in it (id 8: no eosin, but paler in haematoxylin too) are dropped."""
    h = np.full((SIZE, SIZE), 0.06)
    e = np.full((SIZE, SIZE), 0.12)
    labels = np.zeros((SIZE, SIZE), np.int32)
    for i in range(6):
        rr, cc = disk((30, 15 + 25 * i), 6, shape=h.shape)
        h[rr, cc], e[rr, cc] = 0.062, 0.04
        labels[rr, cc] = i + 1
    rr, cc = disk((100, 50), 7, shape=h.shape)
    labels[rr, cc] = 7
    rr, cc = disk((110, 120), 8, shape=h.shape)
    h[rr, cc], e[rr, cc] = 0.0, 0.0
    labels[rr, cc] = 8
    out, n, dropped = nuclear_gate.check(_paint(h, e), labels)
    assert set(np.unique(out[out > 0]).tolist()) == {1, 2, 3, 4, 5, 6}
    assert (n, dropped) == (8, 2)
    # Without the eosin path they would all go: the haematoxylin counts alone drop them.
    ev = nuclear_gate.evidence(_paint(h, e), labels)
    d = ev.h_in - ev.h_ring
    assert not ((d[:6] >= nuclear_gate.MIN_CONTRAST) & (ev.h_in[:6] >= 1.2 * ev.h_ring[:6])).any()


def test_a_nucleus_seen_by_two_overlapping_tiles_gets_the_same_verdict():
    """Two tiles overlapping by 128 px of a held-out generated slide (tumour look: big
    pale nuclei, cytoplasm, stroma), with its true nuclei and blobs of plain tissue as the
    detections: every detection whole in both tiles, its band included, gets one verdict."""
    slide = heldout_slide("tumour", 0)
    rgb, labels = slide.rgb, slide.truth.copy()
    rng = np.random.default_rng(0)
    nxt = int(labels.max()) + 1
    for _ in range(300):  # detections on whatever tissue there is between nuclei
        r, c = rng.integers(20, 1004, 2)
        rr, cc = disk((r, c), 5, shape=labels.shape)
        if not labels[rr, cc].any():
            labels[rr, cc] = nxt
            nxt += 1
    a, b = (slice(None), slice(0, 560)), (slice(None), slice(432, 992))
    out_a = nuclear_gate.check(rgb[a], labels[a])[0]
    out_b = nuclear_gate.check(rgb[b], labels[b])[0]
    both = labels[:, 432:560]
    margin = nuclear_gate.RING_PX + 1
    ids = set(np.unique(both[both > 0]).tolist())
    for edge in (both[:, :margin], both[:, -margin:]):
        ids -= set(np.unique(edge).tolist())  # not whole, band included, in both tiles
    assert len(ids) > 15
    dropped_somewhere = 0
    for i in sorted(ids):
        in_a = bool((out_a == i).any())
        in_b = bool((out_b == i).any())
        assert in_a == in_b, f"detection {i}: tile A {'keeps' if in_a else 'drops'} it, B not"
        dropped_somewhere += not in_a
    assert dropped_somewhere > 0  # the seam holds blobs of plain tissue the check drops


def test_a_checked_batch_counts_each_tile_in_order_inside_a_tally_only():
    from wsitui.models.finish import finish_batch

    rgb, labels = _scene(0.12, 0.03, 0.12)
    empty = np.zeros_like(labels)
    batch, labs = np.stack([rgb, rgb]), np.stack([labels, empty])
    finish_batch(batch, labs, check=True, fill=False)  # outside a tally: counted nowhere
    with nuclear_gate.tally() as counts:
        out = finish_batch(batch, labs, check=True, fill=False)
    assert counts == [(8, 2), (0, 0)]
    assert out.dtype == labs.dtype and out.shape == labs.shape
    assert not out[1].any()


def test_a_bad_setting_is_one_line_naming_the_choices():
    with pytest.raises(ValueError, match="use 'auto' or 'off'"):
        nuclear_gate.mode_of("on")


def test_the_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, wsitui.models.nuclear_gate; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- in the model layer: every InstanSeg path goes through it ----------------------------------
@pytest.fixture(scope="module")
def shipped():
    pytest.importorskip("torch")
    from wsitui.models.loaded import load
    from wsitui.models.source import resolve

    model = load(resolve("shipped"), "cpu", cpu_threads=1)
    yield model
    model.close()


def _tumour_crop() -> np.ndarray:
    """A crop of real tumour H&E (tiatoolbox's target image, one of the real check images;
    used here to exercise the mechanism, never to tune it): the shipped model outlines bits
    of cytoplasm and stroma there, which the check must drop."""
    from wsitui.models.real_images import load_real

    return np.ascontiguousarray(load_real("he_target")[None, :320, :320])


def test_the_shipped_model_drops_what_lacks_evidence_and_keeps_the_rest_as_it_was(shipped):
    tile = _tumour_crop()
    # The model's own outlines, without the classical fill (classical_fill.py) that follows.
    raw = shipped.predict(tile, postprocess={"nuclear_check": "off", "classical_fill": "off"})[0]
    with nuclear_gate.tally() as counts:  # `auto` is the default
        checked = shipped.predict(tile, postprocess={"classical_fill": "off"})[0]
    n_raw = len(np.unique(raw[raw > 0]))
    kept = np.unique(checked[checked > 0])
    assert counts == [(n_raw, n_raw - len(kept))]
    assert 0 < len(kept) < n_raw  # outlines in cytoplasm and stroma go, nuclei stay
    assert np.array_equal(checked[checked > 0], raw[checked > 0])  # the same outlines
    assert shipped.manifest()["postprocess"]["nuclear_check"] == "auto"


def test_the_device_runner_goes_through_the_same_check(shipped):
    from wsitui.jobs.segment_cells.accel import DeviceSegmenter

    tile = _tumour_crop()
    ref = shipped.predict(tile)
    with nuclear_gate.tally() as counts:
        got = DeviceSegmenter(shipped, "fp32").predict(tile)
    assert len(counts) == 1 and counts[0][1] > 0
    assert np.array_equal(ref, got)  # the same check and the same classical fill
    no_fill = {"classical_fill": "off"}
    alone = DeviceSegmenter(shipped, "fp32", no_fill).predict(tile)
    off = DeviceSegmenter(shipped, "fp32", {"nuclear_check": "off", **no_fill}).predict(tile)
    assert len(np.unique(off)) > len(np.unique(alone))
