"""Loading a TorchScript InstanSeg model and running it on tiles: `LoadedModel`, `ModelCache`.

torch and instanseg are imported here only, lazily, inside the functions that need them (never
at import of this module, never on the UI thread: the executor calls `ModelCache.get` from its
worker threads).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from wsitui.models import classical_fill, nuclear_gate
from wsitui.models.classical import ClassicalModel
from wsitui.models.device import default_cpu_threads, pick_device, set_cpu_threads
from wsitui.models.errors import ModelError
from wsitui.models.finish import finish_batch
from wsitui.models.normalize import NORMALIZATIONS, normalize_batch
from wsitui.models.source import ModelSource

_download_lock = threading.Lock()
INFO_FILE = "wsitui_model.json"  # written beside a model by `wsitui model train`


class LoadedModel(Protocol):
    name: str
    source_kind: str
    sha256: str
    version: str
    pixel_size: float
    channels: int
    device: str
    precision: str
    is_classical: bool
    fallback_reason: str

    def predict(
        self, batch: np.ndarray, postprocess: dict[str, Any] | None = None
    ) -> np.ndarray: ...

    def manifest(self) -> dict[str, object]: ...

    def close(self) -> None: ...


def _first_line(exc: BaseException) -> str:
    """The line of an error that says what went wrong (TorchScript puts it last)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    line = lines[-1] if lines[0].startswith("The following operation failed") else lines[0]
    return line[:200]


def _is_oom(exc: BaseException) -> bool:
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()


MAX_MODEL_BYTES = 2 << 30  # a model is read into memory once: checked, hashed and loaded


def read_model_bytes(source: ModelSource) -> bytes:
    """The model file's bytes, read once (so what is checked, hashed and loaded is the same):
    a pretrained model is downloaded first if missing, and checked against its record."""
    from wsitui.models.download import download_pretrained, sha256_bytes, verify_download

    assert source.path is not None
    if source.kind == "pretrained" and not source.path.is_file():
        with _download_lock:
            if not source.path.is_file():
                download_pretrained(source)
    if not source.path.is_file():
        raise ModelError(f"model file {source.path} is missing: reinstall wsitui or retrain it")
    try:
        size = source.path.stat().st_size
        if size > MAX_MODEL_BYTES:
            raise ModelError(f"model {source.path} is over 2 GB: not an InstanSeg export")
        data = source.path.read_bytes()
    except OSError as exc:
        raise ModelError(f"model {source.path} cannot be read: {exc.strerror or exc}") from None
    if source.kind == "pretrained":
        verify_download(source.path, sha256_bytes(data))
    return data


def _load_module(source: ModelSource) -> tuple[Any, str]:
    """The TorchScript module and the SHA-256 of the bytes it was loaded from. The archive's
    code is checked before `torch.jit.load` (which runs the archive's `__setstate__`s)."""
    import io

    import torch

    from wsitui.models.archive import check_archive
    from wsitui.models.download import sha256_bytes

    assert source.path is not None
    data = read_model_bytes(source)
    check_archive(source.path, data)
    try:
        module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except Exception as exc:
        raise ModelError(
            f"model {source.path} is not a TorchScript file ({_first_line(exc)}): export it with "
            "InstanSeg_Torchscript + torch.jit.script"
        ) from None
    return module, sha256_bytes(data)


def _info_field(path: Path, name: str, default: object) -> tuple[Path, object]:
    """(`wsitui_model.json` beside the model file, its field `name`, `default` when the file or
    the field is absent); ModelError (one line) when the file is not valid JSON."""
    info = path.parent / INFO_FILE
    if not info.is_file():
        return info, default
    try:
        return info, json.loads(info.read_text()).get(name, default)
    except (OSError, ValueError, AttributeError):
        raise ModelError(f"{info} is not valid JSON: fix or delete it") from None


def model_normalization(path: Path) -> str:
    """The input normalisation a model was trained with: `wsitui_model.json` beside the file
    (written by `wsitui model train`) says; any other InstanSeg export gets instanseg's own."""
    info, value = _info_field(path, "normalization", "percentile")
    if value not in NORMALIZATIONS:
        raise ModelError(
            f"{info}: normalization {value!r} is unknown: use {' or '.join(NORMALIZATIONS)}"
        )
    return str(value)


def model_classical_fill(path: Path) -> bool:
    """Whether a model's labels are completed with the classical fallback's nuclei when a job
    leaves `classical_fill` at `auto`: `wsitui_model.json` beside the file says (every model
    `wsitui model train` writes says yes); any other InstanSeg export: no."""
    info, value = _info_field(path, "classical_fill", False)
    if not isinstance(value, bool):
        raise ModelError(f"{info}: classical_fill {value!r} must be true or false")
    return value


