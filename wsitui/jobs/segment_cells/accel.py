"""Running SEGMENT_CELLS at the speed of a GPU: batch size, precision, out-of-memory, devices.

Every decision is a pure function of numbers it is handed (free memory, measured peaks, an F1,
a device count), so it is tested on CPU (tests/cells/test_accel.py); the CUDA calls sit behind
`CudaMemory` and `DeviceSegmenter`, and torch is imported only when a device is touched.

- `auto_batch_size`: the largest batch whose measured memory fits the GPU's free memory.
- `choose_precision`: `auto` takes bf16 on CUDA only when its instances agree with fp32's on the
  job's own first tiles (F1 >= 1 - `F1_TOLERANCE`), else fp32.
- `OomRetry`: a CUDA out-of-memory on a batch re-runs it in halves (down to one tile) instead of
  failing the job; later batches keep the smaller size.
- `assign_gpu`: several GPUs: each job gets the next `cuda:N` in turn.
- `DeviceSegmenter`: pinned host memory, non-blocking copies, autocast at the chosen precision.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from wsitui.jobs.segment_cells.backends.protocol import Segmenter
from wsitui.jobs.segment_cells.backends.tile import takes_postprocess
from wsitui.jobs.segment_cells.malloc import release_free_memory
from wsitui.jobs.segment_cells.model_info import fill_in_effect
from wsitui.jobs.segment_cells.plan import CellPlan
from wsitui.jobs.segment_cells.source import read_tile
from wsitui.models.errors import ModelError
from wsitui.slides.reader import SlideReader

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
F1_TOLERANCE = 0.005  # a lower precision is used only when its instances agree this well
MATCH_IOU = 0.5  # an instance matches when IoU >= this
HEADROOM = 0.8  # share of free GPU memory a batch may take (the allocator fragments)
MAX_AUTO_BATCH = 32  # past this the GPU is fed; bigger batches only delay the first results
PROBE_TILES = 4  # the job's first tiles, used to measure memory and check precision
WINDOW_MARGIN = 1.2  # instanseg's window around a seed: 20 % beyond half the largest nucleus


# ---- batch size from free memory ---------------------------------------------------------------
def auto_batch_size(
    free_bytes: int,
    per_tile_bytes: int,
    fixed_bytes: int = 0,
    *,
    headroom: float = HEADROOM,
    cap: int = MAX_AUTO_BATCH,
) -> int:
    """The largest batch (1..cap) whose `fixed + B x per_tile` bytes fit `headroom` of free."""
    usable = free_bytes * headroom - fixed_bytes
    if per_tile_bytes <= 0:
        return cap
    return int(max(1, min(cap, usable // per_tile_bytes)))


def tile_memory(peak_at: Callable[[int], int]) -> tuple[int, int]:
    """(per-tile, fixed) bytes from the peak memory of a batch of 1 and of 2 tiles."""
    one, two = peak_at(1), peak_at(2)
    # A nearly flat curve (a cached workspace) is not free memory: count the whole batch of 1.
    per_tile = two - one if two - one > one // 8 else max(one, 1)
    return per_tile, max(one - per_tile, 0)


class CudaMemory(Protocol):
    """What batch sizing needs of a device (torch.cuda for real; a fake in the tests)."""

    def free(self) -> int: ...

    def peak_during(self, fn: Callable[[], object]) -> int: ...


class TorchCudaMemory:
    def __init__(self, device: str) -> None:
        import torch

        self._torch, self._device = torch, torch.device(device)

    def free(self) -> int:
        return int(self._torch.cuda.mem_get_info(self._device)[0])

    def peak_during(self, fn: Callable[[], object]) -> int:
        cuda = self._torch.cuda
        cuda.synchronize(self._device)
        cuda.empty_cache()
        base = cuda.memory_allocated(self._device)
        cuda.reset_peak_memory_stats(self._device)
        fn()
        cuda.synchronize(self._device)
        return int(cuda.max_memory_allocated(self._device) - base)


def measured_batch_size(
    segmenter: Segmenter,
    probe: np.ndarray,
    memory: CudaMemory,
    cap: int = MAX_AUTO_BATCH,
    batches_in_flight: int = 1,
) -> tuple[int, dict[str, int]]:
    """`auto` batch on a GPU: peaks of 1 and 2 probe tiles, then what free memory holds with
    `batches_in_flight` batches on the device at once (free memory split between them)."""
    tiles = np.concatenate([probe, probe])[:2] if len(probe) < 2 else probe[:2]

    def peak(n: int) -> int:
        return memory.peak_during(lambda: segmenter.predict(tiles[:n]))

    try:
        per_tile, fixed = tile_memory(peak)
    except Exception as exc:
        if not is_oom(exc):
            raise
        return 1, {"free_bytes": memory.free()}  # two tiles do not fit: one at a time
    free = memory.free()
    batch = auto_batch_size(free // max(1, batches_in_flight), per_tile, fixed, cap=cap)
    return batch, {"free_bytes": free, "per_tile_bytes": per_tile, "fixed_bytes": fixed}


# ---- precision ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PrecisionChoice:
    precision: str  # fp32 | bf16 | fp16: what runs
    reason: str
    agreement_f1: float | None = None  # the candidate's F1 against fp32 on the probe tiles


def choose_precision(
    requested: str,
    device: str,
    check: Callable[[str], float],
    supported: Callable[[str], bool] = lambda _p: True,
) -> PrecisionChoice:
    """`check(p)` -> F1 of precision `p`'s instances against fp32's on the probe tiles."""
    if requested not in PRECISIONS:
        raise ModelError(f"precision {requested!r} is unknown: use {', '.join(PRECISIONS)}")
    if requested != "auto":
        if requested != "fp32" and not supported(requested):
            raise ModelError(
                f"precision {requested!r} is not supported on {device}: use precision = 'auto' "
                "or 'fp32'"
            )
        return PrecisionChoice(requested, "requested")
    if not device.startswith("cuda"):
        return PrecisionChoice("fp32", f"auto on {device}: fp32 (lower precision pays on CUDA)")
    if not supported("bf16"):
        return PrecisionChoice("fp32", f"auto: bf16 is not supported on {device}")
    f1 = check("bf16")
    if f1 >= 1.0 - F1_TOLERANCE:
        return PrecisionChoice("bf16", f"auto: bf16 agrees with fp32 (F1 {f1:.4f})", f1)
    return PrecisionChoice(
        "fp32", f"auto: bf16 F1 {f1:.4f} against fp32 is under {1 - F1_TOLERANCE}: fp32", f1
    )


def label_agreement(ref: np.ndarray, other: np.ndarray, iou: float = MATCH_IOU) -> float:
    """Instance F1 of `other` against `ref` (int label images of one shape, 0 = background):
    pairs of instances with IoU >= `iou` (> 0.5 makes the pairing one-to-one)."""
    ref, other = np.asarray(ref, np.int64).ravel(), np.asarray(other, np.int64).ravel()
    ref_ids, ref_area = np.unique(ref[ref > 0], return_counts=True)
    oth_ids, oth_area = np.unique(other[other > 0], return_counts=True)
    if len(ref_ids) == 0 and len(oth_ids) == 0:
        return 1.0
    both = (ref > 0) & (other > 0)
    pairs, inter = np.unique(
        np.stack([ref[both], other[both]]), axis=1, return_counts=True
    )  # (2, P) label pairs and their overlap
    ra = ref_area[np.searchsorted(ref_ids, pairs[0])] if pairs.size else np.zeros(0)
    oa = oth_area[np.searchsorted(oth_ids, pairs[1])] if pairs.size else np.zeros(0)
    ious = inter / np.maximum(ra + oa - inter, 1)
    matched = int(np.count_nonzero(ious >= iou))  # at IoU > 0.5 a label has one partner
    total = len(ref_ids) + len(oth_ids)
    return 2.0 * matched / total if total else 1.0


# ---- the CPU side of a GPU job ---------------------------------------------------------------
NETWORK_ONLY = {"nuclear_check": "off", "classical_fill": "off"}  # the model call, no finishing
GPU_BATCHES_IN_FLIGHT = 2  # one batch's host work (normalise, pinned copy, labels back) overlaps
# the other's GPU work


@dataclass(frozen=True, slots=True)
class PipelineShape:
    """How many of each worker the tile pipeline (`backends/local.py`) runs."""

    inflight: int = 1  # batches on the model at once, one infer thread each
    queued: int = 0  # batches collected and waiting for a free infer thread
    extract_workers: int = 1  # threads tracing polygons and writing shards
    trace_processes: int = 0  # >0: the tracing itself in that many worker processes
    read_threads: int = 2  # threads reading tiles ahead


def gpu_pipeline(cpus: int) -> PipelineShape:
    """On a GPU the CPU side sets the pace (measured on one H200: the GPU idle ~75 % of the
    job with one batch at a time, one tracing thread and two readers): two batches on the
    device, one more collected and waiting, and the job's cores for reading and tracing
    (tracing in worker processes: its outline walk is Python and holds the GIL)."""
    cpus = max(1, cpus)
    return PipelineShape(
        inflight=GPU_BATCHES_IN_FLIGHT,
        queued=1,
        extract_workers=max(2, min(8, cpus - 4)),
        trace_processes=max(2, min(8, cpus - 4)),  # tracing is a Python walk: it holds the GIL
        read_threads=max(2, min(6, cpus // 3)),
    )


# ---- instanseg's window -----------------------------------------------------------------------
def window_for(model: Any, max_nucleus_um: float, model_px: float) -> int | None:
    """instanseg's `window_size` (half the side of the square it grows each instance in, model
    px) for nuclei at most `max_nucleus_um` across, when smaller than the model's own default
    (32); None keeps the default. Measured (README, "Where a tile's time goes"): 24 instead of 32
    cut post-processing CPU time per tile by ~15 % with every cell matched one-to-one."""
    default = getattr(getattr(model, "_module", None), "default_window_size", None)
    return window_size(default, max_nucleus_um, model_px)


def window_size(default: object, max_nucleus_um: float, model_px: float) -> int | None:
    """`window_for` from the model's default window (read from the loaded module, or from the
    file by `model_info` where the model is loaded elsewhere)."""
    if isinstance(default, bool) or not isinstance(default, int) or model_px <= 0:
        return None
    window = math.ceil(max_nucleus_um / model_px / 2 * WINDOW_MARGIN)
    return window if window < default else None


# ---- out of memory -----------------------------------------------------------------------------
def is_oom(exc: BaseException) -> bool:
    """A CUDA out-of-memory, raw from torch or as the model layer's one-line ModelError."""
    if isinstance(exc, ModelError):
        return str(exc).startswith("out of memory")
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return isinstance(exc, torch.cuda.OutOfMemoryError)


