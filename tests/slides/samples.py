"""Synthetic slides shared by the slide and job tests, generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsitui.slides.sample import write_sample_slide

SIZE = (4096, 3072)  # 16x12 TIFF tiles, levels 1/4/16: small enough to make in ~1 s
_made: dict[tuple[tuple[int, int], int], Path] = {}


def sample_slide_path(factory: pytest.TempPathFactory, size: tuple[int, int], seed: int) -> Path:
    key = (size, seed)
    if key not in _made:
        out = factory.mktemp(f"sample_{size[0]}x{size[1]}_s{seed}") / "sample.svs"
        write_sample_slide(out, size, seed)
        _made[key] = out
    return _made[key]
