"""A TorchScript model file checked and read without executing it.

A TorchScript `.pt` is a zip of code: `code/**.py` (TorchScript source, compiled at load), and
pickles (`data.pkl`, `constants.pkl`, `*.debug_pkl`) whose objects run their `__setstate__` at
load. `torch.jit.load` refuses Python pickles, but TorchScript code itself can call
`torch.from_file(path, shared=True, ...)` (which creates or overwrites any file) at load or in
`forward`. So before any `torch.jit.load` the archive's code is parsed here (it is plain Python
syntax) and every operation it names must be one an InstanSeg export uses:

- `torch.X` / `ops.NS.X`: the ALLOWED set below, measured from the shipped model and fresh
  `wsitui.models.train.export`s (whatever the network's size), plus pure tensor math;
- a bare call: a TorchScript builtin (int, float, getattr, ...) or a name the same file assigns;
- a method: anything but the few names of file, process or network operations;
- no imports, no `torch.classes` (C++ custom classes: process groups, RPC, ...);
- pickles: only the globals a TorchScript module uses (its own `__torch__` classes, tensors).

`read_info` gives what `wsitui model list` shows (pixel size, channels) from `data.pkl`, through
an unpickler that builds inert stand-ins (no torch, nothing of the archive runs).
"""

from __future__ import annotations

import ast
import io
import pickle
import pickletools
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsitui.models.errors import ModelError


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Measured: the union of every `torch.X` and `ops.prim.X` in the code of the shipped model and of
# `train.export` on untrained InstanSeg_UNet networks of layers [8, 16] and [16, 32, 64]
# (instanseg-torch 0.1.x): 96 torch.X names (+ 6 ops.prim.X below), the same for every size.
_MEASURED = _words(
    """
    __and__ __is__ __isnot__ __not__ __or__ _convolution _set_item _sparse_mm _sparse_sum _unique2
    add add_ all any append arange argsort batch_norm bitwise_and bitwise_not bitwise_xor
    bucketize cat ceil clamp_ clamp_max_ clamp_min_ clone copy_ count_nonzero cpu device dim div
    eq equal expand eye flatten flip format full ge get gt index index_put_ is_grad_enabled isin
    isinf isnan item len linear linspace lt max max_pool2d max_pool2d_with_indices meshgrid min
    minimum mul ne neg nonzero numel numpy_T ones ones_like pad permute ravel relu_ reshape
    scatter_reduce_ select set_grad_enabled sigmoid size slice sparse_coo_tensor squeeze stack
    sub sum t tensor to to_dense unique_dim unsqueeze upsample_nearest2d view zeros zeros_like
    """
)
# Pure tensor math other InstanSeg versions and exports may use (no I/O in any of these).
_PURE = _words(
    """
    abs abs_ acos adaptive_avg_pool2d addmm argmax argmin asin atan atan2 avg_pool2d baddbmm bmm
    cdist chunk clamp clamp_max clamp_min contiguous conv2d conv_transpose2d cos cumsum
    detach div_ dropout einsum elu empty empty_like exp expand_as fill_ floor floor_divide fmod
    full_like gather gelu group_norm hardtanh index_select instance_norm interpolate is_cuda
    layer_norm leaky_relu log log_softmax logical_and logical_not logical_or masked_fill matmul
    mean mm mul_ narrow new_zeros norm pow prod rand randn relu remainder repeat
    round rsqrt scatter scatter_add scatter_add_ sign silu sin softmax sort split sqrt std
    sub_ tanh topk transpose tril triu unbind unique upsample_bilinear2d var where
    """
)
ALLOWED = _MEASURED | _PURE
ALLOWED_OPS = _words(
    "prim.RaiseException prim.device prim.dtype prim.is_mps prim.max prim.min prim.is_cuda "
    "prim.layout prim.data"
)
BUILTINS = _words(
    "annotate bool float int str getattr hasattr isinstance print range len list dict tuple "
    "enumerate zip min max abs round unchecked_cast uninitialized"
)
# Named in the one-line refusal (every other name outside the allowlist is refused too).
FILE_PROCESS_NETWORK = _words(
    "from_file save load load_tensor open system popen spawn exec eval fork wait rpc_async "
    "rpc_sync remote _save_for_mobile read_file write_file"
)
_PICKLE_GLOBALS = frozenset(
    {
        "collections OrderedDict",
        "torch._utils _rebuild_tensor_v2",
        "torch._utils _rebuild_tensor",
        *(f"torch.jit._pickle build_{k}" for k in ("intlist", "doublelist", "boollist")),
        *(f"torch.jit._pickle build_{k}" for k in ("tensorlist", "tensor_from_id")),
        "torch.jit._pickle restore_type_tag",
    }
)
_STORAGES = ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte",
             "Bool")  # fmt: skip