@dataclass(slots=True)
class OomRetry:
    """`predict` in chunks of `batch_size`; an out-of-memory halves the chunk and retries it.
    One tile that does not fit is the model layer's error (a smaller tile_size is the fix).
    `postprocess` given to `predict` (an out-of-domain tile's tightened settings) is handed to
    `predict_fn` as its `postprocess`, over the job's own."""

    predict_fn: Callable[..., np.ndarray]
    batch_size: int
    on_oom: Callable[[], None] = lambda: None  # e.g. torch.cuda.empty_cache
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def predict(self, batch: np.ndarray, postprocess: dict[str, Any] | None = None) -> np.ndarray:
        out: list[np.ndarray] = []
        i = 0
        while i < len(batch):
            n = min(self.batch_size, len(batch) - i)
            try:
                if postprocess is None:
                    out.append(self.predict_fn(batch[i : i + n]))
                else:
                    out.append(self.predict_fn(batch[i : i + n], postprocess=postprocess))
            except Exception as exc:
                if n <= 1 or not is_oom(exc):
                    raise
                self.on_oom()
                with self.lock:
                    self.batch_size = max(1, n // 2)
                    self.retries += 1
                continue
            i += n
        return np.concatenate(out) if len(out) > 1 else out[0]


# ---- several GPUs ------------------------------------------------------------------------------
class GpuTurns:
    """Round-robin over the GPUs: each job asking for `cuda` (or `auto` where CUDA runs) gets
    the next `cuda:N`; an explicit `cuda:N`, `cpu` or `mps` is kept."""

    def __init__(self) -> None:
        self._next = 0
        self._lock = threading.Lock()

    def assign(self, requested: str, count: int, cuda_usable: Callable[[], bool]) -> str:
        if count <= 1 or requested not in ("cuda", "auto"):
            return requested
        if requested == "auto" and not cuda_usable():
            return requested
        with self._lock:
            index = self._next % count
            self._next += 1
        return f"cuda:{index}"


def torch_cuda_usable() -> bool:
    import torch

    return bool(torch.cuda.is_available())


# ---- the device path ---------------------------------------------------------------------------
_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}


