"""What a job plans with, read from the model's source without loading it (no torch).

A backend that runs the tiles elsewhere (a Dask cluster) needs only the model's pixel size (to
plan the tiles) and its hash (for resume matching and the manifest) on the client: both are in
the file. The hash is the file's SHA-256; the pixel size is an attribute of the exported
`InstanSeg_Torchscript` module, stored in the archive's `data.pkl`, which is read here with an
unpickler that builds nothing but plain stand-ins (every class of the archive becomes an empty
record of its state, tensors are not read, anything else is refused): no code of the archive
runs and torch is not imported, so a client without a GPU (or without torch's CUDA build)
plans a `device = "cuda"` job for GPU workers.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass, field
from typing import Any

from wsitui.core.digest import sha256_file
from wsitui.models.errors import ModelError
from wsitui.models.source import ModelSource


@dataclass(slots=True)
class ModelInfo:
    """The model as the client knows it (the workers load it)."""

    name: str
    kind: str
    pixel_size: float
    sha256: str
    device: str  # the device asked for; the workers say which one ran (the manifest)
    is_classical: bool
    fallback_reason: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def manifest(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "sha256": self.sha256,
            "pixel_size": self.pixel_size,
            "device": self.device,
            "fallback_reason": self.fallback_reason,
        }


def describe(source: ModelSource, device: str) -> ModelInfo:
    """Pixel size and hash of `source`, read from its file; ModelError (one line) otherwise."""
    if source.kind == "classical":
        from wsitui.models.classical import PIXEL_SIZE, VERSION

        return ModelInfo(
            source.name, source.kind, PIXEL_SIZE, VERSION, device, True, source.fallback_reason
        )
    assert source.path is not None
    if not source.path.is_file():
        raise ModelError(
            f"model file {source.path} is not on this machine: the client reads its pixel size "
            "and hash from it; copy it here (the same path as on the workers), then retry"
        )
    state = module_state(source.path.read_bytes(), str(source.path))
    from wsitui.models.loaded import model_classical_fill

    window = state.get("default_window_size")
    info: dict[str, Any] = {"classical_fill": model_classical_fill(source.path)}
    if isinstance(window, int):
        info["default_window_size"] = window
    return ModelInfo(
        source.name,
        source.kind,
        pixel_size(state, str(source.path)),
        sha256_file(source.path),
        device,
        False,
        info=info,
    )


class _Record:
    """Any class of the archive: its pickled state, nothing run."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _nothing(*args: object, **kwargs: object) -> None:
    return None


class _StateOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__"):  # the scripted module's classes
            return type(name, (_Record,), {})
        if module.startswith("torch") or module == "collections":  # tensors, OrderedDict
            return _nothing
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a TorchScript export")

    def persistent_load(self, pid: Any) -> None:  # tensor storages: not read
        return None


def module_state(data: bytes, what: str) -> dict[str, Any]:
    """The pickled attributes of the TorchScript archive `data`'s top module."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if not names:
                raise ModelError(f"model {what} is not a TorchScript file (no data.pkl inside)")
            root = _StateOnly(io.BytesIO(archive.read(names[0]))).load()
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise ModelError(f"model {what} is not a TorchScript file ({e})") from None
    state = getattr(root, "state", None)
    return state if isinstance(state, dict) else {}


def pixel_size(state: dict[str, Any], what: str) -> float:
    """The module's `pixel_size` attribute (µm per px); ModelError without one."""
    value = state.get("pixel_size")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ModelError(
            f"model {what} has no pixel_size: export it with "
            "InstanSeg_Torchscript(..., pixel_size=<µm/px>)"
        )
    return float(value)


def fill_in_effect(model: Any, setting: str) -> str:
    """`on` or `off`: whether a job's `classical_fill` setting completes `model`'s labels (a
    loaded model or a `ModelInfo`; `auto` is the model's own, `wsitui_model.json`), by the
    model layer's one rule (`classical_fill.in_effect`, which its predict follows)."""
    from wsitui.models.classical_fill import in_effect

    if getattr(model, "is_classical", False):
        return "off"
    own = getattr(model, "classical_fill", None)
    if own is None:
        info = getattr(model, "info", None)
        own = info.get("classical_fill", False) if isinstance(info, dict) else False
    return "on" if in_effect(setting, bool(own)) else "off"


def fill_rules(model: Any, setting: str) -> str | None:
    """The classical fill's rule version (`classical_fill.VERSION`) when `setting` completes
    `model`'s labels (`fill_in_effect`), else None: what a job's manifest and its shard plan
    record, so a resumed job never mixes tiles of two rule sets."""
    if fill_in_effect(model, setting) != "on":
        return None
    from wsitui.models.classical_fill import VERSION

    return VERSION
