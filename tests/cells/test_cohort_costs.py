"""What a cohort of SEGMENT_CELLS jobs pays once and what it pays per slide (issues #19/#20).

A cohort runs many slides through one process: the model is loaded, and its network split and
checked (`fastnet.py`), once per process, not per slide; the cached network gives the same
labels as a fresh one; two different models in one process never share one; and each job gives
its threads' free heap back, so memory does not grow with the number of slides."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tests.cells.specs import every_tile
from wsitui.jobs.common.shards import ShardStore
from wsitui.jobs.segment_cells import fastnet
from wsitui.jobs.segment_cells.accel import GpuTurns
from wsitui.jobs.segment_cells.backends import local
from wsitui.jobs.segment_cells.backends.local import LocalBackend
from wsitui.jobs.segment_cells.executor import SegmentCellsExecutor
from wsitui.jobs.segment_cells.params import SegmentCellsParams
from wsitui.models import resolve
from wsitui.models.normalize import normalize_batch
from wsitui.slides.reader import open_slide

torch = pytest.importorskip("torch")


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Calls of fastnet's network build (freeze, split, probe check), counted."""
    builds: list[int] = []
    real = fastnet._build

    def counted(module: Any, normalization: str) -> Any:
        builds.append(1)
        return real(module, normalization)

    monkeypatch.setattr(fastnet, "_build", counted)
    return builds


def _four_with_nuclei(tiles: Any) -> Any:
    """Four tiles near the middle of the sample slide, where its tissue is."""
    mid = len(tiles) // 2
    return tiles[mid - 4 : mid - 2] + tiles[mid + 2 : mid + 4]


def _job(backend: LocalBackend, slide: Path, shards: Path) -> tuple[dict[str, np.ndarray], Any]:
    """One job's tile pipeline on four tiles of 256 px with nuclei: labels per tile and the
    manifest's model."""
    params = backend.params
    model = backend.describe(lambda: None)
    seen: dict[str, np.ndarray] = {}
    with open_slide(slide) as reader:
        plan = every_tile(reader, model, params)
        plan = replace(plan, tiles=_four_with_nuclei(plan.tiles))
        run = backend.run_tiles(
            reader,
            plan,
            ShardStore(shards, {"p": 1}),
            min_area_px=params.min_area_um2 / plan.model_px**2,
            on_progress=lambda p: None,
            check_cancel=lambda: None,
            on_labels=lambda t, lab: seen.__setitem__(f"{t.col},{t.row}", np.array(lab)),
        )
    return seen, run.model


