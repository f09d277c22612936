"""The Dask worker side of SEGMENT_CELLS: a plugin that keeps a model and open slides per worker,
and the task that turns one tile into its CellRecords bytes.

Nothing heavy travels with a task: the model is loaded once per worker by `CellsPlugin` (from
the resolved model path, which must be readable on the worker), slides are opened on the worker
(OpenSlide handles do not pickle) and kept open, and a task carries only the slide path, a
slim plan (no tile list) and one tile. It returns polygons (`CellRecords.to_bytes()`, a few kB),
never a label image. It imports `distributed`: import it only where Dask is used (the
executor imports the Dask backend on first use, never at `wsitui --help`).

Torch's CPU threads on a worker: the plugin's `cpu_threads` when the client set one (the
session's own LocalCluster), else the worker's own thread count (`dask worker --nthreads N`),
set in every task thread before the model runs: a worker never runs more torch threads than it
was given, whatever torch defaults to (its core count, ignoring `OMP_NUM_THREADS`).

Memory allocation on a worker: Dask's nanny starts workers with `MALLOC_TRIM_THRESHOLD_=65536`,
which also switches off glibc's adaptive mmap threshold, so every large tensor is mmapped,
page-faulted and unmapped again: a 352-px tile's inference took 1.0-1.9 s instead of 0.3-0.4 s
(measured, one torch thread). Loading a torch model tunes the worker's allocator as the local
backend does (`malloc.tune_malloc`: large tensors reused from the heap).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from distributed import get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from wsitui.jobs.common.grid import Tile
from wsitui.jobs.segment_cells.backends.tile import cells_in, records
from wsitui.jobs.segment_cells.domain import TIGHT, out_of_domain
from wsitui.jobs.segment_cells.malloc import tune_malloc
from wsitui.jobs.segment_cells.plan import CellPlan
from wsitui.jobs.segment_cells.source import read_tile
from wsitui.models import nuclear_gate
from wsitui.models.errors import ModelError
from wsitui.models.source import ModelSource
from wsitui.slides.reader import SlideReader, open_slide

PLUGIN_PREFIX = "wsitui-cells-"
MAX_OPEN_SLIDES = 8  # slides kept open per worker (a cohort streams through a few at a time)


@dataclass(frozen=True, slots=True)
class TileResult:
    """What one tile task sends back: the tile's records and where the time went."""

    data: bytes  # CellRecords.to_bytes()
    cells: int  # records that are not guests (what progress counts)
    worker: str  # the worker's address (per-worker tile rates)
    torch_threads: int  # torch's CPU threads in the task that ran the model (0: not torch)
    read: float
    infer: float
    post: float
    odd: int = 0  # 1 when the tile looks out of domain (domain.py)
    device: str = ""  # where the model ran on the worker
    network_runtime: str = ""  # what ran the network on a CPU worker (fastnet.py), or why not


def plugin_name(source: ModelSource, device: str, cpu_threads: int | None, sha256: str = "") -> str:
    """One plugin (one loaded model) per model file (as it is now), device and thread budget.
    Plugins are idempotent: a later job or wsitui session reuses the model a worker loaded."""
    import hashlib

    stamp = ""
    if source.path is not None and source.path.is_file():
        st = source.path.stat()  # a model retrained in place is a new plugin, loaded afresh
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
    key = f"{source.key}|{source.version}|{stamp}|{device}|{cpu_threads}|{sha256}"
    return PLUGIN_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:16]


def slim_plan(plan: CellPlan) -> CellPlan:
    """The plan without its tile list: what a task needs, a few hundred bytes."""
    return replace(plan, tiles=())