_PICKLE_GLOBALS |= {f"torch {k}Storage" for k in _STORAGES}
MAX_CODE_BYTES = 64 << 20  # TorchScript source in one archive (an InstanSeg export: ~0.2 MB)


class UnsafeModel(ModelError):
    """The archive's code names an operation outside what an InstanSeg export uses."""


@dataclass(frozen=True, slots=True)
class ArchiveInfo:
    pixel_size: float | None
    channels: int | None


def _refuse(path: Path, what: str) -> UnsafeModel:
    return UnsafeModel(
        f"model {path} refused before loading: its code uses {what}, which an InstanSeg export "
        "never does (a model file is code: use models from sources you trust)"
    )


def _chain(node: ast.AST) -> str | None:
    """`a.b.c` for an attribute chain on a name, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def _check_code(path: Path, name: str, source: str) -> None:
    try:
        tree = ast.parse(source, filename=name)
    except (SyntaxError, ValueError):
        raise ModelError(
            f"model {path}: {name} is not TorchScript code, so it cannot be checked: refused"
        ) from None
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assigned = {
        t.id
        for n in ast.walk(tree)
        if isinstance(n, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.For, ast.With))
        for t in ast.walk(n)
        if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store)
    }
    assigned |= {a.arg for n in ast.walk(tree) if isinstance(n, ast.arg) for a in [n]}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            raise _refuse(path, "an import")
        if isinstance(node, ast.Attribute) and id(node) not in inner:
            chain = _chain(node)
            if chain is None:
                if node.attr in FILE_PROCESS_NETWORK and isinstance(node.ctx, ast.Load):
                    raise _refuse(path, f".{node.attr}() (file, process or network access)")
                continue
            head, _, rest = chain.partition(".")
            if head == "__torch__" and rest.split(".")[:2] == ["torch", "classes"]:
                raise _refuse(path, f"{chain} (a C++ custom class)")
            if head == "torch":
                if rest not in ALLOWED:
                    raise _refuse(path, _named(f"torch.{rest}", rest.rsplit(".", 1)[-1]))
            elif head == "ops":
                if rest not in ALLOWED_OPS:
                    raise _refuse(path, _named(f"ops.{rest}", rest.rsplit(".", 1)[-1]))
            elif node.attr in FILE_PROCESS_NETWORK:
                raise _refuse(path, f"{chain} (file, process or network access)")
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            if node.id in _ROOTS and id(node) not in inner:  # `t = torch`, then `t.anything`
                raise _refuse(path, f"{node.id} as a value")
            if node.id in FILE_PROCESS_NETWORK:
                raise _refuse(path, f"{node.id} (file, process or network access)")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            called = node.func.id
            if called not in BUILTINS and called not in assigned:
                raise _refuse(path, _named(f"{called}()", called))
            if called in ("getattr", "hasattr") and node.args:
                _check_getattr(path, node.args)


_ROOTS = frozenset({"torch", "ops", "__torch__"})


def _check_getattr(path: Path, args: list[ast.expr]) -> None:
    """`getattr(x, "name")` reaches only attributes of the model's own objects."""
    target = _chain(args[0]) or ""
    if target.split(".")[0] in _ROOTS:
        raise _refuse(path, f"getattr on {target}")
    if len(args) > 1:
        name = args[1]
        if not isinstance(name, ast.Constant) or not isinstance(name.value, str):
            raise _refuse(path, "getattr with a computed name")
        if name.value in FILE_PROCESS_NETWORK:
            raise _refuse(path, f"getattr(..., {name.value!r}) (file, process or network access)")


def _named(what: str, op: str) -> str:
    if op in FILE_PROCESS_NETWORK:
        return f"{what} (file, process or network access)"
    return f"{what} (not an operation of InstanSeg's exports)"


def _pickle_globals(path: Path, name: str, data: bytes) -> None:
    try:
        ops = list(pickletools.genops(data))
    except Exception:
        raise ModelError(f"model {path}: {name} is not a valid pickle: refused") from None
    strings: list[str] = []
    for op, arg, _ in ops:
        if isinstance(arg, str):
            strings.append(arg)
        if op.name == "GLOBAL":
            found = str(arg)
        elif op.name == "STACK_GLOBAL":
            found = " ".join(strings[-2:])
        elif op.name in ("INST", "OBJ", "EXT1", "EXT2", "EXT4"):
            raise _refuse(path, f"a pickle {op.name} in {name}")
        else:
            continue
        module = found.split(" ", 1)[0]
        if found in _PICKLE_GLOBALS:
            continue
        if module.startswith("__torch__") and not module.startswith("__torch__.torch.classes"):
            continue
        raise _refuse(path, f"{found.replace(' ', '.')} in {name}")


