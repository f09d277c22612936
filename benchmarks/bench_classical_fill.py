"""What the classical fill costs the shipped model per tile, run on demand, never in CI.

    .venv/bin/python benchmarks/bench_classical_fill.py [--tiles 12] [--rounds 3] [--size 512]

CPU time per tile of the shipped model's `predict` as a job calls it (nuclear check on) with
`classical_fill` on (its default, wsitui/models/classical_fill.py) against the baseline measured
in the same run and process, `classical_fill = "off"`; rounds alternate the two on generated
tiles (dense, tumour and wide looks of a stream of their own), one torch thread. Prints the
ratio, and the cells each found.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from wsitui.models.loaded import load
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    model = load(resolve("shipped"), "cpu", cpu_threads=1)
    rng = np.random.default_rng([2026, 12, 5, 2])
    looks = (dense_style, tumour_style, wide_style)
    tiles = []
    for i in range(args.tiles):
        style = looks[i % len(looks)](rng, name=f"bench{i}")
        tiles.append(render_patch(style, (args.size, args.size), 710_000 + i, 0.5)[0])
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
