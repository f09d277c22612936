"""Reading a pyramid OpenSlide does not see (OME-TIFF SubIFDs) vs the same level 0 alone.

    .venv/bin/python benchmarks/bench_pyramid.py [--size 20000x15000] [--tile 512] [--rounds 3]

Slides, written once into a cache dir outside the repo (~/.cache/wsitui/bench/ or
$WSITUI_BENCH_DIR):
  * `svs`: a generated sample slide (Aperio SVS, levels 4x apart, as `wsitui sample` writes);
  * `ome`: the same pixels at every level as an OME-TIFF as QuPath / bfconvert / tifffile
    export it: tiled JPEG level 0, levels 1-3 (downsamples 4, 16, 64) as SubIFDs of page 0,
    PhysicalSizeX/Y in the XML;
  * `level0`: the baseline, that OME-TIFF's level 0 alone (no SubIFDs): the file as OpenSlide
    sees the OME-TIFF, which is how wsitui read it before the tifffile pyramid reader.

Each round, in turn on every slide (alternated, so load drifts hit them alike):
  * `wsitui run` with one TISSUE_MASK job, a child process: wall seconds and peak RSS;
  * open_slide + thumbnail(1024) in this process: seconds.
Reported: medians, and each slide's ratio to `level0` measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsitui.slides.reader import open_slide
from wsitui.slides.sample import parse_size, write_sample_slide

MPP = 0.499
ROOT = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    d = Path(os.environ.get("WSITUI_BENCH_DIR", Path.home() / ".cache" / "wsitui" / "bench"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _tiles(reader, level: int, tile: int) -> Iterator[np.ndarray]:
    """The level's tiles in row order, each tile x tile (background past the edges)."""
    w, h = reader.level_dimensions[level]
    ds = reader.level_downsamples[level]
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            yield (
                reader._read_level_px(level, x, y, tile, tile)
                if level
                else reader.read_region((round(x * ds), round(y * ds)), level, (tile, tile))
            )


def write_slides(size: tuple[int, int], tile: int) -> dict[str, Path]:
    d = cache_dir()
    w, h = size
    svs = d / f"pyramid_{w}x{h}.svs"
    ome = d / f"pyramid_{w}x{h}_t{tile}.ome.tif"
    level0 = d / f"pyramid_{w}x{h}_t{tile}_level0.tif"
    if not svs.exists():
        print(f"generating {svs.name} (once) ...", file=sys.stderr)
        write_sample_slide(svs, size=size, seed=0)
    if not ome.exists() or not level0.exists():
        print(f"writing {ome.name} and {level0.name} (once) ...", file=sys.stderr)
        meta = {"axes": "YXS", "PhysicalSizeX": MPP, "PhysicalSizeY": MPP}
        kw = {"tile": (tile, tile), "photometric": "rgb", "compression": "jpeg"}
        kw |= {"compressionargs": {"level": 90}, "dtype": np.uint8}
        with open_slide(svs) as r:
            levels = min(4, r.level_count)
            with (
                tifffile.TiffWriter(ome, ome=True, bigtiff=True) as t,
                tifffile.TiffWriter(level0, ome=True, bigtiff=True) as t0,
            ):
                t.write(
                    _tiles(r, 0, tile), shape=(h, w, 3), subifds=levels - 1, metadata=meta, **kw
                )
                t0.write(_tiles(r, 0, tile), shape=(h, w, 3), metadata=meta, **kw)
                for level in range(1, levels):
                    lw, lh = r.level_dimensions[level]
                    t.write(_tiles(r, level, tile), shape=(lh, lw, 3), subfiletype=1, **kw)
    return {"svs": svs, "ome": ome, "level0": level0}


def run_mask(slide: Path) -> tuple[float, float]:
    """`wsitui run` of one TISSUE_MASK job on `slide`: (wall s, peak RSS MB) of the child
    (os.wait4 on it: its own peak, not the largest of all children so far)."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "c.toml"
        config.write_text(
            '[[workflows]]\ntenant = "t"\nname = "w"\n'
            f'  [[workflows.jobs]]\n  id = "m"\n  type = "TISSUE_MASK"\n  slide = "{slide}"\n'
        )
        cmd = [sys.executable, "-m", "wsitui.cli", "run", str(config)]
        cmd += ["--data-dir", str(Path(tmp) / "data"), "--json"]
        out_path = Path(tmp) / "out.json"
        t0 = time.perf_counter()
        with out_path.open("wb") as out, Path(os.devnull).open("wb") as devnull:
            pid = os.posix_spawn(
                sys.executable,
                cmd,
                {**os.environ, "PYTHONPATH": str(ROOT)},
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
                    (os.POSIX_SPAWN_DUP2, devnull.fileno(), 2),
                ],
            )
            _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"wsitui run failed on {slide.name} (exit {status})")
        state = json.loads(out_path.read_text())["workflows"][0]["jobs"][0]["state"]
        assert state == "SUCCEEDED", state
    return wall, usage.ru_maxrss / 1024


def thumb(slide: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    with open_slide(slide) as r:
        r.thumbnail(1024)
        what = f"{r.backend}, {r.level_count} levels"
    return time.perf_counter() - t0, what


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="20000x15000")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    slides = write_slides(parse_size(args.size), args.tile)
    for name, path in slides.items():
        with open_slide(path) as r:
            print(
                f"{name:7s} {path.name}: {r.backend} ({r.vendor}), levels "
                f"{list(r.level_dimensions)}, mpp {r.mpp}, {path.stat().st_size / 1e6:.0f} MB"
            )
    times: dict[str, dict[str, list[float]]] = {
        n: {"mask": [], "rss": [], "thumb": []} for n in slides
    }
    for i in range(args.rounds):
        for name, path in slides.items():
            wall, rss = run_mask(path)
            t, _ = thumb(path)
            times[name]["mask"].append(wall)
            times[name]["rss"].append(rss)
            times[name]["thumb"].append(t)
            print(
                f"round {i + 1} {name:7s} mask job {wall:6.2f} s ({rss:5.0f} MB)  "
                f"thumbnail {t:6.3f} s"
            )
    print(f"\nmedians of {args.rounds} rounds; ratio to level0 (the baseline, same run)")
    base = {k: statistics.median(v) for k, v in times["level0"].items()}
    for name in slides:
        med = {k: statistics.median(v) for k, v in times[name].items()}
        print(
            f"{name:7s} wsitui run TISSUE_MASK {med['mask']:6.2f} s "
            f"(x{med['mask'] / base['mask']:.2f}), "
            f"peak RSS {med['rss']:5.0f} MB (x{med['rss'] / base['rss']:.2f}), "
            f"thumbnail(1024) {med['thumb']:6.3f} s (x{med['thumb'] / base['thumb']:.3f})"
        )


if __name__ == "__main__":
    main()
