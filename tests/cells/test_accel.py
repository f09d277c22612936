"""GPU acceleration logic, on CPU: batch size under a simulated memory limit, precision choice
with a faked F1 check, out-of-memory retries with a fake model, GPU turns with a faked device
count, and the device path with the shipped model. No GPU exists here: CUDA memory, a CUDA
out-of-memory and the device count are the things faked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from wsitui.jobs.segment_cells.accel import (
    F1_TOLERANCE,
    GpuTurns,
    OomRetry,
    accelerate,
    auto_batch_size,
    choose_precision,
    label_agreement,
    measured_batch_size,
)
from wsitui.models.errors import ModelError

torch = pytest.importorskip("torch")

GiB = 1 << 30


class FakeGpu:
    """A GPU of `limit` bytes: a batch of B tiles takes fixed + B x per_tile, or raises CUDA's
    out-of-memory past the limit (torch.cuda.OutOfMemoryError exists in CPU builds too)."""

    def __init__(self, limit: int, per_tile: int, fixed: int) -> None:
        self.limit, self.per_tile, self.fixed = limit, per_tile, fixed
        self.peak = 0
        self.calls: list[int] = []
        self.pixel_size = 0.5

    def predict(self, batch: np.ndarray) -> np.ndarray:
        need = self.fixed + len(batch) * self.per_tile
        self.calls.append(len(batch))
        if need > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.peak = max(self.peak, need)
        return batch[..., 0].astype(np.int32) + 1  # a result that depends on each tile

    # CudaMemory
    def free(self) -> int:
        return self.limit

    def peak_during(self, fn: Callable[[], object]) -> int:
        self.peak = 0
        fn()
        return self.peak


def tiles(n: int, side: int = 8) -> np.ndarray:
    return np.stack([np.full((side, side, 3), i, np.uint8) for i in range(n)])


# ---- batch size --------------------------------------------------------------------------------
def test_auto_batch_fills_free_memory_and_no_more() -> None:
    assert auto_batch_size(10 * GiB, GiB, 0, headroom=1.0) == 10
    assert auto_batch_size(10 * GiB, GiB, 4 * GiB, headroom=1.0) == 6
    assert auto_batch_size(10 * GiB, GiB, 0, headroom=0.5) == 5
    assert auto_batch_size(GiB // 2, GiB) == 1  # never below one tile
    assert auto_batch_size(1000 * GiB, GiB, cap=32) == 32


@pytest.mark.parametrize("limit_gib", [3, 8, 20])
def test_measured_batch_runs_within_a_simulated_memory_limit(limit_gib: int) -> None:
    gpu = FakeGpu(limit=limit_gib * GiB, per_tile=GiB // 2, fixed=GiB)
    batch, info = measured_batch_size(gpu, tiles(4), gpu)
    assert info["per_tile_bytes"] == GiB // 2 and info["fixed_bytes"] == GiB
    assert batch >= 2
    assert GiB + batch * (GiB // 2) <= limit_gib * GiB  # the chosen batch fits
    gpu.predict(tiles(batch))  # and runs without out-of-memory
    assert GiB + 2 * batch * (GiB // 2) > 0.8 * limit_gib * GiB  # it is not needlessly small


def test_measured_batch_is_one_when_two_tiles_do_not_fit() -> None:
    gpu = FakeGpu(limit=GiB + GiB // 2, per_tile=GiB // 2, fixed=GiB)
    batch, _ = measured_batch_size(gpu, tiles(4), gpu)
    assert batch == 1


# ---- precision ---------------------------------------------------------------------------------
def test_auto_precision_falls_back_to_fp32_when_the_f1_check_fails() -> None:
    checked: list[str] = []

    def check(p: str) -> float:
        checked.append(p)
        return 1.0 - 2 * F1_TOLERANCE

    choice = choose_precision("auto", "cuda:0", check)
    assert choice.precision == "fp32" and checked == ["bf16"]
    assert "fp32" in choice.reason and choice.agreement_f1 == pytest.approx(0.99)


def test_auto_precision_takes_bf16_when_its_cells_agree() -> None:
    choice = choose_precision("auto", "cuda", lambda p: 0.999)
    assert choice.precision == "bf16"


def test_auto_precision_is_fp32_on_cpu_without_running_a_check() -> None:
    def check(p: str) -> float:
        raise AssertionError("no check on CPU")

    assert choose_precision("auto", "cpu", check).precision == "fp32"
    assert choose_precision("auto", "cuda", check, lambda p: False).precision == "fp32"


def test_a_requested_precision_runs_as_asked_or_is_refused_in_one_line() -> None:
    assert choose_precision("fp16", "cuda", lambda p: 0.0).precision == "fp16"
    with pytest.raises(ModelError, match="precision 'bf16' is not supported on cuda"):
        choose_precision("bf16", "cuda", lambda p: 1.0, lambda p: False)


def test_label_agreement_counts_instances_matched_at_iou_one_half() -> None:
    ref = np.zeros((20, 20), np.int32)
    ref[2:6, 2:6], ref[10:14, 10:14] = 1, 2
    assert label_agreement(ref, ref * 7) == 1.0  # ids differ, instances are the same
    moved = ref.copy()
    moved[moved == 2] = 0
    moved[16:20, 16:20] = 5  # one instance lost, another elsewhere
    assert label_agreement(ref, moved) == pytest.approx(0.5)
    assert label_agreement(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0


# ---- out of memory -----------------------------------------------------------------------------
def test_a_cuda_out_of_memory_on_a_batch_retries_smaller_instead_of_failing() -> None:
    gpu = FakeGpu(limit=GiB + 3 * GiB // 2, per_tile=GiB // 2, fixed=GiB)  # 3 tiles fit
    emptied: list[int] = []
    runner = OomRetry(gpu.predict, batch_size=8, on_oom=lambda: emptied.append(1))
    batch = tiles(8)
    out = runner.predict(batch)
    np.testing.assert_array_equal(out, batch[..., 0].astype(np.int32) + 1)  # every tile, in order
    assert runner.batch_size == 2 and runner.retries == 2 and len(emptied) == 2
    gpu.calls.clear()
    runner.predict(tiles(4))  # later batches keep the size that fitted
    assert gpu.calls == [2, 2]


def test_out_of_memory_on_one_tile_and_other_errors_still_fail() -> None:
    runner = OomRetry(FakeGpu(limit=GiB, per_tile=GiB, fixed=GiB).predict, batch_size=4)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        runner.predict(tiles(4))

    def broken(batch: np.ndarray) -> np.ndarray:
        raise ValueError("not memory")

    with pytest.raises(ValueError):
        OomRetry(broken, batch_size=4).predict(tiles(4))


def test_the_model_layers_out_of_memory_error_is_retried_too() -> None:
    calls: list[int] = []

    def predict(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        if len(batch) > 1:
            raise ModelError("out of memory on a batch of 4 tile(s) of 8x8 on cuda: use ...")
        return batch[..., 0].astype(np.int32)

    assert OomRetry(predict, batch_size=4).predict(tiles(4)).shape == (4, 8, 8)
    assert calls == [4, 2, 1, 1, 1, 1]


# ---- several GPUs ------------------------------------------------------------------------------
def test_jobs_go_to_the_gpus_in_turn() -> None:
    turns = GpuTurns()
    assert [turns.assign("cuda", 3, lambda: True) for _ in range(4)] == [
        "cuda:0",
        "cuda:1",
        "cuda:2",
        "cuda:0",
    ]
    assert turns.assign("auto", 2, lambda: True) in ("cuda:0", "cuda:1")
    assert turns.assign("cuda:1", 4, lambda: True) == "cuda:1"  # explicit is kept
    assert turns.assign("cpu", 4, lambda: True) == "cpu"
    assert turns.assign("cuda", 1, lambda: True) == "cuda"  # one GPU: as before
    assert turns.assign("auto", 2, lambda: False) == "auto"  # torch without CUDA


def test_gpu_capacity_is_the_number_of_devices_found(tmp_path: Path, monkeypatch) -> None:
    from wsitui.jobs.segment_cells import executor as segment_cells
    from wsitui.jobs.segment_cells.executor import SegmentCellsExecutor
    from wsitui.models import device

    gpus = tmp_path / "gpus"
    for i in range(4):
        (gpus / f"0000:0{i}:00.0").mkdir(parents=True)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert device.cuda_device_count(gpus) == 4
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    assert device.cuda_device_count(gpus) == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert device.cuda_device_count(gpus) == 0
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(segment_cells, "cuda_device_count", lambda: device.cuda_device_count(gpus))
    assert SegmentCellsExecutor().capacity() == {"gpu": 4}


# ---- the device path with the shipped model (on CPU) -------------------------------------------
@pytest.fixture(scope="module")
def shipped():
    from wsitui.models import ModelCache, resolve

    cache = ModelCache(cpu_threads=1)
    yield cache.get(resolve("shipped"), "cpu")  # the InstanSeg path (the default is classical)
    cache.close()


def _tissue_tiles(n: int, side: int = 128) -> np.ndarray:
    rng = np.random.default_rng(3)
    out = np.empty((n, side, side, 3), np.uint8)
    out[...] = (235, 200, 225)  # pink background
    yy, xx = np.mgrid[:side, :side]
    for t in range(n):
        for _ in range(12):
            cy, cx = rng.integers(10, side - 10, 2)
            r = rng.integers(4, 8)
            out[t][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = (110, 60, 150)  # purple nuclei
    return out


def test_on_cpu_fp32_the_job_runs_the_models_own_predict_unchanged(shipped, monkeypatch) -> None:
    monkeypatch.setenv("WSITUI_SPLIT_NETWORK", "0")  # the split network off (test_fast_network)
    acc = accelerate(shipped, precision="auto", batch_size="auto", default_batch=1, probe=_no_probe)
    assert acc.runner.predict_fn == shipped.predict and acc.batch_size == 1
    info = acc.manifest()
    assert info["precision"] == "fp32" and info["batch_size"] == 1 and info["device"] == "cpu"
    assert info["network_runtime"].startswith("torchscript")


def test_the_device_path_gives_the_models_own_instances_and_records_what_ran(shipped) -> None:
    x = _tissue_tiles(2)
    ref = shipped.predict(x)
    assert ref.max() > 3  # the tiles hold nuclei
    acc = accelerate(shipped, precision="bf16", batch_size=2, default_batch=1, probe=_no_probe)
    info = acc.manifest()
    assert info["precision"] == "bf16" and info["batch_size"] == 2
    assert info["pinned_memory"] is False  # pinned memory is for CUDA copies only
    from wsitui.jobs.segment_cells.accel import DeviceSegmenter

    fp32 = DeviceSegmenter(shipped, "fp32").predict(x)
    np.testing.assert_array_equal(fp32, ref)  # the device path is the model's own forward
    got = acc.predict(x)
    assert got.shape == ref.shape and got.dtype == np.int32
    # bf16 on CPU runs; how well it agrees with fp32 is what `auto` checks on a GPU


def test_window_for_nuclei_of_at_most_max_nucleus_um(shipped) -> None:
    from wsitui.jobs.segment_cells.accel import window_for

    assert window_for(shipped, 20.0, 0.5) == 24  # 40-px nuclei: a 48-px square, not 64
    assert window_for(shipped, 30.0, 0.5) is None  # the model's default is already smaller
    assert window_for(object(), 20.0, 0.5) is None  # not an InstanSeg export: left alone


def test_the_smaller_window_keeps_every_cell_one_to_one(shipped, sample_slide: Path) -> None:
    """#19's rule for a CPU speed-up: cells matched one-to-one with today's (IoU >= 0.9) for
    >= 99 %, here on tissue tiles of a generated slide, through the job's own seam."""

    from wsitui.jobs.segment_cells.accel import first_tiles, window_for
    from wsitui.jobs.segment_cells.params import SegmentCellsParams
    from wsitui.jobs.segment_cells.plan import plan_tiles
    from wsitui.jobs.tissue_mask.mask import compute_tissue_mask
    from wsitui.slides.reader import open_slide

    params = SegmentCellsParams()
    with open_slide(sample_slide) as reader:
        tm = compute_tissue_mask(reader)
        plan = plan_tiles(
            reader,
            slide_mpp=reader.mpp or params.assumed_mpp,
            model_px=shipped.pixel_size,
            tile_size=params.tile_size,
            max_nucleus_um=params.max_nucleus_um,
            tissue=(tm.mask, tm.downsample),
        )
        x = first_tiles(reader, plan, 3)
    window = window_for(shipped, params.max_nucleus_um, plan.model_px)
    acc = accelerate(
        shipped,
        precision="auto",
        batch_size=1,
        default_batch=1,
        probe=_no_probe,
        window_size=window,
    )
    assert window is not None and window < 32 and acc.manifest()["window_size"] == window
    matched = total = 0
    for tile in x:
        ref = shipped.predict(tile[None])[0]
        got = acc.predict(tile[None])[0]
        n_ref, n_got = len(np.unique(ref)) - 1, len(np.unique(got)) - 1
        matched += round(label_agreement(ref, got, iou=0.9) * (n_ref + n_got) / 2)
        total += n_ref
    assert total > 20  # the tiles hold nuclei
    assert matched >= 0.99 * total


