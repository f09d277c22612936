"""instanseg's one TorchScript call split in two on CPU: the network (`fcn`) through a faster
runtime, the post-processing instanseg's own.

An exported InstanSeg model (`InstanSeg_Torchscript`) runs its network and all of its
post-processing in one TorchScript `forward`. On CPU the network is ~60 % of a tile and runs
~30 % cheaper frozen (batch norm folded into the convolutions) on channels-last tensors, and
~50 % cheaper in bf16 where the CPU has bf16 instructions (measured: README, "Where a tile's
time goes (CPU)"). So `SplitForward` runs

1. what `forward` does before the network (clamp the input to [-2, 3], instanseg's padding),
2. the network, frozen, channels-last, fp32 or bf16 (autocast),
3. instanseg's post-processing: a scripted copy of the installed instanseg's own
   `InstanSeg_Torchscript` whose `fcn` hands back the network output of step 2 (`_Given`),
   with the model's own pixel classifier and post-processing defaults.

Step 3 is only instanseg's when the model's `forward` is the installed instanseg's: `split`
compares the two (TorchScript code, local names set aside) and returns None (the model's own
whole call runs, the seam) when they differ, when instanseg or its exporter cannot be imported,
when anything in the build fails, or when `WSITUI_SPLIT_NETWORK=0`. The reason is kept for the
manifest (`network_runtime`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import re
import threading
import warnings
import weakref
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# `WSITUI_SPLIT_NETWORK=0`: the model's own whole TorchScript call (today's path before the
# split; what benchmarks/bench_cells.py --network torchscript runs as the baseline).
ENV_OFF = "WSITUI_SPLIT_NETWORK"
FP32_RUNTIME = "frozen channels-last fp32"
BF16_RUNTIME = "frozen channels-last bf16 (autocast)"

_NAMES = re.compile(r"\b([A-Za-z_][A-Za-z_]*?)\d+\b")  # TorchScript numbers its local names
_CACHE_LOCK = threading.Lock()


def _code_shape(code: str) -> str:
    """TorchScript code with local-name numbering removed (two scripts of the same source
    number their variables differently)."""
    return _NAMES.sub(r"\1", code)


class SplitForward:
    """`module(x, **kwargs)` with the network through `runtime`; same contract (normalised
    float (B, 3, H, W) in, float labels (B, 1, H, W) out). Safe from several threads: each
    thread gets its own post-processing copy (it holds the network output as an attribute)."""

    def __init__(self, network: Any, post: Any, precision: str, runtime: str) -> None:
        import torch

        self._torch = torch
        self._network = network
        self._post_template = post
        self._local = threading.local()
        self.precision = precision
        self.runtime = runtime

    def _post(self) -> Any:
        post = getattr(self._local, "post", None)
        if post is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                post = self._local.post = copy.deepcopy(self._post_template)
        return post

    def network(self, x: Any) -> Any:
        """The network output for `x` as `forward` computes it (padded input, padded output)."""
        from instanseg.utils.tiling import _instanseg_padding

        torch = self._torch
        x = torch.clamp(x, -2, 3)  # forward's own clamp_max_(x, 3), clamp_min_(x, -2)
        padded, _pad = _instanseg_padding(x, extra_pad=0)
        padded = padded.contiguous(memory_format=torch.channels_last)
        if self.precision == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = self._network(padded)
            return out.float().contiguous()
        return self._network(padded).contiguous()

    def __call__(self, x: Any, **kwargs: Any) -> Any:
        out = self.network(x)
        post = self._post()
        post.fcn.out = out
        try:
            return post(x, **kwargs)  # instanseg's forward: its fcn hands back `out`
        finally:
            post.fcn.out = self._torch.zeros(0)  # the tile's activations are not kept


_PARTS: dict[int, tuple[Any, Any] | str] = {}  # id(module) -> (frozen network, post) or why not


def split(module: Any, precision: str = "fp32") -> tuple[SplitForward | None, str]:
    """(a SplitForward for this loaded TorchScript module at `precision`, "") or (None, why
    not). The frozen network and the post-processing are built once per module (~1-2 s) and
    kept while the module lives."""
    if precision not in ("fp32", "bf16"):
        return None, f"no split at {precision}"
    if os.environ.get(ENV_OFF, "").strip().lower() in ("0", "off", "no", "false"):
        return None, f"{ENV_OFF} is off"
    key = id(module)
    with _CACHE_LOCK:
        parts = _PARTS.get(key)
        if parts is None:
            try:
                parts = _build(module)
            except Exception as exc:  # any failure: the model's own whole call runs
                line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
                parts = f"split failed: {line}"
            if isinstance(parts, str):
                log.info("network runs inside the model's own TorchScript call: %s", parts)
            _PARTS[key] = parts
            # A model closed and another loaded at the same address must not reuse this.
            with contextlib.suppress(TypeError):  # not weak-referenceable (a test double)
                weakref.finalize(module, _PARTS.pop, key, None)
    if isinstance(parts, str):
        return None, parts
    runtime = BF16_RUNTIME if precision == "bf16" else FP32_RUNTIME
    return SplitForward(parts[0], parts[1], precision, runtime), ""


def _build(module: Any) -> tuple[Any, Any] | str:
    import torch
    from torch import nn

    try:
        from instanseg.utils.loss.instanseg_loss import InstanSeg_Torchscript
    except Exception as exc:  # instanseg's training deps missing, or another version
        return f"instanseg's exporter cannot be imported ({type(exc).__name__})"
    if getattr(module, "original_name", "") != "InstanSeg_Torchscript":
        return "not an InstanSeg_Torchscript export"
    if not hasattr(module, "fcn") or not hasattr(module, "pixel_classifier"):
        return "the model has no fcn / pixel_classifier"

    class _Given(nn.Module):
        """A stand-in `fcn`: hands back the network output set on it."""

        def __init__(self) -> None:
            super().__init__()
            self.out = torch.zeros(0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out

    post = InstanSeg_Torchscript.__new__(InstanSeg_Torchscript)
    nn.Module.__init__(post)
    post.fcn = _Given()
    post.pixel_classifier = module.pixel_classifier
    for name in ("cells_and_nuclei", "pixel_size", "dim_coords", "dim_seeds", "n_sigma"):
        setattr(post, name, getattr(module, name))
    post.index_dtype = torch.long
    post.params = {}
    for name in (
        "target_segmentation",
        "min_size",
        "mask_threshold",
        "peak_distance",
        "seed_threshold",
        "overlap_threshold",
        "mean_threshold",
        "fg_threshold",
        "window_size",
        "cleanup_fragments",
        "resolve_cell_and_nucleus",
    ):
        setattr(post, f"default_{name}", getattr(module, f"default_{name}"))
    with warnings.catch_warnings():  # torch 2.9+ calls jit.script/freeze deprecated; they run
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(post.eval())
    if _code_shape(scripted.forward.code) != _code_shape(module.forward.code):
        return "the model's forward is not the installed instanseg's: its own call runs"
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        network = torch.jit.freeze(copy.deepcopy(module.fcn).eval())
    return network, scripted


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 natively (avx512_bf16 or AMX): elsewhere bf16 is emulated and
    slower than fp32."""
    try:
        with Path("/proc/cpuinfo").open(encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        return False
    return False
