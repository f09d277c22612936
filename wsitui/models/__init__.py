"""The model layer for cell segmentation: which model a job uses, loading it once per device,
running it on tiles, the classical fallback, detection F1, training and the shipped model.

Importing this package is cheap (no torch, no scikit-image): `ModelRef`, `ModelSource`,
`resolve` and `ModelError` are here; `ModelCache`, `LoadedModel`, `pick_device`,
`set_cpu_threads` and `detection_score` are imported on first use.
"""

from __future__ import annotations

from typing import Any

from wsitui.models.errors import ModelError
from wsitui.models.source import ModelRef, ModelSource, cache_dir, resolve

_LAZY = {
    "ModelCache": "wsitui.models.loaded",
    "LoadedModel": "wsitui.models.loaded",
    "load": "wsitui.models.loaded",
    "pick_device": "wsitui.models.device",
    "set_cpu_threads": "wsitui.models.device",
    "default_cpu_threads": "wsitui.models.device",
    "gpu_resources": "wsitui.models.device",
    "detection_score": "wsitui.models.metrics",
    "DetectionScore": "wsitui.models.metrics",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wsitui.models' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "DetectionScore",
    "LoadedModel",
    "ModelCache",
    "ModelError",
    "ModelRef",
    "ModelSource",
    "cache_dir",
    "default_cpu_threads",
    "detection_score",
    "gpu_resources",
    "load",
    "pick_device",
    "resolve",
    "set_cpu_threads",
]
