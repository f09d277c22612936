"""Device choice and CPU threads for torch models (torch is imported only when called)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from wsitui.core.cpus import available_cpus
from wsitui.models.errors import ModelError

_threads_lock = threading.Lock()
_threads_set: int | None = None


def check_device_name(value: str) -> str:
    """A `device` param, stripped and lower case; ValueError (one line) unless it names a
    device a job can ask for. The one check behind every device param and `pick_device`."""
    name = value.strip().lower()
    if name in ("auto", "cpu", "cuda", "mps") or (name.startswith("cuda:") and name[5:].isdigit()):
        return name
    raise ValueError(f"device {name!r} is not one of auto, cpu, cuda, cuda:N, mps")


def pick_device(requested: str = "auto") -> str:
    """`auto` -> cuda, then mps, then cpu; a forced device must exist (ModelError otherwise)."""
    import torch

    try:
        requested = check_device_name(requested)
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelError(
                f"device {requested!r} requested but CUDA is not available here: "
                "use device = 'auto' or 'cpu'"
            )
        index = int(requested.split(":")[1]) if ":" in requested else 0
        if index >= torch.cuda.device_count():
            raise ModelError(
                f"device {requested!r} requested but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s): use cuda:0 or device = 'auto'"
            )
        return requested
    if requested == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ModelError(
                "device 'mps' requested but Apple MPS is not available here: "
                "use device = 'auto' or 'cpu'"
            )
        return "mps"
    return "cpu"


def default_cpu_threads(jobs_in_flight: int = 1) -> int:
    """Torch threads for CPU inference: the machine's cores shared by the jobs in flight."""
    return max(1, available_cpus() // max(1, jobs_in_flight))


def set_cpu_threads(n: int) -> int:
    """Set torch's intra-op threads for the process (once per value); returns the value set."""
    import torch

    global _threads_set
    n = max(1, int(n))
    with _threads_lock:
        if _threads_set != n:
            torch.set_num_threads(n)
            _threads_set = n
    return n


def cuda_visible() -> bool:
    """Whether an NVIDIA GPU is visible, without importing torch (cheap: for scheduling)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return Path("/dev/nvidia0").exists() or (gpus.is_dir() and any(gpus.iterdir()))


def cuda_device_count(gpus_dir: Path = Path("/proc/driver/nvidia/gpus")) -> int:
    """NVIDIA GPUs this process may use, without importing torch: the driver's GPUs, narrowed
    by CUDA_VISIBLE_DEVICES when it lists some (the `gpu` resource's capacity)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed in ("", "-1"):
        return 0
    found = len(list(gpus_dir.iterdir())) if gpus_dir.is_dir() else 0
    if found == 0 and Path("/dev/nvidia0").exists():
        found = 1
    if listed is None:
        return found
    return min(found, len([d for d in listed.split(",") if d.strip()]))


def gpu_resources(device: str) -> dict[str, int]:
    """What a model job holds besides a worker: one `gpu` when it will run on CUDA.

    For `Executor.resources(params)`: decided without importing torch."""
    if device.startswith("cuda") or (device == "auto" and cuda_visible()):
        return {"gpu": 1}
    return {}