def _open(path: Path, data: bytes | None = None) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data) if data is not None else path)
    except (OSError, zipfile.BadZipFile, ValueError):
        raise ModelError(
            f"model {path} is not a TorchScript file (not a zip archive): export it with "
            "InstanSeg_Torchscript + torch.jit.script"
        ) from None
    names = archive.namelist()
    if len(names) != len(set(names)):  # two readers could pick different copies
        archive.close()
        raise ModelError(f"model {path} has duplicate archive entries: refused")
    return archive


def check_archive(path: Path, data: bytes | None = None) -> None:
    """UnsafeModel (one line naming the operation) unless every piece of code and every pickle
    in the archive (`data`, else the file at `path`) is what an InstanSeg export holds;
    ModelError if it cannot be read."""
    with _open(path, data) as archive:
        code = [i for i in archive.infolist() if "/code/" in f"/{i.filename}"]
        sources = [i for i in code if i.filename.endswith(".py")]
        if not any(i.filename.endswith("data.pkl") for i in archive.infolist()) or not sources:
            raise ModelError(
                f"model {path} is not a TorchScript file (no code or data.pkl inside): export "
                "it with InstanSeg_Torchscript + torch.jit.script"
            )
        if sum(i.file_size for i in sources) > MAX_CODE_BYTES:
            raise ModelError(f"model {path} holds over 64 MB of code: refused")
        try:
            for info in archive.infolist():
                name = info.filename
                if name.endswith(".py"):
                    source = archive.read(info).decode("utf-8")
                    _check_code(path, name, source)
                elif name.endswith(".pkl") or name.endswith(".debug_pkl"):
                    if info.file_size > 256 << 20:
                        raise ModelError(f"model {path}: {name} is over 256 MB: refused")
                    _pickle_globals(path, name, archive.read(info))
        except (zipfile.BadZipFile, UnicodeDecodeError, OSError, NotImplementedError) as exc:
            raise ModelError(
                f"model {path} cannot be read to be checked ({type(exc).__name__}): refused"
            ) from None


class _Obj:
    """An inert stand-in for a scripted module or class: keeps its state, runs nothing."""

    def __init__(self, *args: Any) -> None:
        self.__dict__["_args"] = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_state"] = state


@dataclass(frozen=True, slots=True)
class _Tensor:
    shape: tuple[int, ...]


def _rebuild_tensor(storage: Any, offset: Any, size: Any, *args: Any) -> _Tensor:
    return _Tensor(tuple(int(s) for s in size))


class _InertUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        key = f"{module} {name}"
        if key == "collections OrderedDict":
            return OrderedDict
        if key.startswith("torch._utils _rebuild_tensor"):
            return _rebuild_tensor
        if key.startswith("torch.jit._pickle build_"):
            return lambda *a: list(a[0]) if a else []
        if key in _PICKLE_GLOBALS:
            return lambda *a: None
        if module.startswith("__torch__") and not module.startswith("__torch__.torch.classes"):
            return type(name, (_Obj,), {})
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed")

    def persistent_load(self, pid: Any) -> Any:
        return None


def _first_4d(obj: Any, seen: set[int]) -> int | None:
    """Input channels: the first 4-D tensor (a conv weight), modules depth-first in order, as
    `named_parameters` walks them."""
    if id(obj) in seen:
        return None
    seen.add(id(obj))
    if isinstance(obj, _Tensor):
        return obj.shape[1] if len(obj.shape) == 4 else None
    values: list[Any] = []
    if isinstance(obj, _Obj):
        values = [v for k, v in obj.__dict__.items() if k not in ("_args", "_state")]
        values += [obj.__dict__.get("_state")]
    elif isinstance(obj, dict):
        values = list(obj.values())
    elif isinstance(obj, (list, tuple)):
        values = list(obj)
    tensors = [v for v in values if isinstance(v, _Tensor)]
    for v in tensors + [v for v in values if not isinstance(v, _Tensor)]:
        found = _first_4d(v, seen)
        if found is not None:
            return found
    return None


def read_info(path: Path) -> ArchiveInfo:
    """Pixel size and input channels from `data.pkl`, without torch and without running any
    of the archive; ModelError if it is not a readable TorchScript file."""
    with _open(path) as archive:
        pkl = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if not pkl:
            raise ModelError(f"model {path} is not a TorchScript file (no data.pkl inside)")
        try:
            root = _InertUnpickler(io.BytesIO(archive.read(pkl[0]))).load()
        except Exception as exc:
            raise ModelError(
                f"model {path}: data.pkl cannot be read ({type(exc).__name__}): refused"
            ) from None
    state = root.__dict__ if isinstance(root, _Obj) else {}
    value = state.get("pixel_size")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    pixel = float(value) if number else None
    fcn = state.get("fcn", root)
    return ArchiveInfo(pixel, _first_4d(fcn, set()))
