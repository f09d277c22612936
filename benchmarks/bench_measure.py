"""MEASURE_CELLS benchmark: cells measured per second on a generated slide, and peak RSS.

    .venv/bin/python benchmarks/bench_measure.py [--size 40000x30000] [--seed 3] [--tile-size 1024]

The generator's own nuclei (its truth, as 24-vertex ellipses) stand for the upstream
SEGMENT_CELLS job's cells: segmenting a 40k x 30k slide with a model is not what is measured
here, and the truth has the cell count and spacing of the slide. They are written as
SEGMENT_CELLS writes cells.geojson (one Feature a line) with its manifest, and the job's own
run (`_CellMeasurement`) measures them with a stand-in JobContext (no engine: the engine's cost per
job is not per cell). Prints cells, seconds, cells/s, timings per stage and peak RSS, sampled
every 0.5 s while it runs, so a memory that grows with the slide shows. The goal (issue #16):
190,000 cells of a 40k x 30k slide in < 2 min with flat memory. Slides are cached in
benchmarks/.cache.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_rss_mb, sample


def write_upstream(slide: Path, out: Path) -> int:
    """cells.geojson + manifest.json of the slide's true nuclei, as SEGMENT_CELLS writes them."""
    import numpy as np

    from wsitui.core.digest import sha256_file
    from wsitui.slides.sample import load_truth

    truth = load_truth(slide)
    t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    with (out / "cells.geojson").open("w", encoding="utf-8") as f:
        f.write('{"type":"FeatureCollection","features":[\n')
        for i, (cx, cy, a, b, th) in enumerate(truth.nuclei.tolist()):
            x = cx + a * np.cos(t) * math.cos(th) - b * np.sin(t) * math.sin(th)
            y = cy + a * np.cos(t) * math.sin(th) + b * np.sin(t) * math.cos(th)
            ring = [[round(float(p), 2), round(float(q), 2)] for p, q in zip(x, y, strict=True)]
            ring.append(ring[0])
            feature = {
                "type": "Feature",
                "id": f"cell-{i}",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "objectType": "detection",
                    "classification": {"name": "Nucleus", "color": [0, 90, 200]},
                    "measurements": {
                        "Centroid X µm": cx * truth.mpp,
                        "Centroid Y µm": cy * truth.mpp,
                    },
                },
            }
            f.write((",\n" if n else "") + json.dumps(feature, separators=(",", ":")))
            n += 1
        f.write("\n]}\n")
    manifest = {
        "mpp": truth.mpp,
        "tiles": {"scale": 1.0},
        "artifacts": [{"path": "cells.geojson", "sha256": sha256_file(out / "cells.geojson")}],
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    return n


@dataclass
class Ctx:
    """A stand-in JobContext: what the engine gives a running job, without the engine."""

    job: Any
    params: Any
    results_dir: Path
    shards_dir: Path
    upstream: tuple[Any, ...]
    checkpoint: Any = None
    reports: list[tuple[int, int]] = field(default_factory=list)

    def report(self, done: int, total: int, counters: Any = None) -> None:
        self.reports.append((done, total))

    def restart_progress(self, reason: str) -> None:
        pass

    def set_stage(self, stage: str) -> None:
        print(f"  stage: {stage}", file=sys.stderr)

    def cancel_requested(self) -> bool:
        return False

    def check_cancel(self) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="40000x30000")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--tile-size", type=int, default=1024)
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    slide = sample((size[0], size[1]), args.seed)

    from types import SimpleNamespace

    from wsitui.core.executor import UpstreamJob
    from wsitui.core.records import JobState
    from wsitui.jobs.measure_cells.executor import _CellMeasurement
    from wsitui.jobs.measure_cells.params import MeasureCellsParams

    with tempfile.TemporaryDirectory() as tmp:
        up_dir = Path(tmp) / "cells"
        t0 = time.perf_counter()
        n = write_upstream(slide, up_dir)
        print(f"{n:,} cells written as the upstream in {time.perf_counter() - t0:.1f} s")
        out = Path(tmp) / "measure"
        (out / "shards").mkdir(parents=True)
        up = UpstreamJob(
            "cells", "cells-job", "SEGMENT_CELLS", str(slide), JobState.SUCCEEDED, up_dir
        )
        ctx = Ctx(
            job=SimpleNamespace(id="bench", attempt=1, slide=str(slide)),
            params=MeasureCellsParams(tile_size=args.tile_size),
            results_dir=out,
            shards_dir=out / "shards",
            upstream=(up,),
        )
        rss: list[tuple[float, float]] = []
        done = threading.Event()

        def sample_rss() -> None:
            while not done.wait(0.5):
                rss.append((time.perf_counter() - t1, _rss_now_mb()))

        base = _rss_now_mb()
        t1 = time.perf_counter()
        threading.Thread(target=sample_rss, daemon=True).start()
        _CellMeasurement(ctx, ctx.params).run()  # type: ignore[arg-type]
        wall = time.perf_counter() - t1
        done.set()
        manifest = json.loads((out / "manifest.json").read_text())
        cells = manifest["cells"]
        rate = cells / wall
        print(f"slide {args.size}: {cells:,} cells measured in {wall:.1f} s = {rate:,.0f} cells/s")
        print(f"timings: {manifest['timings']}")
        print(f"stains: {manifest['stains']}")
        quarters = [
            max((r for t, r in rss if q * wall / 4 <= t < (q + 1) * wall / 4), default=0)
            for q in range(4)
        ]
        print(
            f"RSS before {base:.0f} MB; max per quarter of the run: {[round(q) for q in quarters]}"
        )
        print(f"peak RSS {peak_rss_mb():.0f} MB")
        pq_mb = (out / "measurements.parquet").stat().st_size / 1e6
        geo_mb = (out / "cells.geojson").stat().st_size / 1e6
        print(f"parquet {pq_mb:.1f} MB, geojson {geo_mb:.1f} MB")


def _rss_now_mb() -> float:
    import os

    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


if __name__ == "__main__":
    main()
