"""The classical fallback (the default model) per 512² tile, run on demand, never in CI.

    .venv/bin/python benchmarks/bench_classical.py [--tiles 16] [--rounds 3]

Per-tile CPU time of `classical.segment_tile` on generated tiles (dense, tumour and wide looks
of a stream of their own), against a baseline measured in the same run and process: the same
code with skimage's `peak_local_max(labels=...)` and scipy's `ndimage.median` put back (what
`label_peaks` and `_label_medians` replaced). Rounds alternate the two; the labels must be
identical, or it stops. Also timed: the same without classical-6's outline step
(`outline_by_contrast`), i.e. what that step costs (labels differ there, by design).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max

from wsitui.models import classical
from wsitui.slides.patches import render_patch
from wsitui.slides.style import dense_style, tumour_style, wide_style


def _baseline_peaks(image: np.ndarray, labels: np.ndarray, md: int) -> np.ndarray:
    return peak_local_max(image, min_distance=md, labels=labels, exclude_border=False)


def _baseline_medians(h: np.ndarray, comp: np.ndarray, n: int, empty: float = np.nan) -> np.ndarray:
    ids = np.arange(1, n + 1)
    present = np.bincount(comp.ravel(), minlength=n + 1)[1:] > 0
    values = np.asarray(ndimage.median(h, comp, ids), np.float64)
    return np.where(present, values, empty)


def _no_outline(h: np.ndarray, fg: np.ndarray, tissue: np.ndarray) -> np.ndarray:
    return fg


def _run(
    tiles: list[np.ndarray], baseline: bool, outline: bool = True
) -> tuple[float, list[np.ndarray]]:
    saved = classical.label_peaks, classical._label_medians, classical.outline_by_contrast
    if baseline:
        classical.label_peaks, classical._label_medians = _baseline_peaks, _baseline_medians
    if not outline:
        classical.outline_by_contrast = _no_outline
    try:
        t0 = time.process_time()
        out = [classical.segment_tile(t) for t in tiles]
        return (time.process_time() - t0) / len(tiles), out
    finally:
        classical.label_peaks, classical._label_medians, classical.outline_by_contrast = saved


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng([2026, 12, 5])
    looks = (dense_style, tumour_style, wide_style)
    tiles = []
    for i in range(args.tiles):
        style = looks[i % len(looks)](rng, name=f"bench{i}")
        tiles.append(render_patch(style, (512, 512), 700_000 + i, 0.5)[0])
    ours, base, plain = [], [], []
    for _ in range(args.rounds):
        b, b_labels = _run(tiles, baseline=True)
        o, o_labels = _run(tiles, baseline=False)
        if any(not np.array_equal(x, y) for x, y in zip(b_labels, o_labels, strict=True)):
            raise SystemExit("the labels differ from the baseline's: not the same method")
        base.append(b)
        ours.append(o)
        plain.append(_run(tiles, baseline=False, outline=False)[0])
    bm, om, pm = statistics.median(base), statistics.median(ours), statistics.median(plain)
    print(
        f"classical {classical.VERSION}, {len(tiles)} tiles of 512², {args.rounds} rounds "
        f"(CPU s per tile, median): baseline {bm * 1000:.1f} ms, now {om * 1000:.1f} ms, "
        f"ratio {om / bm:.3f} (labels identical); without classical-6's outline step "
        f"{pm * 1000:.1f} ms (it costs {om / pm - 1:+.1%})"
    )


if __name__ == "__main__":
    main()
