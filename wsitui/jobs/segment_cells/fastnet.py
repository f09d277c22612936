"""instanseg's one TorchScript call split in two on CPU: the network (`fcn`) through a faster
runtime, the post-processing the model's own code.

An exported InstanSeg model (`InstanSeg_Torchscript`) runs its network and all of its
post-processing in one TorchScript `forward`. On CPU the network is ~60 % of a tile and runs
~30 % cheaper frozen (batch norm folded into the convolutions) on channels-last tensors, and
~50 % cheaper in bf16 where the CPU has bf16 instructions (measured: README, "Where a tile's
time goes (CPU)"). So `SplitForward` runs

1. what `forward` does before the network: clamp the input to [-2, 3] and pad it (reflect) to a
   multiple of 16 (instanseg's `_instanseg_padding`),
2. the network, frozen, channels-last, fp32 or bf16 (autocast: the network only),
3. the model's own `forward` on a private copy of the model (saved and loaded again: its own
   types, so the loaded model is untouched) whose graph reads the network output from the
   `args` dict the forward already takes, instead of calling `fcn`. Every post-processing step
   is the model's own compiled code, whatever instanseg version exported it.

`split` returns None (the model's own whole call runs: the seam) when the model is not an
`InstanSeg_Torchscript` export, when its graph does not have the one `fcn` call and `args` dict
this relies on, when the split's instances differ from the whole call's on a probe tile (purple
nuclei drawn on pink, 250 px: the padding is exercised), when anything in the build fails, or
when `WSITUI_SPLIT_NETWORK=0`. The reason is kept for the manifest (`network_runtime`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# `WSITUI_SPLIT_NETWORK=0`: the model's own whole TorchScript call (the path before the split;
# the baseline `benchmarks/bench_cells.py --alternate` runs against).
ENV_OFF = "WSITUI_SPLIT_NETWORK"
FP32_RUNTIME = "frozen channels-last fp32"
BF16_RUNTIME = "frozen channels-last bf16 (autocast)"

_CACHE_LOCK = threading.Lock()


class SplitForward:
    """`module(x, **kwargs)` with the network through `runtime`; same contract (normalised
    float (B, 3, H, W) in, float labels (B, 1, H, W) out). Safe from several threads: the
    network output travels in the call's own `args`."""

    def __init__(self, network: Any, post: Any, precision: str, runtime: str) -> None:
        import torch

        self._torch = torch
        self._network = network
        self._post = post
        self.precision = precision
        self.runtime = runtime

    def network(self, x: Any) -> Any:
        """The network output for `x` as `forward` computes it (padded input, padded output)."""
        torch = self._torch
        x = torch.clamp(x, -2, 3)  # forward's own clamp_max_(x, 3), clamp_min_(x, -2)
        h, w = int(x.shape[-2]), int(x.shape[-1])
        pad_h, pad_w = -h % PAD_MULTIPLE, -w % PAD_MULTIPLE  # instanseg's _instanseg_padding
        if pad_h or pad_w:
            x = torch.nn.functional.pad(x, [0, pad_w, 0, pad_h], mode="reflect")
        x = x.contiguous(memory_format=torch.channels_last)
        if self.precision == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = self._network(x)
            return out.float().contiguous()
        return self._network(x).contiguous()

    def __call__(self, x: Any, **kwargs: Any) -> Any:
        args = dict(kwargs.pop("args", None) or {})
        args[OUTPUT_KEY] = self.network(x)
        return self._post(x, args=args, **kwargs)  # the model's own forward, minus `fcn`


PAD_MULTIPLE = 16  # instanseg's _instanseg_padding(min_dim=16)
OUTPUT_KEY = "wsitui_network_output"  # the `args` entry the post-processing graph reads
_PARTS: dict[int, tuple[Any, Any] | str] = {}  # id(module) -> (frozen network, post) or why not


def split(model: Any, precision: str = "fp32") -> tuple[SplitForward | None, str]:
    """(a SplitForward for this loaded model's TorchScript module at `precision`, "") or (None,
    why not). The frozen network and the post-processing copy are built and checked once per
    module (~1 s) and kept while the module lives."""
    if precision not in ("fp32", "bf16"):
        return None, f"no split at {precision}"
    if os.environ.get(ENV_OFF, "").strip().lower() in ("0", "off", "no", "false"):
        return None, f"{ENV_OFF} is off"
    module = getattr(model, "_module", None)
    if module is None:
        return None, "no TorchScript module"
    key = id(module)
    with _CACHE_LOCK:
        parts = _PARTS.get(key)
        if parts is None:
            try:
                parts = _build(module, getattr(model, "normalization", "percentile"))
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


