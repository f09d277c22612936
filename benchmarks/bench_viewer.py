"""Slide viewer benchmark: first picture, pan and zoom steps, cache memory, cell index.

On a generated 40,000 x 30,000 sample slide (made once into benchmarks/.cache) with its cells
(~189,000 true nuclei as 16-gons, written like a SEGMENT_CELLS job's cells.geojson) and tissue
(the truth mask traced like a TISSUE_MASK job's tissue.geojson):

* first picture: open the slide, read the thumbnail, compose the fitted 1280x800-px view
  (+ sixel encode, ours and textual-image's as the baseline);
* cell index: `CellIndex.load` time and the RSS it adds (and the process's peak after it);
* pan steps (a quarter view to the right, 12 steps from a level-0 view in tissue) and zoom steps
  (2x in about the centre from the fitted view down to level 0, then out): per step, the first
  compose from cache (the coarse stand-in where tiles are missing), the tile reads, the sharp
  compose, and the encode per protocol. Sixel (ours, wsitui.tui.widgets.sixel_encode, and
  textual-image's as the baseline, `sixel_textual_image`) and kitty (TGP) get a 1280x800-px
  view; half-block gets that terminal's cells (128 x 40 at 10 x 20 px per cell: a 128 x 80-px
  view); its encode is timed whole (segments + Rich's ANSI) and as segments only (what the
  widget hands Textual, which renders them its own way). As in the TUI, the ring of tiles
  around the view is read after each step (not timed: it runs while the user looks);
* cache: bytes of decoded tiles held at the end, and the process's peak RSS.

    python benchmarks/bench_viewer.py [--size 40000x30000] [--steps 12] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from common import CACHE, peak_rss_mb, sample
from PIL import Image
from rich.console import Console

from tests.viewer.truth_cells import write_cells_geojson, write_tissue_geojson
from wsitui.slides.reader import open_slide
from wsitui.slides.sample import load_truth, parse_size
from wsitui.viewer.cells import CellIndex
from wsitui.viewer.compose import Compositor, Frame
from wsitui.viewer.tiles import DEFAULT_CACHE_MB, TileSource
from wsitui.viewer.tissue import TissueOutline
from wsitui.viewer.view import View

GRAPHICS_VIEW = (1280, 800)
CELL_PX = (10, 20)
HALF_VIEW = (GRAPHICS_VIEW[0] // CELL_PX[0], 2 * (GRAPHICS_VIEW[1] // CELL_PX[1]))


def rss_mb() -> float:
    """This process's resident memory now (Linux /proc; psutil is not a dependency)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def overlays(slide: Path) -> tuple[Path, Path]:
    cells = CACHE / (slide.stem + ".cells.geojson")
    tissue = CACHE / (slide.stem + ".tissue.geojson")
    if not cells.exists() or not tissue.exists():
        truth = load_truth(slide)
        write_cells_geojson(truth.nuclei, cells)
        write_tissue_geojson(truth.tissue, truth.tissue_downsample, tissue)
    return cells, tissue


# ---- encoders: what the TUI's image widgets do with a frame ------------------------------------
def encode_sixel(img: Image.Image) -> int:
    """What the TUI's sixel widget runs: PIL quantizer + numpy bands."""
    from wsitui.tui.widgets.sixel_encode import encode

    return len(encode(img))


def encode_sixel_textual_image(img: Image.Image) -> int:
    """The baseline: textual-image's encoder (+ the xterm select fix), used before."""
    from textual_image._sixel import image_to_sixels

    from wsitui.tui.widgets.sixel import select_after_define

    return len(select_after_define(image_to_sixels(img)))


def encode_tgp(img: Image.Image) -> int:
    from textual_image._pixeldata import PixelData

    return len(PixelData(img).scaled(img.width, img.height).to_base64())