class CellsPlugin(WorkerPlugin):
    """The state a worker keeps for one model: the loaded model and open slide readers.

    The model loads on the first task (once per worker, under a lock): a load error then
    fails that task with its one-line ModelError, which the client turns into a FAILED job, as
    does a model file whose hash is not the client's (`sha256`: the file the job planned with).
    """

    idempotent = True  # registered again by another job or session: the loaded model stays

    def __init__(
        self,
        name: str,
        source: ModelSource,
        device: str,
        cpu_threads: int | None,
        sha256: str = "",
    ) -> None:
        self.name = name
        self.source, self.device, self.cpu_threads = source, device, cpu_threads
        self.sha256 = sha256
        self._model: Any = None
        self._lock = threading.Lock()
        self._readers: OrderedDict[tuple[str, int, float], SlideReader] = OrderedDict()
        self.loads = 0
        self.malloc_tuned = False
        self._predict: Any = None  # (predict, network_runtime) for the loaded model, made once
        self._call_lock = threading.Lock()  # one split model call at a time, as the model's own

    def __getstate__(self) -> dict[str, Any]:
        # What travels to the workers: the model's path and device, not locks or readers.
        keys = ("name", "source", "device", "cpu_threads", "sha256")
        return {k: getattr(self, k) for k in keys}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def setup(self, worker: Any = None) -> None:
        """Called by the worker when the plugin is registered (or the worker starts)."""

    def teardown(self, worker: Any = None) -> None:
        with self._lock:
            model, self._model = self._model, None
            self._predict = None
            readers = list(self._readers.values())
            self._readers.clear()
        if model is not None:
            model.close()
        for r in readers:
            r.close()

    def model(self, worker_threads: int = 1) -> Any:
        """The loaded model, with torch's CPU threads set for the calling task's thread."""
        threads = max(1, self.cpu_threads or worker_threads)
        with self._lock:
            if self._model is None:
                from wsitui.models.loaded import load
                from wsitui.observability.libraries import quiet_known_warnings

                quiet_known_warnings()  # known library warnings never reach a worker's stderr
                self._model = load(self.source, self.device, threads)
                self.loads += 1
                if not self._model.is_classical:
                    self.malloc_tuned = tune_malloc()
            model = self._model
        if self.sha256 and not model.is_classical and model.sha256 != self.sha256:
            raise ModelError(
                f"model {self.source.path} on this Dask worker is not the file the job planned "
                f"with (sha256 {model.sha256[:12]} here, {self.sha256[:12]} on the client): give "
                "the workers the same file, then retry"
            )
        if getattr(model, "device", "") == "cpu" and not model.is_classical:
            _set_torch_threads(threads)
        return model

    def predictor(self, model: Any) -> tuple[Any, str]:
        """(predict(batch, postprocess), network_runtime) for this worker's loaded model. On a
        CPU worker the network split from instanseg's post-processing, frozen and channels-last
        fp32 (`fastnet.py`: the same labels as the whole call, built and checked once per
        worker process), one call at a time as the model's own call runs; elsewhere, or where
        the split does not fit, the model's own call (and why, for the manifest)."""
        with self._lock:
            if self._predict is not None and self._predict[2] is model:
                return self._predict[0], self._predict[1]
        if model.is_classical or getattr(model, "device", "") != "cpu":
            made: tuple[Any, str] = (_own_call(model), "")
        else:
            from wsitui.jobs.segment_cells.accel import DeviceSegmenter
            from wsitui.jobs.segment_cells.fastnet import split

            fast, why = split(model, "fp32")
            if fast is None:
                made = (_own_call(model), f"torchscript (the model's own call: {why})")
            else:

                def call(x: Any, **kwargs: Any) -> Any:
                    # One TorchScript call at a time, as the model's own lock ran them; reading,
                    # normalising and the nuclear check stay outside, as before the split.
                    with self._call_lock:
                        return fast(x, **kwargs)

                made = (DeviceSegmenter(model, "fp32", None, call=call).predict, fast.runtime)
        with self._lock:
            self._predict = (*made, model)
        return made

    def reader(self, path: str) -> SlideReader:
        st = Path(path).stat()  # a slide replaced on disk is opened again
        key = (path, st.st_size, st.st_mtime)
        with self._lock:
            r = self._readers.get(key)
            if r is not None:
                self._readers.move_to_end(key)
                return r
        opened = open_slide(path)
        with self._lock:
            r = self._readers.setdefault(key, opened)
            self._readers.move_to_end(key)
            old = []
            while len(self._readers) > MAX_OPEN_SLIDES:
                old.append(self._readers.popitem(last=False)[1])
        if r is not opened:
            opened.close()
        for o in old:
            o.close()
        return r


