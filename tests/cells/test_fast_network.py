"""The network split from instanseg's post-processing on CPU (`fastnet.py`): the job's cells do
not move (issue #19: matched one-to-one with the whole TorchScript call's at IoU >= 0.9 for
>= 99 %), bf16 runs only when asked or checked, and the model's own call runs (and the manifest
says why) wherever the split is not available."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.cells.specs import every_tile
from wsitui.jobs.common.shards import ShardStore
from wsitui.jobs.segment_cells import accel, fastnet
from wsitui.jobs.segment_cells.accel import GpuTurns, accelerate, matched_share
from wsitui.jobs.segment_cells.backends.local import LocalBackend
from wsitui.jobs.segment_cells.params import SegmentCellsParams
from wsitui.slides.reader import open_slide

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def cache_and_source():
    from wsitui.models import ModelCache, resolve

    cache = ModelCache(cpu_threads=2)  # the job's budget on a 2-core machine
    yield cache, resolve("shipped")
    cache.close()


def _job_labels(
    cache: Any, source: Any, slide: Path, tmp: Path, precision: str
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Labels per tile and the manifest's `model` of the job's own tile pipeline (8 tissue
    tiles of 256 px, two in flight) at `precision`."""
    params = SegmentCellsParams(model="shipped", device="cpu", precision=precision)
    backend = LocalBackend(cache, GpuTurns(), lambda: 0, source, params)
    model = backend.describe(lambda: None)
    seen: dict[str, np.ndarray] = {}
    with open_slide(slide) as reader:
        plan = every_tile(reader, model, params)
        mid = len(plan.tiles) // 2  # tissue in the middle of the slide
        plan = replace(plan, tiles=plan.tiles[max(0, mid - 4) : mid + 4])
        run = backend.run_tiles(
            reader,
            plan,
            ShardStore(tmp, {"p": 1}),
            min_area_px=params.min_area_um2 / plan.model_px**2,
            on_progress=lambda p: None,
            check_cancel=lambda: None,
            on_labels=lambda t, lab: seen.__setitem__(f"{t.col},{t.row}", np.array(lab)),
        )
    return seen, run.model