class DeviceSegmenter:
    """A loaded TorchScript model run on its device with pinned host memory, non-blocking
    host-to-device copies and autocast at `precision` (fp32: none). Same contract as
    `LoadedModel.predict` (uint8 (B, H, W, 3) -> int32 (B, H, W)); errors are ModelErrors."""

    def __init__(
        self,
        model: Any,
        precision: str = "fp32",
        postprocess: dict[str, Any] | None = None,
        call: Callable[..., Any] | None = None,
    ) -> None:
        import torch

        self._torch = torch
        self.model = model
        self.pixel_size = float(model.pixel_size)
        self.device = str(model.device)
        self.precision = precision
        self.pinned = self.device.startswith("cuda")
        # The bare TorchScript module: the model layer's own predict copies from pageable memory
        # and has no precision setting. (A later hunk in wsitui/models/loaded.py could expose it.)
        self._module = model._module
        self._extra = dict(postprocess or {})  # this job's, over the model's own defaults
        self._postprocess = {**(getattr(model, "postprocess", {}) or {}), **self._extra}
        self._normalization = getattr(model, "normalization", "percentile")
        # `call`: the module's call through another runtime (`fastnet.SplitForward`: the
        # network there, instanseg's post-processing as is); it sets its own precision.
        self._call = call

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "fp32" or self._call is not None:
            return contextlib.nullcontext()
        dtype = getattr(self._torch, _DTYPES[self.precision])
        kind = "cuda" if self.device.startswith("cuda") else self.device
        return self._torch.autocast(device_type=kind, dtype=dtype)

    def predict(self, batch: np.ndarray, postprocess: dict[str, Any] | None = None) -> np.ndarray:
        """Through the model's own `predict` (its input checks and its nuclear check, the same
        on every path), with this runner's forward pass; `postprocess` over the job's own."""
        extra = {**self._extra, **(postprocess or {})}
        if hasattr(self.model, "_forward"):
            return np.asarray(self.model.predict(batch, postprocess=extra, forward=self._forward))
        kwargs = {**self._postprocess, **(postprocess or {})}
        kwargs.pop("nuclear_check", None)
        kwargs.pop("classical_fill", None)
        return self._forward(batch, kwargs)

    def finish(
        self, rgb: np.ndarray, labels: np.ndarray, postprocess: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, tuple[int, int] | None]:
        """One tile's labels from `predict(..., NETWORK_ONLY)` after the model layer's nuclear
        check and classical fill, as `predict` with `postprocess` runs them (its flags from
        the model's `finish_flags`): (labels, the check's (detections, dropped) or None)."""
        from wsitui.models.finish import finish_tile

        check, fill = self.model.finish_flags({**self._extra, **(postprocess or {})})
        return finish_tile(rgb, labels, check=check, fill=fill)

    def _forward(self, batch: np.ndarray, kwargs: dict[str, Any]) -> np.ndarray:
        from wsitui.models.normalize import normalize_batch

        torch = self._torch
        x = torch.from_numpy(normalize_batch(batch, self._normalization))
        with torch.inference_mode():
            try:
                if self.pinned:
                    x = x.pin_memory().to(self.device, non_blocking=True)
                    x = x.contiguous(memory_format=torch.channels_last)
                with self._autocast():
                    out = (self._call or self._module)(x, **kwargs)
                labels = out[:, 0].float().to("cpu").numpy()
            except Exception as exc:
                if is_oom(exc):
                    raise ModelError(
                        f"out of memory on a batch of {batch.shape[0]} tile(s) of "
                        f"{batch.shape[2]}x{batch.shape[1]} on {self.device}: use a smaller "
                        "tile_size or batch, or device = 'cpu'"
                    ) from None
                line = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]
                raise ModelError(f"model failed on a tile at {self.precision}: {line}") from None
        return labels.astype(np.int32)

    def empty_cache(self) -> None:
        if self.pinned:
            self._torch.cuda.empty_cache()


