"""The name of a sample slide's ground-truth sidecar: plain path logic with no numpy, so that
light commands (`wsitui status`, cohort globbing) can tell a sidecar from a slide without
loading the generator."""

from __future__ import annotations

from pathlib import Path

TRUTH_SUFFIX = ".truth.npz"  # the sidecar of NAME.svs is NAME.truth.npz: never a slide


def truth_path_for(slide: Path) -> Path:
    """Where the ground truth of a sample slide lives: 'x.svs' -> 'x.truth.npz'."""
    return slide.with_name(slide.stem + TRUTH_SUFFIX)