def _matched(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> tuple[int, int]:
    assert set(before) == set(after) and len(before) == 8
    matched = total = 0
    for key, ref in before.items():
        n_ref = len(np.unique(ref)) - 1
        matched += round(matched_share(ref, after[key]) * n_ref)
        total += n_ref
    return matched, total


def test_the_split_network_keeps_every_cell_fp32_and_bf16(
    tmp_path: Path, sample_slide: Path, cache_and_source, monkeypatch
) -> None:
    cache, source = cache_and_source
    monkeypatch.setenv(fastnet.ENV_OFF, "0")  # today's path: the model's own whole call
    before, info = _job_labels(cache, source, sample_slide, tmp_path / "a", "auto")
    assert info["network_runtime"].startswith("torchscript") and info["precision"] == "fp32"
    monkeypatch.delenv(fastnet.ENV_OFF)

    fp32, info = _job_labels(cache, source, sample_slide, tmp_path / "b", "auto")
    assert info["network_runtime"] == fastnet.FP32_RUNTIME
    assert info["precision"] == "fp32" and info["tiles_in_flight"] == 2
    assert "bf16 unchecked" in info["precision_reason"] or "no native" in info["precision_reason"]
    matched, total = _matched(before, fp32)
    assert total > 50  # the tiles hold nuclei
    assert matched >= 0.99 * total

    bf16, info = _job_labels(cache, source, sample_slide, tmp_path / "c", "bf16")
    assert info["network_runtime"] == fastnet.BF16_RUNTIME and info["precision"] == "bf16"
    assert info["tiles_in_flight"] == 2  # the split runner needs no lock: two tiles at once
    matched, total = _matched(before, bf16)
    assert matched >= 0.99 * total


class _Model:
    """A loaded-model double with a TorchScript module that is not an InstanSeg export."""

    is_classical = False
    device = "cpu"
    pixel_size = 0.5
    sha256 = ""

    def __init__(self) -> None:
        self._module = torch.jit.script(torch.nn.Identity())
        self.calls = 0

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.ones(batch.shape[:3], np.int32)

    def manifest(self) -> dict[str, object]:
        return {"device": self.device}


def _probe_never() -> np.ndarray:
    raise AssertionError("no check should read probe tiles here")


def test_a_model_that_cannot_split_runs_its_own_call_and_says_why(monkeypatch) -> None:
    model = _Model()
    acc = accelerate(model, precision="auto", batch_size=1, default_batch=1, probe=_probe_never)
    assert acc.runner.predict_fn == model.predict  # the model's own call, unchanged
    assert acc.manifest()["network_runtime"] == (
        "torchscript (the model's own call: not an InstanSeg_Torchscript export)"
    )
    monkeypatch.setenv(fastnet.ENV_OFF, "0")  # switched off: the same, for any model
    assert fastnet.split(model, "fp32") == (None, "WSITUI_SPLIT_NETWORK is off")


def test_a_split_that_would_change_instances_is_refused(cache_and_source, monkeypatch) -> None:
    """The build's own check: the split's labels on a probe tile against the whole call's."""
    cache, source = cache_and_source
    shipped = cache.get(source, "cpu")

    class Fresh:  # the shipped module loaded again: nothing cached for it yet
        normalization = shipped.normalization
        _module = torch.jit.load(str(shipped.path), map_location="cpu")

    good, why = fastnet.split(Fresh(), "fp32")
    assert good is not None and why == ""
    probe = torch.from_numpy(np.zeros((1, 3, 250, 250), np.float32))
    with torch.inference_mode():
        assert good.network(probe).shape[-2:] == (256, 256)  # padded as instanseg pads

    class Broken(Fresh):
        _module = torch.jit.load(str(shipped.path), map_location="cpu")

    real = fastnet.SplitForward.network
    monkeypatch.setattr(
        fastnet.SplitForward, "network", lambda self, x: real(self, x).flip(-1)
    )  # a runtime that got the network wrong
    bad, why = fastnet.split(Broken(), "fp32")
    assert bad is None and why.startswith("the split's instances differ")


def test_auto_on_cpu_checks_bf16_only_on_jobs_it_pays_on(monkeypatch) -> None:
    """`auto` on CPU: fp32 on small jobs without reading a probe tile, and on CPUs without
    native bf16; on a big job bf16 only when its cells match fp32's (>= 99 % at IoU 0.9)."""
    blob = np.zeros((1, 32, 32), np.int32)
    blob[0, 4:12, 4:12], blob[0, 20:28, 20:28] = 1, 2

    class Seg:
        def __init__(self, labels: np.ndarray) -> None:
            self.labels = labels

        def predict(self, x: np.ndarray) -> np.ndarray:
            return self.labels

    agree = accel._cpu_bf16_check(np.zeros((1, 32, 32, 3), np.uint8), Seg(blob), Seg(blob))
    assert agree.precision == "bf16" and agree.agreement_f1 == 1.0
    half = blob.copy()
    half[0, 20:28, 20:24] = 0  # one of two cells cut in half: IoU 0.5
    worse = accel._cpu_bf16_check(np.zeros((1, 32, 32, 3), np.uint8), Seg(blob), Seg(half))
    assert worse.precision == "fp32" and worse.agreement_f1 == 0.5
    assert "under 0.99" in worse.reason
    assert accel._cpu_bf16_check(np.zeros(0), Seg(blob), None).precision == "fp32"


def test_auto_on_cpu_stays_fp32_on_a_small_job_or_without_bf16(
    monkeypatch, cache_and_source
) -> None:
    cache, source = cache_and_source
    model = cache.get(source, "cpu")
    monkeypatch.setattr(fastnet, "cpu_has_bf16", lambda: True)
    small = accelerate(
        model, precision="auto", batch_size=1, default_batch=1, probe=_probe_never, tiles=8
    )
    assert small.precision.precision == "fp32" and "under 100" in small.precision.reason
    monkeypatch.setattr(fastnet, "cpu_has_bf16", lambda: False)
    big = accelerate(
        model, precision="auto", batch_size=1, default_batch=1, probe=_probe_never, tiles=999
    )
    assert big.precision.precision == "fp32" and "no native bf16" in big.precision.reason
    assert big.manifest()["network_runtime"] == fastnet.FP32_RUNTIME


def test_auto_on_cpu_takes_bf16_on_a_big_job_only_when_its_check_passes(
    monkeypatch, cache_and_source, sample_slide: Path
) -> None:
    from wsitui.jobs.segment_cells.accel import first_tiles

    cache, source = cache_and_source
    model = cache.get(source, "cpu")
    monkeypatch.setattr(fastnet, "cpu_has_bf16", lambda: True)
    params = SegmentCellsParams()
    with open_slide(sample_slide) as reader:
        plan = every_tile(reader, model, params)
        mid = len(plan.tiles) // 2
        plan = replace(plan, tiles=plan.tiles[mid : mid + 2])
        tissue = first_tiles(reader, plan, 2)  # the job's first tiles: generated tissue

    def auto(probe: np.ndarray) -> dict[str, Any]:
        acc = accelerate(
            model, precision="auto", batch_size=1, default_batch=1, probe=lambda: probe, tiles=999
        )
        return acc.manifest()

    info = auto(tissue)
    assert info["precision"] == "bf16" and info["network_runtime"] == fastnet.BF16_RUNTIME
    assert info["precision_matched_share"] >= 0.99 and "matched" in info["precision_reason"]
    # A check bf16 cannot pass (a bar over 100 %): the job keeps fp32, and says why.
    monkeypatch.setattr(accel, "CPU_MATCH_SHARE", 1.01)
    info = auto(tissue)
    assert info["precision"] == "fp32" and info["network_runtime"] == fastnet.FP32_RUNTIME
    assert "under 1.01" in info["precision_reason"]
