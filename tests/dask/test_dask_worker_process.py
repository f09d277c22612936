"""A real `dask worker` process (the command users start), with the shipped torch model:
torch's threads follow the worker's own `--nthreads`, and the client never loads the model, so a
`device = "cuda"` job runs on a GPU worker from a client without a GPU.

Faked, because no GPU exists here: only the worker's device check. The worker advertises
`--resources GPU=1` and its `pick_device` maps "cuda" to "cpu"; everything else is real."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cells.specs import mask_and_cells
from tests.cells.test_segment_cells import run_to_end
from tests.slides.samples import sample_slide_path
from wsitui.core.digest import sha256_file
from wsitui.core.records import JobState
from wsitui.models.device import cuda_visible
from wsitui.models.source import shipped_source

distributed = pytest.importorskip("distributed")
pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[2]


def _fake_gpu() -> None:
    """On the worker: its device check says yes to CUDA and runs on the CPU."""
    import wsitui.models.loaded as loaded

    real = loaded.pick_device
    loaded.pick_device = lambda d="auto": "cpu" if d.startswith("cuda") else real(d)


@pytest.fixture(scope="module")
def worker_cluster() -> Iterator[tuple[str, object]]:
    """A scheduler here and one `dask worker --nthreads 1 --resources GPU=1` process."""
    with distributed.LocalCluster(
        n_workers=0,
        processes=False,
        protocol="tcp",  # reachable from another process (threads clusters use inproc)
        host="127.0.0.1",
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    ) as cluster:
        address = cluster.scheduler_address
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("OMP_NUM_THREADS", None)  # as a user's shell: torch would default to all cores
        worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "distributed.cli.dask_worker", address),
                *("--nthreads", "1", "--resources", "GPU=1", "--no-dashboard"),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            client = cluster.get_client()
            client.wait_for_workers(1, timeout=120)
            client.run(_fake_gpu)
            yield address, client
        finally:
            worker.terminate()
            worker.wait(30)


@pytest.fixture(scope="module")
def small_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_slide_path(tmp_path_factory, (1536, 1024), 5)


def _loaded_on_worker(source: object) -> tuple[float, str, int]:
    from wsitui.models.loaded import load

    model = load(source, "cpu", 1)  # type: ignore[arg-type]
    return model.pixel_size, model.sha256, model._module.default_window_size  # type: ignore[attr-defined]


def test_what_the_client_reads_from_the_file_is_what_a_worker_loads(worker_cluster):
    """The client plans from the file (no torch); a worker's torch.jit.load agrees."""
    from wsitui.jobs.segment_cells.model_info import describe

    _, client = worker_cluster
    info = describe(shipped_source(), "cuda")
    (loaded,) = client.gather([client.submit(_loaded_on_worker, shipped_source(), pure=False)])
    assert (info.pixel_size, info.sha256, info.info["default_window_size"]) == loaded
    assert info.sha256 == sha256_file(shipped_source().path) and info.device == "cuda"


@pytest.mark.anyio
@pytest.mark.skipif(cuda_visible(), reason="checks a client without a GPU")
async def test_a_cuda_job_on_dask_runs_from_a_client_without_a_gpu(
    tmp_path, small_slide, worker_cluster, monkeypatch
):
    address, _ = worker_cluster

    def no_load_here(*args: object, **kwargs: object) -> None:
        raise AssertionError("the client loaded the model: only the Dask workers may")

    import torch

    import wsitui.models.loaded as loaded

    monkeypatch.setattr(torch.jit, "load", no_load_here)  # this process only, not the worker
    monkeypatch.setattr(loaded, "_load_module", no_load_here)
    spec = mask_and_cells(
        small_slide,
        model="shipped",
        device="cuda",
        backend="dask",
        scheduler_address=address,
        tile_size=512,
    )
    engine, cells_id = await run_to_end(tmp_path / "d", spec)
    job = engine._jobs[cells_id]
    assert job.state is JobState.SUCCEEDED, job.error
    manifest = json.loads((engine.results_dir(job) / "manifest.json").read_text())
    assert manifest["model"]["sha256"] == sha256_file(shipped_source().path)
    assert manifest["model"]["pixel_size"] == 0.5
    assert manifest["cells"] == job.counters["cells"] > 0
    threads = manifest["dask"]["torch_threads_by_worker"]
    assert list(threads.values()) == [1]  # the manifest says what the worker ran with
    assert manifest["model"]["device"] == "cpu"  # what the (faked) GPU worker ran on
    assert manifest["backend"] == "dask" and manifest["tiles"]["batch_size"] == 1
    assert set(manifest["timings"]) >= {"read", "infer", "post", "wait_read"}