def _build(module: Any, normalization: str) -> tuple[Any, Any] | str:
    import io

    import torch

    if getattr(module, "original_name", "") != "InstanSeg_Torchscript":
        return "not an InstanSeg_Torchscript export"
    if not hasattr(module, "fcn"):
        return "the model has no fcn"
    buf = io.BytesIO()
    with warnings.catch_warnings():  # torch 2.9+ calls jit.save "deprecated"; it runs
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(module, buf)  # a private copy: its own types, graphs and code
    buf.seek(0)
    post = torch.jit.load(buf, map_location="cpu")
    why = _read_network_from_args(post)
    if why:
        return why
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.9+: "deprecated"; it runs
        network = torch.jit.freeze(post.fcn.eval())
    fast = SplitForward(network, post, "fp32", FP32_RUNTIME)
    why = _same_instances(module, fast, normalization)
    return why or (network, post)


def _read_network_from_args(post: Any) -> str:
    """Rewrite `post`'s forward graph: `args["wsitui_network_output"]` where it called
    `self.fcn(x)`. "" when done, else why not (the graph is left as it was)."""
    import torch

    graph = post.forward.graph
    fcn_type = post.fcn._c._type()

    def walk(block: Any) -> Any:
        for node in block.nodes():
            yield node
            for sub in node.blocks():
                yield from walk(sub)

    uses = [
        n
        for n in walk(graph)
        if n.kind() == "prim::CallMethod" and n.inputsAt(0).type() == fcn_type
    ]
    if len(uses) != 1 or uses[0].s("name") != "forward":
        return f"the model's forward calls its network {len(uses)} times, not once"
    call = uses[0]
    if call.owningBlock().owningNode() is not None:
        return "the model's network call is inside a branch"
    gets = [
        n
        for n in graph.nodes()
        if n.kind() == "aten::get" and n.inputsAt(0).type().str() == "Dict(str, Tensor)"
    ]
    dicts = {n.inputsAt(0).debugName() for n in gets}
    if len(dicts) != 1 or not all(n.isBefore(call) for n in gets):
        return "the model's forward has no args dict read before its network"
    graph.setInsertPoint(call)
    key = graph.insertConstant(OUTPUT_KEY)
    read = graph.create("aten::__getitem__", [gets[0].inputsAt(0), key], 1)
    read.output().setType(torch._C.TensorType.get())
    graph.insertNode(read)
    call.output().replaceAllUsesWith(read.output())
    call.destroy()
    torch._C._jit_pass_dce(graph)
    torch._C._jit_pass_lint(graph)
    return ""


PROBE_SIDE = 250  # not a multiple of 16: the padding is part of the check


def probe_tile(side: int = PROBE_SIDE, seed: int = 3) -> Any:
    """uint8 (1, side, side, 3): purple nuclei (radius 5-8 px) on a pink background."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = np.empty((1, side, side, 3), np.uint8)
    out[...] = (235, 200, 225)
    yy, xx = np.mgrid[:side, :side]
    for _ in range(20):
        cy, cx = rng.integers(15, side - 15, 2)
        r = int(rng.integers(5, 9))
        out[0][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = (110, 60, 150)
    return out


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch's CPU threads at 1 on this thread while inside (its setting restored after): the
    probe's two small calls (~50 operators each, most of them tiny) on the job's two threads
    took 1.9-2.1 CPU s, the second OpenMP thread spinning between operators; on one ~1 s
    (README, "Where a tile's time goes (CPU)"). OpenMP keeps the setting per thread."""
    import torch

    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before != 1:
            torch.set_num_threads(before)


def _same_instances(module: Any, fast: SplitForward, normalization: str) -> str:
    """ "" when the split's labels on the probe tile match the whole call's (>= 99 % of its
    instances one-to-one at IoU >= 0.9), else why not."""
    import numpy as np
    import torch

    from wsitui.jobs.segment_cells.accel import matched_share
    from wsitui.models.normalize import normalize_batch

    x = torch.from_numpy(normalize_batch(probe_tile(), normalization))
    with torch.inference_mode(), one_torch_thread():
        ref = module(x.clone())[0, 0].numpy().astype(np.int32)
        got = fast(x.clone())[0, 0].numpy().astype(np.int32)
    share = matched_share(ref, got)
    if share < 0.99:
        return f"the split's instances differ from the model's own call ({share:.3f} matched)"
    return ""


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