def test_jobs_in_one_process_load_and_split_the_model_once_with_the_same_cells(
    tmp_path: Path, sample_slide: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds = _count_builds(monkeypatch)
    executor = SegmentCellsExecutor()  # one per process, as a session makes it
    source = resolve("shipped")
    params = SegmentCellsParams(model="shipped", device="cpu")

    def backend() -> LocalBackend:  # what the executor builds for each job
        return LocalBackend(executor.models, executor.gpu_turns, lambda: 0, source, params)

    try:
        first, info = _job(backend(), sample_slide, tmp_path / "1")
        second, _ = _job(backend(), sample_slide, tmp_path / "2")
        assert executor.models.loads == 1 and len(builds) == 1  # once for the cohort
        assert info["network_runtime"] == fastnet.FP32_RUNTIME  # the split network ran
        # Without the cache (the split built again for the same loaded model): the same cells.
        module = executor.models.get(source, "cpu")._module
        with fastnet._CACHE_LOCK:
            fastnet._PARTS.pop(id(module))
        fresh, _ = _job(backend(), sample_slide, tmp_path / "3")
        assert len(builds) == 2 and executor.models.loads == 1
    finally:
        executor.models.close()
    assert sorted(first) == sorted(second) == sorted(fresh) and len(first) == 4
    assert sum(len(np.unique(v)) - 1 for v in first.values()) > 50  # the tiles hold nuclei
    for key, labels in first.items():
        assert np.array_equal(labels, second[key]) and np.array_equal(labels, fresh[key])


class _Loaded:
    """A loaded model as `fastnet.split` reads it: its TorchScript module and normalisation."""

    normalization = "percentile"

    def __init__(self, module: Any) -> None:
        self._module = module


def test_two_models_in_one_process_each_run_their_own_network(tmp_path: Path) -> None:
    """A cache keyed wrongly would hand one model's network to another: here a second model
    (the shipped one with other weights) gets its own, and the first keeps its own."""
    shipped = resolve("shipped").path
    assert shipped is not None
    a = torch.jit.load(str(shipped), map_location="cpu")
    b = torch.jit.load(str(shipped), map_location="cpu")
    with torch.no_grad():
        for p in b.fcn.parameters():
            p.mul_(0.9)  # another model: same code, other weights
    x = torch.from_numpy(normalize_batch(fastnet.probe_tile(), "percentile"))
    padded = torch.nn.functional.pad(x, [0, 6, 0, 6], mode="reflect")  # 250 -> 256 px
    split_a, why_a = fastnet.split(_Loaded(a), "fp32")
    split_b, why_b = fastnet.split(_Loaded(b), "fp32")
    assert split_a is not None and split_b is not None, (why_a, why_b)
    with torch.inference_mode():
        out_a, out_b = split_a.network(x.clone()), split_b.network(x.clone())
        assert torch.allclose(out_a, a.fcn(padded.clone()), atol=1e-3)
        assert torch.allclose(out_b, b.fcn(padded.clone()), atol=1e-3)
        assert not torch.allclose(out_a, out_b, atol=1e-2)
        # asked again (the cached parts): still each its own
        again_a, _ = fastnet.split(_Loaded(a), "fp32")
        assert again_a is not None and torch.equal(again_a.network(x.clone()), out_a)


def test_two_jobs_starting_at_once_build_the_split_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers may start SEGMENT_CELLS jobs on one model at once: one builds, the other
    waits for it and both run the same split network."""
    builds = _count_builds(monkeypatch)
    shipped = resolve("shipped").path
    assert shipped is not None
    model = _Loaded(torch.jit.load(str(shipped), map_location="cpu"))
    got: list[Any] = []
    start = threading.Barrier(2)

    def job() -> None:
        start.wait()
        got.append(fastnet.split(model, "fp32"))

    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1
    assert len(got) == 2 and all(runner is not None for runner, _ in got)
    assert got[0][0]._network is got[1][0]._network


def test_each_cpu_job_gives_its_threads_free_memory_back_even_when_cancelled(
    tmp_path: Path, sample_slide: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wsitui.models import ModelCache

    released: list[int] = []
    monkeypatch.setattr(local, "release_free_memory", lambda: released.append(1) or True)
    cache = ModelCache(cpu_threads=2)
    params = SegmentCellsParams(model="shipped", device="cpu")
    backend = LocalBackend(cache, GpuTurns(), lambda: 0, resolve("shipped"), params)
    try:
        _job(backend, sample_slide, tmp_path / "done")
        assert released == [1]

        def cancelled(*a: Any, **k: Any) -> Any:
            raise RuntimeError("cancelled")

        monkeypatch.setattr(local, "run_tiles", cancelled)
        with pytest.raises(RuntimeError, match="cancelled"):
            _job(backend, sample_slide, tmp_path / "cancelled")
        assert released == [1, 1]
    finally:
        cache.close()


_ARENAS = """
import threading
from pathlib import Path
import numpy as np
from wsitui.jobs.segment_cells.malloc import release_free_memory, tune_malloc

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

assert tune_malloc()
base = rss()
for _ in range(2):  # two jobs' worth of threads, as a cohort runs them
    barrier = threading.Barrier(4)
    def work():
        arrays = [np.ones(1 << 20) for _ in range(20)]  # 160 MB a thread, touched
        barrier.wait()
        del arrays
    threads = [threading.Thread(target=work) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
kept = rss()
release_free_memory()
print(base, kept, rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator only")
def test_free_heap_of_finished_threads_goes_back_to_the_system() -> None:
    """The mechanism the job relies on: with the tuned allocator, threads that ended keep
    their free heap (up to malloc.TRIM_THRESHOLD each) until `release_free_memory`."""
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", _ARENAS],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=True,
        timeout=120,
    )
    base, kept, after = (float(v) for v in out.stdout.split())
    if kept - base < 300:
        pytest.skip(f"this allocator kept {kept - base:.0f} MB: nothing to give back")
    assert after < kept - 250  # most of what the ended threads kept is given back


def test_dask_cpu_workers_run_the_split_network_once_built_with_the_same_cells(
    sample_slide: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Dask CPU worker runs the split network as the local backend does (built and checked
    once per worker, not per tile), with the model's own call's cells, and says so per tile."""
    pytest.importorskip("distributed")
    from wsitui.jobs.segment_cells.backends import dask_worker

    builds = _count_builds(monkeypatch)
    plugin = dask_worker.make_plugin(resolve("shipped"), "cpu", 2)

    worker = SimpleNamespace(  # what a task sees of its worker
        address="tcp://worker:1", plugins={}, state=SimpleNamespace(nthreads=1)
    )
    monkeypatch.setattr(dask_worker, "get_worker", lambda: worker)
    params = SegmentCellsParams(model="shipped", device="cpu")
    try:
        model = plugin.model()
        with open_slide(sample_slide) as reader:
            plan = every_tile(reader, model, params)
        tiles = _four_with_nuclei(plan.tiles)
        post = {"window_size": 24}
        results = [
            dask_worker.segment_tile(plugin, str(sample_slide), plan, t, 4.0, post) for t in tiles
        ]
        assert len(builds) == 1  # once for the worker, not per tile
        assert {r.network_runtime for r in results} == {fastnet.FP32_RUNTIME}
        # the model's own whole call on the same tiles: the same cells
        monkeypatch.setenv(fastnet.ENV_OFF, "0")
        own = dask_worker.make_plugin(resolve("shipped"), "cpu", 2)
        worker.plugins = {}
        plain = [
            dask_worker.segment_tile(own, str(sample_slide), plan, t, 4.0, post) for t in tiles
        ]
        assert {r.network_runtime for r in plain} == {
            f"torchscript (the model's own call: {fastnet.ENV_OFF} is off)"
        }
        own.teardown()
    finally:
        plugin.teardown()
    from wsitui.jobs.segment_cells.extract import CellRecords

    for split_run, whole in zip(results, plain, strict=True):
        a, b = CellRecords.from_bytes(split_run.data), CellRecords.from_bytes(whole.data)
        assert split_run.cells == whole.cells
        assert np.array_equal(a.centroid, b.centroid) and np.array_equal(a.area, b.area)
        assert np.array_equal(a.info[2:], b.info[2:])  # the nuclear check's counts
    assert sum(r.cells for r in results) > 50  # the tiles hold nuclei
