"""SEGMENT_CELLS with the nuclear-evidence check (wsitui/models/nuclear_gate.py): on by default
for an InstanSeg model, off on request, recorded in the manifest with what it dropped; its
param refused in one line when wrong."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.cells.specs import real_tumour_slide, shipped_manifest
from wsitui.jobs.segment_cells.params import SegmentCellsParams

pytestmark = pytest.mark.anyio


async def test_the_check_is_on_by_default_recorded_and_off_on_request(tmp_path):
    pytest.importorskip("torch")
    slide = real_tumour_slide(tmp_path)
    on = await shipped_manifest(tmp_path / "on", slide)
    off = await shipped_manifest(tmp_path / "off", slide, nuclear_check="off")
    check = on["model"]["nuclear_check"]
    assert on["params"]["nuclear_check"] == "auto"
    assert on["model"]["postprocess"]["nuclear_check"] == "auto"
    assert check["mode"] == "auto" and check["tiles"] == on["tiles"]["processed"] > 0
    assert 0 < check["dropped"] < check["detections"]
    assert off["model"]["postprocess"]["nuclear_check"] == "off"
    assert off["model"]["nuclear_check"]["dropped"] == 0
    assert off["cells"] > on["cells"]


def test_a_wrong_setting_is_refused_in_one_line():
    with pytest.raises(ValidationError, match="nuclear_check"):
        SegmentCellsParams(nuclear_check="on")
    assert SegmentCellsParams().nuclear_check == "auto"


async def test_dask_workers_run_the_same_check_and_report_what_it_dropped(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("distributed")
    slide = real_tumour_slide(tmp_path)
    local = await shipped_manifest(tmp_path / "local", slide)
    dask = await shipped_manifest(tmp_path / "dask", slide, backend="dask")
    assert dask["backend"] == "dask" and dask["model"]["postprocess"]["nuclear_check"] == "auto"
    assert dask["model"]["nuclear_check"] == local["model"]["nuclear_check"]
    assert dask["model"]["nuclear_check"]["dropped"] > 0
    assert dask["cells"] == local["cells"]
    off = await shipped_manifest(tmp_path / "off", slide, backend="dask", nuclear_check="off")
    assert off["model"]["postprocess"]["nuclear_check"] == "off"
    assert off["model"]["nuclear_check"]["dropped"] == 0
    assert off["cells"] > dask["cells"]