@dataclass(slots=True)
class Accelerated:
    """What the pipeline runs (`predict`) and what the manifest records (`manifest()`)."""

    model: Any  # the LoadedModel
    runner: OomRetry
    precision: PrecisionChoice
    batch_size: int  # the first batch size
    memory: dict[str, int] = field(default_factory=dict)
    pinned: bool = False
    window_size: int | None = None  # instanseg's, when set smaller than the model's default
    nuclear_check: str = "auto"  # the model layer's nuclear-evidence check (InstanSeg only)
    classical_fill: str = "auto"  # the model layer's classical fill (InstanSeg only)
    # What ran the network on CPU (`fastnet`), or why the model's own whole call ran.
    network_runtime: str = ""
    lock_free: bool = False  # the runner may be called from several threads at once
    # On a GPU: the model layer's per-tile check and fill (CPU work), apart from the network
    # (`predict_network`, then `finish` on the pipeline's tracing threads, `backends/local.py`).
    finisher: Callable[..., tuple[np.ndarray, tuple[int, int] | None]] | None = None

    @property
    def pixel_size(self) -> float:
        return float(self.model.pixel_size)

    @property
    def device(self) -> str:
        return str(self.model.device)

    @property
    def sha256(self) -> str:
        return str(getattr(self.model, "sha256", ""))

    def predict(self, batch: np.ndarray, postprocess: dict[str, Any] | None = None) -> np.ndarray:
        """The job's model call; `postprocess` (instanseg's kwargs, e.g. an out-of-domain tile's
        tightened settings, `domain.TIGHT`) over the job's own, for this call."""
        return self.runner.predict(batch, postprocess)

    def predict_network(
        self, batch: np.ndarray, postprocess: dict[str, Any] | None = None
    ) -> np.ndarray:
        """`predict` without the model layer's nuclear check and classical fill (`finish`
        runs them, tile by tile, where `finisher` is set)."""
        return self.runner.predict(batch, {**(postprocess or {}), **NETWORK_ONLY})

    def finish(
        self, rgb: np.ndarray, labels: np.ndarray, postprocess: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, tuple[int, int] | None]:
        """One tile's `predict_network` labels checked and filled as `predict` with
        `postprocess` does: (labels, the check's (detections, dropped) or None)."""
        if self.finisher is None:
            raise RuntimeError("finish: this job's model call checks and fills its own tiles")
        return self.finisher(rgb, labels, postprocess)

    def manifest(self) -> dict[str, object]:
        info = dict(self.model.manifest())
        info.update(
            precision=self.precision.precision,
            precision_reason=self.precision.reason,
            batch_size=self.batch_size,
            batch_size_final=self.runner.batch_size,
            oom_retries=self.runner.retries,
            pinned_memory=self.pinned,
        )
        if self.window_size is not None:
            info["window_size"] = self.window_size
        if not self.model.is_classical:
            post = info.get("postprocess")
            info["postprocess"] = {
                **(post if isinstance(post, dict) else {}),
                "nuclear_check": self.nuclear_check,
            }
            info["postprocess"]["classical_fill"] = fill_in_effect(self.model, self.classical_fill)
        if self.precision.agreement_f1 is not None:  # on CPU: the share matched at IoU 0.9
            key = "precision_matched_share" if self.device == "cpu" else "precision_agreement_f1"
            info[key] = round(self.precision.agreement_f1, 5)
        if self.memory:
            info["gpu_memory"] = dict(self.memory)
        if self.network_runtime:
            info["network_runtime"] = self.network_runtime
        return info