def _expected_channels(module: Any) -> int | None:
    fcn = getattr(module, "fcn", module)
    for _, p in fcn.named_parameters():
        if p.dim() == 4:
            return int(p.shape[1])
    return None


# instanseg's post-processing kwargs an export may carry defaults for (`default_<name>`).
_POSTPROCESS_NAMES = (
    "mask_threshold",
    "peak_distance",
    "seed_threshold",
    "overlap_threshold",
    "window_size",
    "min_size",
    "fg_threshold",
    "mean_threshold",
)


class TorchModel:
    """A TorchScript InstanSeg model on one device; `predict` is safe from any thread (calls are
    serialised: on CPU one call already uses every torch thread)."""

    is_classical = False
    fallback_reason = ""

    def __init__(
        self,
        source: ModelSource,
        device: str = "auto",
        cpu_threads: int | None = None,
        postprocess: dict[str, Any] | None = None,
    ) -> None:
        import torch

        self.name = source.name
        self.source_kind = source.kind
        self.version = source.version
        self.device = pick_device(device)
        if self.device == "cpu":
            self.threads = set_cpu_threads(cpu_threads or default_cpu_threads())
        else:
            self.threads = 0
        module, self.sha256 = _load_module(source)
        assert source.path is not None
        self.path = source.path
        pixel_size = getattr(module, "pixel_size", None)
        if not isinstance(pixel_size, (int, float)) or not pixel_size > 0:
            raise ModelError(
                f"model {self.name} has no pixel_size: export it with "
                "InstanSeg_Torchscript(..., pixel_size=<µm/px>)"
            )
        self.pixel_size = float(pixel_size)
        channels = _expected_channels(module)
        if channels is not None and channels != 3:
            raise ModelError(
                f"model {self.name} expects {channels} input channels; wsitui feeds RGB "
                "brightfield tiles (3 channels): use an H&E/brightfield model"
            )
        self.channels = 3
        self.precision = "fp32"
        self.normalization = model_normalization(source.path)
        self.classical_fill = model_classical_fill(source.path)
        self.postprocess = dict(postprocess or {})
        try:
            module = module.to(self.device).eval()
        except Exception as exc:
            raise ModelError(
                f"model {self.name} cannot move to {self.device}: {_first_line(exc)}"
            ) from None
        self._module = module
        self._lock = threading.Lock()
        self._torch = torch
        # A probe tile: a model that is not an InstanSeg export fails here, at load.
        try:
            self.predict(np.full((1, 64, 64, 3), 230, np.uint8))
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(
                f"model {self.name} failed on a test tile ({_first_line(exc)}): is it an InstanSeg "
                "TorchScript export taking (B, 3, H, W)?"
            ) from None

    def predict(
        self,
        batch: np.ndarray,
        postprocess: dict[str, Any] | None = None,
        forward: Callable[[np.ndarray, dict[str, Any]], np.ndarray] | None = None,
    ) -> np.ndarray:
        """uint8 (B, H, W, 3) RGB at `pixel_size` -> int32 (B, H, W) labels (0 background).

        `postprocess` (instanseg's own kwargs: seed_threshold, mask_threshold, peak_distance,
        min_size, ...) overrides the defaults given at load, for this call; its `nuclear_check`
        (`auto`, the default, or `off`) is wsitui's: detections without nuclear evidence are
        dropped (`nuclear_gate.py`); its `classical_fill` (`auto`, the default: what the model's
        `wsitui_model.json` says; `on`; `off`) completes the labels with the classical
        fallback's nuclei (`classical_fill.py`). `forward(batch, instanseg_kwargs)` -> labels
        replaces this model's own forward pass (the GPU runner's, `jobs/segment_cells/accel.py`):
        every path goes through here, so every path gets the same check and fill (a GPU job's
        pipeline asks for the network alone, both off, then checks and fills each tile on its
        tracing threads as `finish_flags` says, `jobs/segment_cells/backends/local.py`)."""
        if batch.ndim != 4 or batch.shape[3] != 3 or batch.dtype != np.uint8:
            raise ValueError(
                f"predict needs uint8 (B, H, W, 3) RGB, got {batch.dtype} {batch.shape}"
            )
        check, fill = self.finish_flags(postprocess)
        kwargs = {**self.postprocess, **(postprocess or {})}
        kwargs.pop("nuclear_check", None)
        kwargs.pop("classical_fill", None)
        labels = (forward or self._forward)(batch, kwargs)
        return finish_batch(batch, labels, check=check, fill=fill)

    def finish_flags(self, postprocess: dict[str, Any] | None = None) -> tuple[bool, bool]:
        """(nuclear check, classical fill): what `predict` with `postprocess` over the model's
        own settings runs after the network; ValueError (one line) for a bad setting."""
        kwargs = {**self.postprocess, **(postprocess or {})}
        check = nuclear_gate.mode_of(kwargs.get("nuclear_check", "auto")) != "off"
        return check, self.fill_on(kwargs.get("classical_fill", "auto"))

    def fill_on(self, setting: object) -> bool:
        """Whether a `classical_fill` setting (`auto`: this model's own) completes labels."""
        return classical_fill.in_effect(setting, self.classical_fill)

    def _forward(self, batch: np.ndarray, kwargs: dict[str, Any]) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(normalize_batch(batch, self.normalization))
        with self._lock, torch.inference_mode():
            try:
                x = x.to(self.device)
                if self.device != "cpu":
                    x = x.contiguous(memory_format=torch.channels_last)
                out = self._module(x, **kwargs)
            except Exception as exc:
                if _is_oom(exc):
                    if self.device.startswith("cuda"):
                        torch.cuda.empty_cache()
                    raise ModelError(
                        f"out of memory on a batch of {batch.shape[0]} tile(s) of "
                        f"{batch.shape[2]}x{batch.shape[1]} on {self.device}: use a smaller "
                        "tile_size or batch, or device = 'cpu'"
                    ) from None
                raise ModelError(
                    f"model {self.name} failed on a tile: {_first_line(exc)}"
                ) from None
            labels = out[:, 0].to("cpu").numpy()
        return labels.astype(np.int32)

    def manifest(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.source_kind,
            "path": str(self.path),
            "sha256": self.sha256,
            "version": self.version,
            "pixel_size": self.pixel_size,
            "channels": self.channels,
            "device": self.device,
            "precision": self.precision,
            "cpu_threads": self.threads,
            "normalization": self.normalization,
            "postprocess": {
                "nuclear_check": "auto",
                "classical_fill": "on" if self.classical_fill else "off",
                **self.postprocess,
            },
            "postprocess_defaults": self.postprocess_defaults(),
            "fallback_reason": "",
        }

    def postprocess_defaults(self) -> dict[str, float]:
        """instanseg's post-processing defaults the export carries (`default_<name>`, e.g. the
        shipped model's mask_threshold 0.7): with `postprocess` (this job's own) what ran."""
        module = self._module
        if module is None:
            return {}
        out: dict[str, float] = {}
        for name in _POSTPROCESS_NAMES:
            value = getattr(module, f"default_{name}", None)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[name] = value
        return out

    def close(self) -> None:
        self._module = None
        if self.device.startswith("cuda"):
            self._torch.cuda.empty_cache()


