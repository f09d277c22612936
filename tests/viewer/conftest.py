from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.viewer.truth_cells import write_cells_geojson, write_tissue_geojson
from wsitui.slides.sample import load_truth, write_sample_slide

SIZE = (4096, 3072)  # levels 4096, 1024, 256 px wide


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sample slide with cells and tissue GeoJSON made from its truth (made once)."""
    d = tmp_path_factory.mktemp("viewer")
    slide = d / "s.svs"
    write_sample_slide(slide, size=SIZE, seed=1)
    truth = load_truth(slide)
    write_cells_geojson(truth.nuclei, d / "cells.geojson")
    write_tissue_geojson(truth.tissue, truth.tissue_downsample, d / "tissue.geojson")
    return d


@pytest.fixture(autouse=True)
def stable_terminal_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TEXTUAL_THEME", raising=False)
    yield
    time.tzset()
