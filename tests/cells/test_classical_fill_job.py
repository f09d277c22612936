"""SEGMENT_CELLS with the classical fill (wsitui/models/classical_fill.py): the shipped model's
own setting (on) by default, off on request, recorded in the manifest, the same on the Dask
workers; a resumed job never mixes tiles segmented with and without it; the param refused in
one line when wrong."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.cells.specs import real_tumour_slide, shipped_manifest
from wsitui.jobs.segment_cells.params import SegmentCellsParams
from wsitui.models import classical_fill

pytestmark = pytest.mark.anyio


async def test_the_fill_is_the_shipped_models_default_recorded_and_off_on_request(tmp_path):
    pytest.importorskip("torch")
    slide = real_tumour_slide(tmp_path)
    on = await shipped_manifest(tmp_path / "on", slide)
    off = await shipped_manifest(tmp_path / "off", slide, classical_fill="off")
    assert on["params"]["classical_fill"] == "auto"
    assert on["model"]["postprocess"]["classical_fill"] == "on"
    assert on["model"]["postprocess"]["classical_fill_version"] == classical_fill.VERSION
    assert off["model"]["postprocess"]["classical_fill"] == "off"
    assert on["cells"] > off["cells"] > 0


def test_a_wrong_setting_is_refused_in_one_line():
    with pytest.raises(ValidationError, match="classical_fill"):
        SegmentCellsParams(classical_fill="yes")
    assert SegmentCellsParams().classical_fill == "auto"


def test_a_resumed_job_reuses_no_tile_segmented_without_the_fill(tmp_path):
    """The shards' plan records `classical_fill` only when it is on: shards a job wrote before
    the fill existed (or with it off) never count as the same plan as a job that fills."""
    from types import SimpleNamespace

    from wsitui.jobs.segment_cells.executor import _CellSegmentation
    from wsitui.jobs.segment_cells.model_info import ModelInfo

    slide = tmp_path / "s.svs"
    slide.write_bytes(b"x")
    reader = SimpleNamespace(path=slide, dimensions=(100, 100))
    geometry = SimpleNamespace(tile_size=512)
    plan = SimpleNamespace(scale=1.0, geometry=geometry, overlap=40, band=0)

    def key(model: ModelInfo, setting: str) -> dict:
        seg = _CellSegmentation.__new__(_CellSegmentation)
        seg.params = SegmentCellsParams(classical_fill=setting)
        return seg._shard_plan(reader, plan, model)

    fills = ModelInfo("m", "folder", 0.5, "x", "cpu", False, info={"classical_fill": True})
    bare = ModelInfo("m", "folder", 0.5, "x", "cpu", False, info={"classical_fill": False})
    classical = ModelInfo("classical", "classical", 0.5, "c", "cpu", True)
    # The fill's rules and classical version: a job resumed after they changed redoes its tiles.
    assert key(fills, "auto")["classical_fill"] == classical_fill.VERSION == "fill-2+classical-8"
    assert "classical_fill" not in key(fills, "off")  # as every shard written before the fill
    assert key(fills, "off") == key(bare, "auto") != key(bare, "on")
    assert "classical_fill" not in key(classical, "on")


async def test_dask_workers_fill_the_same(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("distributed")
    slide = real_tumour_slide(tmp_path)
    local = await shipped_manifest(tmp_path / "local", slide)
    dask = await shipped_manifest(tmp_path / "dask", slide, backend="dask")
    assert dask["model"]["postprocess"]["classical_fill"] == "on"
    assert dask["cells"] == local["cells"]
    off = await shipped_manifest(tmp_path / "off", slide, backend="dask", classical_fill="off")
    assert off["model"]["postprocess"]["classical_fill"] == "off"
    assert off["cells"] < dask["cells"]


def test_the_model_and_the_job_read_whether_the_fill_is_on_by_one_rule(monkeypatch):
    """`TorchModel.fill_on` (what the model's predict runs) and `fill_in_effect` (what the
    manifest and the shard key say) both ask `classical_fill.in_effect`: they cannot drift."""
    from types import SimpleNamespace

    from wsitui.jobs.segment_cells.model_info import ModelInfo, fill_in_effect
    from wsitui.models import classical_fill
    from wsitui.models.loaded import TorchModel

    for own in (True, False):
        info = ModelInfo("m", "folder", 0.5, "x", "cpu", False, info={"classical_fill": own})
        loaded = SimpleNamespace(is_classical=False, classical_fill=own)
        for setting in classical_fill.MODES:
            want = own if setting == "auto" else setting == "on"
            assert TorchModel.fill_on(loaded, setting) is want  # type: ignore[arg-type]
            assert fill_in_effect(info, setting) == fill_in_effect(loaded, setting)
            assert fill_in_effect(info, setting) == ("on" if want else "off")
    with pytest.raises(ValueError, match="classical_fill 'yes' is unknown"):
        fill_in_effect(info, "yes")  # one line, as the model's own check
    # One place: a changed rule shows in both.
    monkeypatch.setattr(classical_fill, "in_effect", lambda setting, own: not own)
    assert TorchModel.fill_on(loaded, "auto") is True  # type: ignore[arg-type]
    assert fill_in_effect(info, "auto") == "on"
