"""`wsitui view` options, and --snapshot: one composed view written to a PNG (no Textual)."""

from __future__ import annotations

import argparse
import math
import sys

from wsitui.slides.errors import SlideError
from wsitui.slides.reader import open_slide
from wsitui.viewer.geojson import OverlayError
from wsitui.viewer.snapshot import (
    SnapshotRequest,
    check_snapshot_target,
    parse_region,
    write_snapshot,
)


def view_main(args: argparse.Namespace) -> int | None:
    """Check the options; with --snapshot write it. Returns an exit code, or None when the
    caller (wsitui.cli) should open the interactive viewer."""
    if not (math.isfinite(args.cache_mb) and args.cache_mb > 0):
        return _fail(f"--cache-mb {args.cache_mb:g} is invalid: give a size in MB above 0")
    if args.snapshot is not None:
        try:
            check_snapshot_target(args.snapshot, args.slide, args.cells, args.tissue)
            region = parse_region(args.region) if args.region else None
            frame, warnings = write_snapshot(
                SnapshotRequest(
                    slide=args.slide,
                    out=args.snapshot,
                    region=region,
                    width=args.width,
                    cells=args.cells,
                    tissue=args.tissue,
                    cache_mb=args.cache_mb,
                )
            )
        except (SlideError, OverlayError, ValueError, OSError) as exc:
            return _fail(str(exc))
        for w in warnings:
            print(f"wsitui view: warning: {w}", file=sys.stderr)
        h, w = frame.rgb.shape[:2]
        print(f"{args.snapshot}: {w}x{h} px, level {frame.level}, cells {frame.cells_mode}")
        return 0
    if args.region is not None or args.width is not None:
        return _fail("--region and --width go with --snapshot OUT.png")
    # Before the screen takes the terminal: what cannot work at all is one line here.
    try:
        open_slide(args.slide).close()  # the header only
    except SlideError as exc:
        return _fail(str(exc))
    for what, path in (("cells", args.cells), ("tissue", args.tissue)):
        if path is not None and not path.is_file():
            return _fail(f"{what} file '{path}' does not exist; check the path")
    return None


def no_terminal_line(missing: str) -> int:
    """The screen run without a terminal (from a script or cron: it drew escape codes into a
    pipe and waited for keys): one line naming what is not one and --snapshot."""
    verb = "are" if " and " in missing else "is"
    return _fail(
        f"the viewer needs a terminal, and {missing} {verb} not one; write one view to a "
        "PNG with --snapshot OUT.png [--region X,Y,W,H]"
    )


def _fail(message: str) -> int:
    print(f"wsitui view: {' '.join(message.split())}", file=sys.stderr)
    return 2