def accelerate(
    model: Any,
    *,
    precision: str,
    batch_size: int | str,
    default_batch: int,
    probe: Callable[[], np.ndarray],
    window_size: int | None = None,
    memory: Callable[[str], CudaMemory] = TorchCudaMemory,
    batches_in_flight: int = 1,
    nuclear_check: str = "auto",
    tiles: int = 0,
    mask_threshold: float | None = None,
    classical_fill: str = "auto",
) -> Accelerated:
    """Settle precision and batch size for one job. On CPU with `auto`/`fp32` the model's own
    predict runs unchanged; on CUDA (or a requested lower precision) `DeviceSegmenter` runs.
    `probe()` -> the job's first tiles (uint8 (N, H, W, 3)), read only when a check needs them;
    `window_size` (see `window_for`) is passed to instanseg's post-processing;
    `batches_in_flight`: batches the pipeline keeps on the device at once (`auto` batch size
    fits that many in free memory); `nuclear_check` (`auto` | `off`): the model layer's check
    of each detection's nuclear evidence (`wsitui/models/nuclear_gate.py`), InstanSeg only;
    `mask_threshold`: instanseg's, over the model's default, when the job sets it;
    `classical_fill` (`auto` | `on` | `off`): the model layer's classical fill, InstanSeg only;
    `tiles`: the job's planned tiles (on CPU, `auto` checks bf16 only on jobs it pays on)."""
    device = str(model.device)
    on_cuda = device.startswith("cuda")
    if not model.is_classical and device == "cpu" and precision in ("auto", "fp32", "bf16"):
        batch = default_batch if batch_size == "auto" else int(batch_size)
        on_cpu = _on_cpu(
            model,
            precision,
            batch,
            probe,
            window_size,
            nuclear_check,
            tiles,
            mask_threshold,
            classical_fill,
        )
        if on_cpu is not None:
            return on_cpu
    if model.is_classical or (not on_cuda and precision in ("auto", "fp32")):
        choice = PrecisionChoice("fp32", "classical" if model.is_classical else f"{device}: fp32")
        batch = default_batch if batch_size == "auto" else int(batch_size)
        if model.is_classical:
            return Accelerated(model, OomRetry(model.predict, batch), choice, batch)
        return _own_call(
            model, batch, choice, window_size, nuclear_check, "", mask_threshold, classical_fill
        )
    extra = job_postprocess(window_size, nuclear_check, mask_threshold, classical_fill)
    tiles: list[np.ndarray] = []

    def probe_tiles() -> np.ndarray:
        if not tiles:
            tiles.append(probe())
        return tiles[0]

    runners = {"fp32": DeviceSegmenter(model, "fp32", extra)}

    def runner(p: str) -> DeviceSegmenter:
        if p not in runners:
            runners[p] = DeviceSegmenter(model, p, extra)
        return runners[p]

    def check(p: str) -> float:
        x = probe_tiles()
        ref, got = runners["fp32"].predict(x), runner(p).predict(x)
        return float(np.mean([label_agreement(r, g) for r, g in zip(ref, got, strict=True)]))

    choice = choose_precision(precision, device, check, _supported(device))
    seg = runner(choice.precision)
    mem: dict[str, int] = {}
    if batch_size != "auto":
        batch = int(batch_size)
    elif on_cuda:
        batch, mem = measured_batch_size(
            seg, probe_tiles(), memory(device), batches_in_flight=batches_in_flight
        )
    else:
        batch = default_batch
    runner_ = OomRetry(seg.predict, batch, seg.empty_cache)
    return Accelerated(
        model,
        runner_,
        choice,
        batch,
        mem,
        seg.pinned,
        window_size,
        nuclear_check=nuclear_check,
        classical_fill=classical_fill,
        # On CUDA the check and fill leave the infer threads (they hold the next batch back
        # from the GPU) for the pipeline's tracing threads; the same labels.
        finisher=seg.finish if on_cuda and hasattr(model, "finish_flags") else None,
    )