def make_plugin(
    source: ModelSource, device: str, cpu_threads: int | None, sha256: str = ""
) -> CellsPlugin:
    name = plugin_name(source, device, cpu_threads, sha256)
    return CellsPlugin(name, source, device, cpu_threads, sha256)


_install_lock = threading.Lock()


def _own_call(model: Any) -> Any:
    """The loaded model's own predict with a task's post-processing settings (none: its own)."""

    def predict(batch: np.ndarray, postprocess: dict[str, Any] | None) -> Any:
        if postprocess and not model.is_classical:
            return model.predict(batch, postprocess=postprocess)
        return model.predict(batch)

    return predict


def _set_torch_threads(n: int) -> None:
    """Torch's intra-op threads for this thread (OpenMP keeps the setting per thread, and a
    Dask worker runs tasks in a pool of its own)."""
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def torch_threads() -> int:
    """Torch's CPU threads as a task on this worker sees them (0 without torch imported)."""
    import sys

    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else 0


def _installed(worker: Any, plugin: CellsPlugin) -> CellsPlugin:
    with _install_lock:
        state = worker.plugins.get(plugin.name)
        if state is None:
            worker.plugins[plugin.name] = state = plugin
    assert isinstance(state, CellsPlugin)
    return state


def _worker_threads(worker: Any) -> int:
    state = getattr(worker, "state", None)
    return int(getattr(state, "nthreads", 0) or getattr(worker, "nthreads", 1) or 1)


def segment_tile(
    plugin: CellsPlugin,
    slide: str,
    plan: CellPlan,
    tile: Tile,
    min_area_px: float,
    postprocess: dict[str, Any] | None = None,
) -> TileResult:
    """The task: read one tile on this worker, predict, extract polygons. Runs on a worker.

    `plugin` travels with each task as its small spec (model path, device): a worker that
    joined before the client's registration reached it (a cluster restarted at the same
    address) installs it here instead of failing the tile.
    """
    worker = get_worker()
    state = _installed(worker, plugin)
    model = state.model(_worker_threads(worker))
    image = read_tile(state.reader(slide), plan, tile)
    began = time.perf_counter()
    odd = out_of_domain(image.chromogen)
    # As the local backend runs it (accel.accelerate): instanseg's window for the job's nuclei,
    # tightened on an out-of-domain tile (DAB-like stain, domain.TIGHT).
    if odd and not model.is_classical:
        postprocess = {**(postprocess or {}), **TIGHT}
    predict, runtime = state.predictor(model)
    with nuclear_gate.tally() as counts:  # the model layer's nuclear check, for the manifest
        labels = predict(image.rgb[None], postprocess)[0]
    infer = time.perf_counter() - began
    rec = records(labels, image, plan, min_area_px)
    if len(counts) == 1:  # (detections, dropped) in the shard, as the local backend does
        rec.info = np.concatenate([rec.info[:2], np.asarray(counts[0], float)])
    data = rec.to_bytes()
    post = time.perf_counter() - began - infer
    threads = torch_threads() if not model.is_classical and model.device == "cpu" else 0
    return TileResult(
        data,
        cells_in(rec),
        worker.address,
        threads,
        image.seconds,
        infer,
        post,
        int(odd),
        str(getattr(model, "device", "")),
        runtime,
    )


def model_loads(dask_worker: Any = None) -> dict[str, int]:
    """{plugin: model loads} on one worker (run with `client.run`; the tests check "once")."""
    if dask_worker is None:
        dask_worker = get_worker()
    return {
        name: int(getattr(p, "loads", 0))
        for name, p in dask_worker.plugins.items()
        if name.startswith(PLUGIN_PREFIX)
    }