def _no_probe() -> np.ndarray:
    raise AssertionError("no probe needed")


def test_a_job_whose_batch_runs_out_of_cuda_memory_finishes_every_tile(
    tmp_path: Path, sample_slide: Path
) -> None:
    """Through the tile pipeline: batches of 4 where only 2 fit are retried in halves, and every
    tile gets its shard (the job does not fail)."""
    from wsitui.jobs.common.shards import ShardStore
    from wsitui.jobs.segment_cells.accel import Accelerated, PrecisionChoice
    from wsitui.jobs.segment_cells.backends.local import run_tiles, shard_key
    from wsitui.jobs.segment_cells.plan import plan_tiles
    from wsitui.slides.reader import open_slide

    class TwoFit:
        pixel_size, device, is_classical = 0.5, "cuda:0", False

        def predict(self, batch: np.ndarray) -> np.ndarray:
            if len(batch) > 2:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 4 GiB")
            labels = np.zeros(batch.shape[:3], np.int32)
            labels[:, 20:30, 20:30] = 1  # one square nucleus per tile
            return labels

        def manifest(self) -> dict[str, object]:
            return {"device": self.device}

    fake = TwoFit()
    acc = Accelerated(fake, OomRetry(fake.predict, 4), PrecisionChoice("fp32", "test"), 4)
    with open_slide(sample_slide) as reader:
        plan = plan_tiles(
            reader,
            slide_mpp=reader.mpp or 0.5,
            model_px=0.5,
            tile_size=256,
            max_nucleus_um=20,
            tissue=None,
        )
        shards = ShardStore(tmp_path / "shards", {"test": 1})
        run_tiles(
            reader,
            plan,
            acc,
            shards,
            batch_size=4,
            min_area_px=1,
            read_threads=2,
            on_progress=lambda p: None,
            check_cancel=lambda: None,
        )
    assert len(plan.tiles) > 4
    assert all(shards.has(shard_key(t)) for t in plan.tiles)
    info = acc.manifest()
    assert info["batch_size"] == 4 and info["batch_size_final"] == 2 and info["oom_retries"] == 1


