"""Check the TUI's sixel previews in a real sixel terminal (by eye; not a CI test).

    .venv/bin/python scripts/check_sixel.py [OUT_DIR]      (default: /tmp/wsitui-sixel)

Needs Debian's xvfb, xterm, xdotool and imagemagick:
    apt-get update && apt-get install -y xvfb xterm xdotool imagemagick

What it does: runs one TISSUE_MASK job on a generated slide (so a real preview.png exists),
starts Xvfb and an xterm that speaks sixel (`-ti vt340`), opens the wsitui TUI in it with
image_protocol "auto" (which must pick sixel there), presses keys with xdotool to open the job
detail and the full-screen preview, and grabs the xterm window with ImageMagick's `import`.
The app runs under script(1), so OUT_DIR/typescript holds every byte it wrote; the position and
size of each image come from there. It writes into OUT_DIR: preview.png (the job's own image),
main.png, detail.png and fullscreen.png (what the terminal shows), and prints how the drawn
image's top, middle and bottom rows compare with preview.png. Look at the PNGs too: the image
must look like preview.png edge to edge, and the full screen must keep its title line and show
one footer. Measured 2026-12-02, xterm 379: top rows 2.3 (323 before the register fix).

Then the slide viewer: `v` on the job card opens it on the job's slide with its tissue outline
(viewer.png), and an arrow key pans a quarter view (viewer_pan.png). Each drawn view is cut out
and compared with the same view composed the way `wsitui view --snapshot` composes it
(viewer_expected.png, viewer_pan_expected.png; the `--snapshot --region` command is printed):
the pan must redraw, and the picture must match. Measured 2026-12-04, xterm 379, the
numpy sixel encoder: previews top rows 2.1-2.3; viewer and pan 0.1 and 2.5 from what was sent
(11.6 and 16.4 from the unquantised views: the 256-colour quantisation), at offset 0.

`--app DATA_DIR` is the inner mode the xterm runs: the TUI over an engine on DATA_DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from wsitui.core.engine import Engine  # noqa: E402
from wsitui.core.records import JobSpec, WorkflowSpec  # noqa: E402
from wsitui.jobs.registry import default_executors  # noqa: E402
from wsitui.slides.sample import write_sample_slide  # noqa: E402
from wsitui.viewer.compose import Layers  # noqa: E402
from wsitui.viewer.snapshot import load_compositor  # noqa: E402
from wsitui.viewer.view import PAN_FRACTION, View  # noqa: E402

TOOLS = ("Xvfb", "xterm", "xdotool", "import")
COLUMNS, ROWS = 120, 40
BORDER = 2  # xterm internal border, px


def prepare(data: Path) -> Path:
    """Run one TISSUE_MASK job to completion; return its preview.png."""
    slide = data.parent / "demo.svs"
    if not slide.exists():
        write_sample_slide(slide, size=(4096, 3072), seed=1)

    async def run() -> Path:
        async with Engine(data, default_executors()) as engine:
            status = engine.submit(
                "alice",
                WorkflowSpec(
                    name="sixel",
                    jobs=(JobSpec(id="mask", type="TISSUE_MASK", slide=str(slide), branch="A"),),
                ),
            )
            await engine.wait_idle()
            job = engine.job("alice", status.jobs[0].id)
            if str(job.state) != "SUCCEEDED":
                raise SystemExit(f"check_sixel: the job ended {job.state}: {job.error}")
            return engine.results_dir(job) / "preview.png"

    return asyncio.run(run())


def run_app(data: Path) -> None:
    """Inner mode, inside the xterm: the TUI with the automatic image protocol."""
    from wsitui.tui.app import WsituiApp  # imports textual-image, which probes the terminal

    engine = Engine(data, default_executors())
    WsituiApp(engine, tenant="alice", image_protocol="auto").run()


def grab(display: str, window: str, out: Path) -> None:
    subprocess.run(
        ["import", "-display", display, "-window", window, str(out)], check=True, timeout=30
    )


def keys(display: str, *names: str) -> None:
    env = {**os.environ, "DISPLAY": display}
    # No window manager: keyboard focus follows the pointer, so keep it over the xterm.
    subprocess.run(["xdotool", "mousemove", "200", "200"], env=env, check=True)
    for name in names:
        subprocess.run(["xdotool", "key", "--clearmodifiers", name], env=env, check=True)
        time.sleep(0.4)


_SIXEL_AT = re.compile(rb'\x1b\[(\d+);(\d+)H\x1bP[\d;]*q"1;1;(\d+);(\d+)')


def last_sixel(typescript: bytes) -> tuple[int, int, int, int] | None:
    """(row, column, width px, height px) of the last image the app drew (1-based cells)."""
    found = list(_SIXEL_AT.finditer(typescript))
    if not found:
        return None
    row, col, width, height = (int(v) for v in found[-1].groups())
    return row, col, width, height


def largest_sixel(typescript: bytes, since: int) -> tuple[int, int, int, int] | None:
    """The largest image drawn after byte `since` (the viewer's picture, not its minimap);
    the last one of that size (the sharp picture after the draft)."""
    found = [tuple(int(v) for v in m.groups()) for m in _SIXEL_AT.finditer(typescript, since)]
    if not found:
        return None
    biggest = max(w * h for _, _, w, h in found)
    return [f for f in found if f[2] * f[3] == biggest][-1]  # type: ignore[return-value]


def compare(preview: Path, shot: Path, where: tuple[int, int, int, int] | None) -> str:
    """Cut the drawn image out of the window grab and compare it with preview.png."""
    if where is None:
        return f"{shot.name}: the app drew no sixel image (did it pick sixel?)"
    row, col, width, height = where
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    cell_w = (img.shape[1] - 2 * BORDER) / COLUMNS
    cell_h = (img.shape[0] - 2 * BORDER) / ROWS
    x, y = BORDER + round((col - 1) * cell_w), BORDER + round((row - 1) * cell_h)
    crop = img[y : y + height, x : x + width]
    ref = Image.open(preview).convert("RGB")
    scaled = np.asarray(ref.resize((crop.shape[1], crop.shape[0]), Image.Resampling.LANCZOS))
    diff = np.abs(crop - scaled.astype(int)).sum(axis=2)
    band = 6  # one sixel band
    return (
        f"{shot.name}: {width}x{height} px image at cell ({col},{row}); mean |difference| "
        f"per {preview.name} pixel (0-765): top {band} rows {diff[:band].mean():.1f}, "
        f"middle {diff[height // 2 - 3 : height // 2 + 3].mean():.1f}, bottom {band} rows "
        f"{diff[-band:].mean():.1f}, whole {diff.mean():.1f}. A few units is right; tens "
        "mean a band of wrong colour"
    )


def compare_view(expected: Path, shot: Path, where: tuple[int, int, int, int] | None) -> str:
    """The drawn view against the composed one and against its quantisation by our sixel
    encoder (what the terminal was sent: ~0 there means xterm shows exactly that)."""
    if where is None:
        return f"{shot.name}: no viewer picture drawn"
    from wsitui.tui.widgets.sixel_encode import percent, quantise

    row, col, width, height = where
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    cell_w = (img.shape[1] - 2 * BORDER) / COLUMNS
    cell_h = (img.shape[0] - 2 * BORDER) / ROWS
    x, y = BORDER + round((col - 1) * cell_w), BORDER + round((row - 1) * cell_h)
    crop = img[y : y + height, x : x + width]
    ref = Image.open(expected).convert("RGB")
    q = quantise(ref)
    sent = (percent(q.palette)[q.index] * 255 + 50) // 100
    composed = np.abs(crop - np.asarray(ref).astype(int)).sum(axis=2).mean()
    quantised = np.abs(crop - sent).sum(axis=2).mean()
    return (
        f"{shot.name}: {width}x{height} px view at cell ({col},{row}); mean |difference| per "
        f"pixel (0-765) from {expected.name}: {composed:.1f} (256-colour quantisation), from "
        f"its quantisation as sent: {quantised:.1f} (~0: drawn exactly, in place)"
    )


def expected_view(
    slide: Path, tissue: Path, where: tuple[int, int, int, int] | None, pans: int, out: Path
) -> str:
    """Compose the view the viewer should show (fitted to the drawn size, panned right `pans`
    times) as `--snapshot` does, into `out`; returns the equivalent command."""
    if where is None:
        return "(no viewer image drawn)"
    _, _, width, height = where
    comp, _ = load_compositor(slide, None, tissue)
    try:
        view = View.fit(comp.source.dimensions, (width, height))
        for _ in range(pans):
            view = view.pan(PAN_FRACTION, 0)
        Image.fromarray(comp.compose_sync(view, Layers()).rgb).save(out)
    finally:
        comp.source.close()
    x0, y0, x1, y1 = view.region
    return (
        f"wsitui view {slide} --tissue {tissue} --snapshot {out} "
        f"--region {x0:g},{y0:g},{x1 - x0:g},{y1 - y0:g} --width {width}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=Path("/tmp/wsitui-sixel"))
    parser.add_argument("--app", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--display", default=":77", help="X display for Xvfb (default :77)")
    args = parser.parse_args()
    if args.app:
        run_app(args.app)
        return 0
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        print(
            f"check_sixel: missing {', '.join(missing)}: "
            "apt-get install -y xvfb xterm xdotool imagemagick",
            file=sys.stderr,
        )
        return 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    display = args.display
    typescript = out / "typescript"  # every byte the app wrote, escape codes included
    reports = []
    with tempfile.TemporaryDirectory(prefix="wsitui-sixel-") as tmp:
        data = Path(tmp) / "data"
        preview = prepare(data)
        shutil.copy(preview, out / "preview.png")
        xvfb = subprocess.Popen(
            ["Xvfb", display, "-screen", "0", "1600x1000x24", "-nolisten", "tcp"]
        )
        xterm: subprocess.Popen[bytes] | None = None
        try:
            time.sleep(1.5)
            env = {**os.environ, "DISPLAY": display, "TERM": "xterm-256color"}
            env.pop("TMUX", None)
            inner = [sys.executable, str(Path(__file__).resolve()), "--app", str(data)]
            xterm = subprocess.Popen(
                [
                    "xterm", "-ti", "vt340", "-geometry", f"{COLUMNS}x{ROWS}+0+0",
                    "-xrm", "XTerm*numColorRegisters: 256", "-b", str(BORDER),
                    "-e", "script", "-q", "-f", "-c", shlex.join(inner), str(typescript),
                ],
                env=env,
            )  # fmt: skip
            window = subprocess.run(
                ["xdotool", "search", "--sync", "--class", "xterm"],
                env=env, capture_output=True, text=True, check=True, timeout=30,
            ).stdout.split()[0]  # fmt: skip
            time.sleep(6)  # start-up: python, textual, the terminal probe
            grab(display, window, out / "main.png")
            keys(display, "Tab", "Return")
            time.sleep(2)
            grab(display, window, out / "detail.png")
            reports.append(
                compare(preview, out / "detail.png", last_sixel(typescript.read_bytes()))
            )
            keys(display, "p")
            time.sleep(2)
            grab(display, window, out / "fullscreen.png")
            reports.append(
                compare(preview, out / "fullscreen.png", last_sixel(typescript.read_bytes()))
            )
            keys(display, "Escape", "Escape")
            time.sleep(1)
            # The slide viewer on the job's slide, its tissue outline on top; then a pan.
            slide, tissue = data.parent / "demo.svs", preview.parent / "tissue.geojson"
            since = len(typescript.read_bytes())
            keys(display, "v")
            time.sleep(4)  # open, thumbnail, tiles
            grab(display, window, out / "viewer.png")
            where = largest_sixel(typescript.read_bytes(), since)
            reports.append(expected_view(slide, tissue, where, 0, out / "viewer_expected.png"))
            reports.append(compare_view(out / "viewer_expected.png", out / "viewer.png", where))
            since = len(typescript.read_bytes())
            keys(display, "Right")
            time.sleep(3)
            grab(display, window, out / "viewer_pan.png")
            where = largest_sixel(typescript.read_bytes(), since)
            if where is None:
                reports.append("viewer_pan.png: the pan drew no new picture")
            else:
                reports.append(
                    expected_view(slide, tissue, where, 1, out / "viewer_pan_expected.png")
                )
                reports.append(
                    compare_view(out / "viewer_pan_expected.png", out / "viewer_pan.png", where)
                )
            keys(display, "Escape", "q")
            time.sleep(1)
        finally:
            for proc in (xterm, xvfb):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
    print("\n".join(reports))
    print(
        f"wrote preview.png, main.png, detail.png, fullscreen.png, viewer*.png and typescript "
        f"to {out}: look at them (the image edge to edge, title line and one footer on the "
        "full screen, the viewer's pan moved the picture a quarter left)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