def load(
    source: ModelSource,
    device: str = "auto",
    cpu_threads: int | None = None,
    postprocess: dict[str, Any] | None = None,
) -> LoadedModel:
    """Load one model (no sharing: use ModelCache for that)."""
    if source.kind == "classical":
        return ClassicalModel(source.fallback_reason)
    return TorchModel(source, device, cpu_threads, postprocess)


class ModelCache:
    """Models loaded at most once per (model, device), shared by the jobs of one executor.

    Thread-safe: concurrent `get`s of one key wait for the single load. Open with the executor
    (`open()`), release with `close()`. A failed load is not cached (the next job tries again
    and gets the same one-line error if nothing changed)."""

    def __init__(self, cpu_threads: int | None = None) -> None:
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}
        self._models: dict[tuple[str, str], LoadedModel] = {}
        self._cpu_threads = cpu_threads
        self.loads = 0  # how many loads happened (the tests check "once")

    def get(self, source: ModelSource, device: str = "auto") -> LoadedModel:
        """The loaded model for (source, actual device); ModelError if it cannot load."""
        if source.kind != "classical":
            device = pick_device(device)  # "auto" and "cpu" share one model on a CPU machine
        key = (source.key, device)
        with self._lock:
            if key in self._models:
                return self._models[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._models:
                    return self._models[key]
            model = load(source, device, self._cpu_threads)
            with self._lock:
                self._models[key] = model
                self.loads += 1
            return model

    def close(self) -> None:
        with self._lock:
            models = list(self._models.values())
            self._models.clear()
            self._key_locks.clear()
        for m in models:
            m.close()