class RecordingModel:
    """An InstanSeg-like model that records the post-processing each call got (a test double:
    what matters here is what reaches the model, not its labels)."""

    is_classical = False
    device = "cpu"
    pixel_size = 0.5

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def predict(self, batch: np.ndarray, postprocess: dict | None = None) -> np.ndarray:
        self.calls.append(dict(postprocess or {}))
        return np.zeros(batch.shape[:3], np.int32)


@pytest.mark.parametrize("nuclear_check", ["auto", "off"])
def test_an_out_of_domain_tile_gets_tightened_post_processing_through_the_job_runner(
    nuclear_check: str,
) -> None:
    from wsitui.jobs.segment_cells.backends.tile import predictor
    from wsitui.jobs.segment_cells.domain import TIGHT

    model = RecordingModel()
    acc = accelerate(
        model,
        precision="auto",
        batch_size="auto",
        default_batch=1,
        probe=_no_probe,
        window_size=28,
        nuclear_check=nuclear_check,
    )
    predictor(acc, odd=False)(tiles(1))
    predictor(acc, odd=True)(tiles(1))
    plain, tight = model.calls
    assert plain.get("window_size") == 28
    assert {k: tight[k] for k in TIGHT} == TIGHT  # it reaches the model, over the job's window
    if nuclear_check == "off":  # the job's own settings stay under the tile's
        assert plain["nuclear_check"] == tight["nuclear_check"] == "off"
