"""What the classical fill costs the shipped model per tile, run on demand, never in CI.

    .venv/bin/python benchmarks/bench_classical_fill.py [--tiles 12] [--rounds 3] [--size 512]
    .venv/bin/python benchmarks/bench_classical_fill.py --post [--rounds 7]

CPU time per tile of the shipped model's `predict` as a job calls it (nuclear check on) with
`classical_fill` on (its default, wsitui/models/classical_fill.py) against the baseline measured
in the same run and process, `classical_fill = "off"`; rounds alternate the two on generated
tiles (dense, tumour and wide looks of a stream of their own), one torch thread. Prints the
ratio, and the cells each found.

`--post`: the post-processing alone. The network's labels of each tile (the generated ones and
the three real images, wsitui/models/real_images.py, cut to `--size`) are computed once; then
rounds alternate, on those labels, `finish_tile` (wsitui/models/finish.py) with the check alone,
with the check and the fill, and with the check and the fill deciding solidity by skimage's
regionprops for every instance (the code before 2026-12-06's `classical_fill.less_solid`, kept
here as the baseline); their labels must be identical. Prints medians per tile and ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from skimage.measure import regionprops

from wsitui.models import classical_fill
from wsitui.models.finish import finish_tile
from wsitui.models.loaded import load
from wsitui.models.real_images import load_real
from wsitui.models.source import resolve
from wsitui.slides.patches import render_patch
from wsitui.slides.style import dense_style, tumour_style, wide_style


def _run(model: object, tiles: list[np.ndarray], fill: str) -> tuple[float, int]:
    t0 = time.process_time()
    cells = 0
    for t in tiles:
        lab = model.predict(t[None], postprocess={"classical_fill": fill})[0]  # type: ignore[attr-defined]
        cells += len(np.unique(lab)) - 1
    return (time.process_time() - t0) / len(tiles), cells


def _regionprops_less_solid(labels: np.ndarray, threshold: float) -> np.ndarray:
    """The baseline: `classical_fill.less_solid` as regionprops' solidity of every instance."""
    return np.asarray([r.label for r in regionprops(labels) if r.solidity < threshold], np.int64)


VARIANTS = ("check", "fill", "fill_regionprops")


def _post(pairs: list[tuple[np.ndarray, np.ndarray]], variant: str) -> tuple[float, list]:
    """CPU seconds per tile of `finish_tile` on (rgb, network labels) pairs, and its labels."""
    fast = classical_fill.less_solid
    if variant == "fill_regionprops":
        classical_fill.less_solid = _regionprops_less_solid
    try:
        t0 = time.process_time()
        out = [finish_tile(rgb, lab, check=True, fill=variant != "check")[0] for rgb, lab in pairs]
        return (time.process_time() - t0) / len(pairs), out
    finally:
        classical_fill.less_solid = fast


def post_only(model: object, tiles: list[np.ndarray], rounds: int, size: int) -> None:
    groups: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"generated": [], "real": []}
    real = [load_real(n)[:size, :size].copy() for n in ("he_target", "he_histo", "ihc")]
    for group, rgbs in (("generated", tiles), ("real", real)):
        for rgb in rgbs:
            post = {"nuclear_check": "off", "classical_fill": "off"}  # the network's own
            lab = model.predict(rgb[None], postprocess=post)[0]  # type: ignore[attr-defined]
            groups[group].append((rgb, lab))
    for group, pairs in groups.items():
        times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for _ in range(rounds):
            outs = {}
            for v in VARIANTS:
                t, outs[v] = _post(pairs, v)
                times[v].append(t)
            pairs_out = zip(outs["fill"], outs["fill_regionprops"], strict=True)
            if not all(np.array_equal(a, b) for a, b in pairs_out):
                raise SystemExit(f"{group}: the fill's labels differ from the regionprops baseline")
        med = {v: statistics.median(t) * 1000 for v, t in times.items()}
        cells = sum(len(np.unique(o)) - 1 for o in outs["fill"])
        print(
            f"post-processing per tile, {group} ({len(pairs)} tiles, {rounds} rounds alternated, "
            f"CPU time, medians): check alone {med['check']:.1f} ms; check + fill "
            f"{med['fill']:.1f} ms, baseline (regionprops solidity) {med['fill_regionprops']:.1f}"
            f" ms, ratio {med['fill'] / med['fill_regionprops']:.2f}; the fill alone "
            f"{med['fill'] - med['check']:.1f} vs {med['fill_regionprops'] - med['check']:.1f} "
            f"ms; {cells} cells, labels identical"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--post", action="store_true", help="time the post-processing alone")
    args = ap.parse_args()
    model = load(resolve("shipped"), "cpu", cpu_threads=1)
    rng = np.random.default_rng([2026, 12, 5, 2])
    looks = (dense_style, tumour_style, wide_style)
    tiles = []
    for i in range(args.tiles):
        style = looks[i % len(looks)](rng, name=f"bench{i}")
        tiles.append(render_patch(style, (args.size, args.size), 710_000 + i, 0.5)[0])
    if args.post:
        post_only(model, tiles, args.rounds, args.size)
        return
    off, on = [], []
    for _ in range(args.rounds):
        b, b_cells = _run(model, tiles, "off")
        o, o_cells = _run(model, tiles, "on")
        off.append(b)
        on.append(o)
    bm, om = statistics.median(off), statistics.median(on)
    print(
        f"shipped model per {args.size}² tile, CPU time, {args.tiles} tiles x {args.rounds} "
        f"rounds: classical_fill off (baseline) {bm * 1000:.1f} ms, on {om * 1000:.1f} ms, "
        f"ratio {om / bm:.2f}; cells off {b_cells}, on {o_cells}"
    )


if __name__ == "__main__":
    main()