# ---- CPU: the network through a faster runtime (fastnet.py) -------------------------------------
AUTO_BF16_MIN_TILES = 100  # `auto` checks bf16 on CPU only on jobs with this many tiles: the check
# (probe tiles in fp32 and bf16) costs ~8 tile-times; bf16 saves ~0.3 of one a tile (README)
CPU_MATCH_IOU = 0.9  # issue #19's rule for a CPU speed-up: cells matched one-to-one at IoU 0.9
CPU_MATCH_SHARE = 0.99  # ... for at least this share of the fp32 cells


def matched_share(ref: np.ndarray, other: np.ndarray, iou: float = CPU_MATCH_IOU) -> float:
    """Share of `ref`'s instances matched one-to-one by `other`'s at IoU >= `iou` (> 0.5)."""
    n_ref = len(np.unique(ref[ref > 0]))
    n_other = len(np.unique(other[other > 0]))
    if n_ref == 0:
        return 1.0 if n_other == 0 else 0.0
    return label_agreement(ref, other, iou) * (n_ref + n_other) / 2 / n_ref


def _on_cpu(
    model: Any,
    precision: str,
    batch: int,
    probe: Callable[[], np.ndarray],
    window_size: int | None,
    nuclear_check: str,
    tiles: int,
    mask_threshold: float | None = None,
    classical_fill: str = "auto",
) -> Accelerated | None:
    """A CPU job with the network split from instanseg's post-processing (`fastnet.split`):
    frozen, channels-last fp32 by default (the same labels, ~27 % less CPU a tile), bf16 when
    asked or when `auto` checked it on this job's first tiles. None: the model's own whole
    call runs (`accelerate`'s path before the split); the reason is in the manifest."""
    from wsitui.jobs.segment_cells.fastnet import cpu_has_bf16, split

    fp32, why = split(model, "fp32")
    if fp32 is None:
        if precision == "bf16":
            return None  # autocast over the whole call, as on any device
        choice = PrecisionChoice("fp32", "cpu: fp32")
        runtime = f"torchscript (the model's own call: {why})"
        return _own_call(
            model,
            batch,
            choice,
            window_size,
            nuclear_check,
            runtime,
            mask_threshold,
            classical_fill,
        )
    extra = job_postprocess(window_size, nuclear_check, mask_threshold, classical_fill)
    segs = {"fp32": DeviceSegmenter(model, "fp32", extra, call=fp32)}

    def seg(p: str) -> DeviceSegmenter | None:
        if p not in segs:
            runner, _why = split(model, p)
            if runner is None:
                return None
            segs[p] = DeviceSegmenter(model, p, extra, call=runner)
        return segs[p]

    if precision == "fp32":
        choice = PrecisionChoice("fp32", "requested")
    elif precision == "bf16":
        choice = PrecisionChoice("bf16", "requested")
    elif not cpu_has_bf16():
        choice = PrecisionChoice("fp32", "auto on cpu: no native bf16 (avx512_bf16 / AMX)")
    elif tiles < AUTO_BF16_MIN_TILES:
        choice = PrecisionChoice(
            "fp32", f"auto on cpu: {tiles} tiles, under {AUTO_BF16_MIN_TILES} (bf16 unchecked)"
        )
    else:
        choice = _cpu_bf16_check(probe(), segs["fp32"], seg("bf16"))
    chosen = seg(choice.precision)
    if chosen is None:  # bf16 asked but its split failed: autocast over the whole call
        return None
    return Accelerated(
        model,
        OomRetry(chosen.predict, batch),
        choice,
        batch,
        window_size=window_size,
        nuclear_check=nuclear_check,
        classical_fill=classical_fill,
        network_runtime=(chosen._call.runtime if chosen._call is not None else ""),
        lock_free=True,
    )