def encode_halfcell(img: Image.Image) -> int:
    from textual_image.renderable.halfcell import Image as Halfcell

    buf = io.StringIO()
    console = Console(file=buf, width=img.width, force_terminal=True, color_system="truecolor")
    console.print(Halfcell(img, img.width, img.height // 2))
    return len(buf.getvalue())


def encode_halfcell_segments(img: Image.Image) -> int:
    """Only the styled segments the half-block widget hands Textual (no ANSI rendering)."""
    from textual_image.renderable.halfcell import Image as Halfcell

    console = Console(file=io.StringIO(), width=img.width, force_terminal=True)
    return len(
        list(Halfcell(img, img.width, img.height // 2).__rich_console__(console, console.options))
    )


ENCODERS = {
    "sixel": encode_sixel,
    "sixel_textual_image": encode_sixel_textual_image,
    "tgp": encode_tgp,
    "halfcell": encode_halfcell,
    "halfcell_segments": encode_halfcell_segments,
}


def ms(t: float) -> float:
    return round(1000 * t, 1)


class Clock:
    """Wall and CPU time of a block (CPU: this process's threads; on a machine shared with
    other work the wall time grows with the load, the CPU time much less)."""

    def __enter__(self) -> Clock:
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = ms(time.perf_counter() - self.w0)
        self.cpu = ms(time.process_time() - self.c0)


def step(comp: Compositor, view: View, protocols: tuple[str, ...]) -> dict[str, Any]:
    """One view change as the TUI does it: draft from cache, read, sharp compose, encode."""
    with Clock() as draft_t:
        draft = comp.compose(view)
    reads_before = comp.source.reads
    with Clock() as read_t:
        comp.source.fetch(comp.wanted(view, ring=0))
    with Clock() as sharp_t:
        frame: Frame = comp.compose(view) if draft.missing else draft
    img = Image.fromarray(frame.rgb)
    encode, encode_cpu = {}, {}
    for p in protocols:
        with Clock() as enc_t:
            ENCODERS[p](img)
        encode[p], encode_cpu[p] = enc_t.wall, enc_t.cpu
    comp.source.fetch(comp.wanted(view))  # the ring, in the background in the TUI
    return {
        "level": frame.level,
        "cells": frame.cells_mode,
        "draft_ms": draft_t.wall,
        "draft_cpu_ms": draft_t.cpu,
        "tiles_read": comp.source.reads - reads_before,
        "read_ms": read_t.wall,
        "sharp_ms": sharp_t.wall if draft.missing else 0.0,
        "encode_ms": encode,
        "encode_cpu_ms": encode_cpu,
    }


def summarise(steps: list[dict[str, Any]], protocol: str) -> dict[str, float]:
    """Per step, what the user waits for: the first picture (draft + encode) and the sharp one
    (draft + reads + sharp compose + encode); compose and encode also in CPU time."""
    first = [s["draft_ms"] + s["encode_ms"][protocol] for s in steps]
    sharp = [s["draft_ms"] + s["read_ms"] + s["sharp_ms"] + s["encode_ms"][protocol] for s in steps]

    def med(key: str) -> float:
        return round(statistics.median(s[key] for s in steps), 1)

    return {
        "compose_median_ms": med("draft_ms"),
        "compose_cpu_median_ms": med("draft_cpu_ms"),
        "encode_median_ms": round(statistics.median(s["encode_ms"][protocol] for s in steps), 1),
        "encode_cpu_median_ms": round(
            statistics.median(s["encode_cpu_ms"][protocol] for s in steps), 1
        ),
        "first_picture_median_ms": round(statistics.median(first), 1),
        "sharp_median_ms": round(statistics.median(sharp), 1),
        "sharp_max_ms": round(max(sharp), 1),
        "tiles_read_median": round(statistics.median(s["tiles_read"] for s in steps), 1),
    }


def run(size: tuple[int, int], n_steps: int) -> dict[str, Any]:
    slide = sample(size, 0)
    cells_path, tissue_path = overlays(slide)
    out: dict[str, Any] = {"slide": f"{size[0]}x{size[1]}", "cache_mb": DEFAULT_CACHE_MB}

    # First picture: nothing open yet.
    with Clock() as open_t:
        reader = open_slide(slide)
        source = TileSource(reader)
        comp = Compositor(source, reader.mpp)
        fit = View.fit(reader.dimensions, GRAPHICS_VIEW)
        frame = comp.compose(fit)
    with Clock() as enc_t:
        encode_sixel(Image.fromarray(frame.rgb))
    with Clock() as old_t:
        encode_sixel_textual_image(Image.fromarray(frame.rgb))
    out["first_picture_ms"] = {
        "open_and_compose": open_t.wall,
        "open_and_compose_cpu": open_t.cpu,
        "sixel_encode": enc_t.wall,
        "sixel_encode_cpu": enc_t.cpu,
        "sixel_encode_textual_image": old_t.wall,
        "sixel_encode_textual_image_cpu": old_t.cpu,
    }

    # The cell index (and tissue) as the screen's workers build them.
    before = rss_mb()
    with Clock() as index_t:
        comp.cells = CellIndex.load(cells_path, reader.dimensions)
    t1 = time.perf_counter()
    comp.tissue = TissueOutline.load(tissue_path, reader.dimensions)
    t2 = time.perf_counter()
    out["cell_index"] = {
        "cells": len(comp.cells),
        "file_mb": round(cells_path.stat().st_size / 2**20, 1),
        "build_s": round(index_t.wall / 1000, 2),
        "build_cpu_s": round(index_t.cpu / 1000, 2),
        "rss_added_mb": round(rss_mb() - before, 1),
        "peak_rss_mb_after": round(peak_rss_mb(), 1),
        "tissue_rings": len(comp.tissue.rings),
        "tissue_load_s": round(t2 - t1, 2),
    }
    q0 = time.perf_counter()
    for _ in range(100):
        x, y = comp.cells.centroid[_ * 997 % len(comp.cells)]
        comp.cells.query(x - 640, y - 400, x + 640, y + 400)
        comp.cells.at(float(x), float(y))
    out["cell_index"]["query_and_hit_us"] = round((time.perf_counter() - q0) / 100 * 1e6, 1)

    # Pans from a level-0 view in tissue, for each view size.
    x, y = (float(v) for v in comp.cells.centroid[len(comp.cells) // 2])
    results: dict[str, Any] = {}
    for name, vsize, protocols in (
        ("graphics_1280x800", GRAPHICS_VIEW, ("sixel", "sixel_textual_image", "tgp")),
        ("halfcell_128x80", HALF_VIEW, ("halfcell", "halfcell_segments")),
    ):
        scale = 1.0 if name.startswith("graphics") else 8.0
        view = View(size[0], size[1], 0, 0, scale, *vsize).centred_on(x, y)
        step(comp, view, protocols)  # start sharp, ring read
        pans = []
        for i in range(n_steps):
            view = view.pan(0.25, 0) if i < n_steps // 2 else view.pan(0, 0.25)
            pans.append(step(comp, view, protocols))
        zooms = []
        view = View.fit(reader.dimensions, vsize)
        while view.scale > scale * 1.01:
            view = view.zoom(2.0)
            zooms.append(step(comp, view, protocols))
        for _ in range(3):
            view = view.zoom(0.5)
            zooms.append(step(comp, view, protocols))
        results[name] = {
            "pan": {p: summarise(pans, p) for p in protocols},
            "zoom": {p: summarise(zooms, p) for p in protocols},
            "pan_steps": pans,
            "zoom_steps": zooms,
        }
    out["views"] = results
    out["cache_held_mb"] = round(source.cache.bytes / 2**20, 1)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    out["load_average"] = [round(v, 1) for v in os.getloadavg()]
    out["cpus"] = os.cpu_count()
    source.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="40000x30000")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--json", type=Path, help="write the full results (every step) here")
    args = ap.parse_args()
    res = run(parse_size(args.size), args.steps)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))
    brief = {k: v for k, v in res.items() if k != "views"}
    brief["views"] = {
        name: {"pan": v["pan"], "zoom": v["zoom"]} for name, v in res["views"].items()
    }
    print(json.dumps(brief, indent=1))


if __name__ == "__main__":
    main()