def _cpu_bf16_check(
    x: np.ndarray, fp32: DeviceSegmenter, bf16: DeviceSegmenter | None
) -> PrecisionChoice:
    """`auto` on CPU: bf16 when, on the probe tiles, its cells match fp32's one-to-one at IoU
    >= 0.9 for >= 99 % (issue #19's rule); the worst tile's share is recorded."""
    if bf16 is None:
        return PrecisionChoice("fp32", "auto on cpu: bf16 network unavailable")
    # Tile by tile: a batch of 4 would hold 4 tiles' activations at once (peak RSS).
    shares = [matched_share(fp32.predict(t[None])[0], bf16.predict(t[None])[0]) for t in x]
    release_free_memory()  # this thread's arena kept the check's tensors (malloc.py)
    worst = float(min(shares)) if shares else 1.0
    if worst >= CPU_MATCH_SHARE:
        return PrecisionChoice(
            "bf16", f"auto on cpu: bf16 matched {worst:.4f} of fp32's cells at IoU 0.9", worst
        )
    return PrecisionChoice(
        "fp32",
        f"auto on cpu: bf16 matched {worst:.4f} of fp32's cells at IoU 0.9, under "
        f"{CPU_MATCH_SHARE}: fp32",
        worst,
    )


def job_overrides(
    window_size: int | None,
    nuclear_check: str,
    mask_threshold: float | None = None,
    classical_fill: str = "auto",
) -> dict[str, Any]:
    """What a job sets over the model's own post-processing defaults, and only that: its
    nuclear check and classical fill when not `auto`, instanseg's window and mask threshold
    when set (the model's own predict and the Dask workers take these)."""
    extra: dict[str, Any] = {}
    if nuclear_check != "auto":
        extra["nuclear_check"] = nuclear_check
    if classical_fill != "auto":
        extra["classical_fill"] = classical_fill
    if window_size is not None:
        extra["window_size"] = window_size
    if mask_threshold is not None:
        extra["mask_threshold"] = mask_threshold
    return extra


def job_postprocess(
    window_size: int | None,
    nuclear_check: str,
    mask_threshold: float | None = None,
    classical_fill: str = "auto",
) -> dict[str, Any]:
    """A job's post-processing settings over the model's own defaults, as every runner that
    calls the module itself passes them: its nuclear check always, and `job_overrides`."""
    return {
        "nuclear_check": nuclear_check,
        **job_overrides(window_size, nuclear_check, mask_threshold, classical_fill),
    }


def _own_call(
    model: Any,
    batch: int,
    choice: PrecisionChoice,
    window_size: int | None,
    nuclear_check: str,
    network_runtime: str = "",
    mask_threshold: float | None = None,
    classical_fill: str = "auto",
) -> Accelerated:
    """The loaded model's own `predict` (one whole TorchScript call) with this job's
    post-processing settings: the CPU path where the network is not split."""
    extra = job_overrides(window_size, nuclear_check, mask_threshold, classical_fill)
    predict = _with_postprocess(model, extra) if extra else model.predict
    return Accelerated(
        model,
        OomRetry(predict, batch),
        choice,
        batch,
        window_size=window_size,
        nuclear_check=nuclear_check,
        classical_fill=classical_fill,
        network_runtime=network_runtime,
    )


def _with_postprocess(model: Any, extra: dict[str, Any]) -> Callable[..., np.ndarray]:
    """`model.predict` with `extra` post-processing, and a call's own `postprocess` over it,
    when it takes any (a test double may not)."""
    if not takes_postprocess(model.predict):
        return model.predict  # type: ignore[no-any-return]

    def predict(batch: np.ndarray, postprocess: dict[str, Any] | None = None) -> np.ndarray:
        return model.predict(batch, postprocess={**extra, **(postprocess or {})})  # type: ignore[no-any-return]

    return predict


def first_tiles(reader: SlideReader, plan: CellPlan, n: int = PROBE_TILES) -> np.ndarray:
    """The job's first `n` planned tiles (uint8 (n, S, S, 3)): what memory and precision are
    measured on. A plan without tiles gives one blank tile."""
    if not plan.tiles:
        return np.full((1, plan.input_size, plan.input_size, 3), 255, np.uint8)
    return np.stack([read_tile(reader, plan, t).rgb for t in plan.tiles[:n]])


def _supported(device: str) -> Callable[[str], bool]:
    def ok(p: str) -> bool:
        import torch

        if p == "fp32":
            return True
        if device.startswith("cuda"):
            if p == "bf16":
                return bool(torch.cuda.is_bf16_supported())
            return True
        return device == "cpu"  # CPU autocast runs bf16 and fp16 (slowly on most CPUs)

    return ok
