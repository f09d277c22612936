"""SEGMENT_CELLS tile work on a Dask cluster: the sibling of `pipeline.run_tiles`.

wsitui keeps every scheduling rule (lanes, tenants, workers, resources) in its own engine; a
running job whose `backend` is "dask" hands only its tiles to Dask distributed:

    job thread (client) --submit, at most `window` in flight--> scheduler --> workers
         ^                                                                    |
         +-- CellRecords bytes (polygons) <-- as_completed(...).add() --------+

Each finished tile is written as the same shard the local backend writes, and progress goes to
the same callback, so resume, merge, outputs, progress, stage and counters do not depend on the
backend. The model is loaded once per worker and slides are opened on the workers
(`dask_worker.py`). Cancel is checked every 0.1 s and cancels the job's futures. A lost worker
costs only its tiles (the scheduler re-runs them). A scheduler that cannot be reached, or is
lost mid-job, or a cluster with no (GPU) worker, ends the job with one line: JobError.

Every network wait has a deadline: connecting and the scheduler's first answer
`CONNECT_S` (a peer that accepts TCP and never answers fails then too), each request to the
scheduler `REQUEST_S`, and a scheduler lost (or without workers) mid-job `LOST_AFTER`.

The client never loads the model: it reads the model's pixel size and hash from the file
(`model_info.py`, no torch) and the workers load it for their tiles, refusing a file whose hash
is not the client's; so a client without a GPU runs a `device = "cuda"` job on GPU workers.
`DaskBackend` is this module's side of the backend contract (`protocol.py`).

`DaskClusters` holds the session's clients (one per scheduler address, plus a LocalCluster
started on first use when a job names no address) and the per-worker tile rates the TUI's
metrics screen shows (`status()`: no dask call, safe on the UI thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from distributed import Client, as_completed
from distributed.client import FutureCancelledError
from distributed.comm.core import CommClosedError

from wsitui.core.cpus import available_cpus
from wsitui.core.executor import JobError
from wsitui.jobs.common.grid import Tile
from wsitui.jobs.common.shards import ShardStore
from wsitui.jobs.segment_cells.backends.dask_worker import (
    CellsPlugin,
    TileResult,
    make_plugin,
    segment_tile,
    slim_plan,
)
from wsitui.jobs.segment_cells.backends.local import _count_cells, shard_key
from wsitui.jobs.segment_cells.backends.protocol import Progress, TileRun
from wsitui.jobs.segment_cells.dask_info import ClusterStatus, WorkerRate
from wsitui.jobs.segment_cells.plan import CellPlan
from wsitui.models.errors import ModelError
from wsitui.models.source import ModelSource
from wsitui.observability.libraries import route_library_output
from wsitui.slides.errors import SlideError

route_library_output()  # `import distributed` gave its loggers a stderr handler: to the log

if TYPE_CHECKING:
    from distributed import Future

LOCAL = "local"  # the address key of the session's own LocalCluster
CONNECT_S = 5.0  # connect to a scheduler and get its first answer, all retries included
REQUEST_S = 10.0  # one request to a connected scheduler (workers, plugin registration)
LOST_AFTER = 10.0  # seconds without a scheduler (or with no worker) before the job fails
RATE_WINDOW = 30.0  # seconds over which a worker's tiles/s is measured
POLL = 0.1  # the client checks cancel and the cluster's health this often


@dataclass(slots=True)
class DaskTimings:
    read: float = 0.0  # summed over workers
    infer: float = 0.0
    post: float = 0.0
    wait: float = 0.0  # the client waiting for results (the job's wall time on the cluster)


@dataclass(slots=True)
class DaskRun:
    """What a job's Dask run used (for its manifest)."""

    scheduler: str
    dashboard: str
    workers: int  # workers when the job started
    tiles_by_worker: dict[str, int]
    timings: DaskTimings
    torch_threads_by_worker: dict[str, int] = field(default_factory=dict)  # CPU workers
    devices: set[str] = field(default_factory=set)  # where the workers' models ran
    runtimes: set[str] = field(default_factory=set)  # what ran the network on CPU workers

    def manifest(self) -> dict[str, Any]:
        """The manifest's `dask` block."""
        return {
            "scheduler": self.scheduler,
            "dashboard": self.dashboard,
            "workers": self.workers,
            "tiles_by_worker": self.tiles_by_worker,
            "torch_threads_by_worker": self.torch_threads_by_worker,
        }


@dataclass(slots=True)
class _Cluster:
    client: Client
    local: Any = None  # distributed.LocalCluster when the session started it
    workers: dict[str, tuple[int, int]] = field(default_factory=dict)  # addr: (threads, gpus)
    tiles: dict[str, int] = field(default_factory=dict)
    recent: deque[tuple[float, str]] = field(default_factory=deque)
    plugins: set[str] = field(default_factory=set)


def local_size(cores: int | None = None) -> tuple[int, int, int]:
    """(worker processes, threads per worker, model CPU threads per worker) for this machine:
    one process per two cores, two threads each (one task reads and extracts while another
    runs the model), the cores shared by the processes' models."""
    cores = max(1, available_cpus() if cores is None else cores)
    processes = max(1, cores // 2)
    return processes, 2, max(1, cores // processes)


class DaskClusters:
    """The session's Dask clients; thread-safe. Close with the executor."""

    def __init__(
        self,
        *,
        local_processes: bool = True,
        local_workers: int | None = None,
        local_threads: int | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._clusters: dict[str, _Cluster] = {}
        self._local_processes = local_processes
        self._local_workers = local_workers
        self._local_threads = local_threads

    def _connect(self, address: str | None) -> tuple[str, _Cluster]:
        key = address or LOCAL
        with self._lock:
            old = self._clusters.get(key)
            if old is not None and old.client.status == "running":
                return key, old
            self._clusters.pop(key, None)
        if old is not None:  # a client whose scheduler went away: start afresh (a retry)
            with contextlib.suppress(Exception):
                old.client.close(timeout=2)
            if old.local is not None:
                with contextlib.suppress(Exception):
                    old.local.close(timeout=5)
        if address is None:
            cluster = self._start_local()
        else:
            began = time.monotonic()
            try:
                _probe(address, CONNECT_S)  # bounded: Client() alone waits forever on a mute peer
                left = max(1.0, CONNECT_S - (time.monotonic() - began))
                client = _call(
                    lambda: Client(address, timeout=left, set_as_default=False, name="wsitui"),
                    left,
                    "connect",
                )
            except (OSError, TimeoutError, ValueError) as e:
                raise JobError(
                    f"dask scheduler {address} cannot be reached ({_why(e)}): start it "
                    "(`dask scheduler`) or fix scheduler_address, then retry the job"
                ) from None
            cluster = _Cluster(client)
        with self._lock:
            if key in self._clusters:  # another job connected meanwhile: keep one
                extra, cluster = cluster, self._clusters[key]
            else:
                self._clusters[key], extra = cluster, None
        if extra is not None:
            _close(extra)
        return key, cluster

    def _start_local(self) -> _Cluster:
        from distributed import LocalCluster

        processes, threads, _ = local_size()
        try:
            local = LocalCluster(
                n_workers=self._local_workers or processes,
                threads_per_worker=self._local_threads or threads,
                processes=self._local_processes,
                dashboard_address=":0",  # any free port: the link is in the job's manifest
                silence_logs=logging.ERROR,  # the TUI owns the terminal
            )
            client = Client(local, set_as_default=False, name="wsitui")
        except Exception as e:
            raise JobError(
                f"could not start a local Dask cluster ({_first_line(e)}): use backend = 'local'"
            ) from None
        return _Cluster(client, local)

    def client(self, address: str | None) -> Client:
        return self._connect(address)[1].client

    def status(self) -> list[ClusterStatus]:
        """Clusters in use and their workers' tile rates (no dask call: any thread)."""
        now = time.monotonic()
        out = []
        with self._lock:
            for key, c in self._clusters.items():
                recent: dict[str, int] = {}
                while c.recent and c.recent[0][0] < now - 2 * RATE_WINDOW:
                    c.recent.popleft()
                for t, w in c.recent:
                    if t >= now - RATE_WINDOW:
                        recent[w] = recent.get(w, 0) + 1
                rates = tuple(
                    WorkerRate(
                        addr,
                        threads,
                        gpus,
                        c.tiles.get(addr, 0),
                        round(recent.get(addr, 0) / RATE_WINDOW, 3),
                    )
                    for addr, (threads, gpus) in sorted(c.workers.items())
                )
                out.append(
                    ClusterStatus(
                        address=_scheduler_address(c.client),
                        local=key == LOCAL,
                        dashboard=_dashboard(c.client),
                        workers=rates,
                        tiles_per_s=round(sum(recent.values()) / RATE_WINDOW, 3),
                    )
                )
        return out

    def _record(self, cluster: _Cluster, worker: str) -> None:
        with self._lock:
            cluster.tiles[worker] = cluster.tiles.get(worker, 0) + 1
            cluster.recent.append((time.monotonic(), worker))
            if len(cluster.recent) > 100_000:
                cluster.recent.popleft()

    def _refresh_workers(self, cluster: _Cluster) -> dict[str, tuple[int, int]]:
        client = cluster.client
        info = _call(lambda: client.scheduler_info(n_workers=-1), REQUEST_S, "list workers")
        workers = {
            addr: (int(w.get("nthreads", 1)), int(w.get("resources", {}).get("GPU", 0)))
            for addr, w in info.get("workers", {}).items()
        }
        with self._lock:
            cluster.workers = workers
        return workers

    def close(self) -> None:
        with self._lock:
            clusters = list(self._clusters.values())
            self._clusters.clear()
        for c in clusters:
            _close(c)

    @contextlib.contextmanager
    def _scheduler_errors(self, address: str | None) -> Any:
        try:
            yield
        except (CommClosedError, ConnectionError, TimeoutError) as e:
            raise JobError(
                f"lost the dask scheduler {address or 'of the local cluster'} "
                f"({type(e).__name__}: {_first_line(e)}): retry the job when it is back"
            ) from None

    def _prepare(
        self,
        address: str | None,
        source: ModelSource,
        device: str,
        set_stage: Callable[[str], None],
        sha256: str = "",
    ) -> tuple[_Cluster, dict[str, tuple[int, int]], CellsPlugin, dict[str, int] | None]:
        """Connect, list the workers, check for GPU workers, register the model's plugin."""
        set_stage("connecting to Dask" if address else "starting a local Dask cluster")
        _, cluster = self._connect(address)
        client = cluster.client
        workers = self._refresh_workers(cluster)
        gpu = device.startswith("cuda")
        if gpu and workers and not any(g for _, g in workers.values()):
            raise JobError(
                f"device {device!r} but no worker of dask scheduler {_scheduler_address(client)} "
                "has a GPU: start workers with `dask worker ADDRESS --resources GPU=1`, or use "
                "device = 'auto'"
            )
        # Torch threads: each worker's own thread count (see dask_worker), never the client's.
        plugin = make_plugin(source, device, None, sha256)
        if plugin.name not in cluster.plugins:
            _call(
                lambda: client.register_plugin(plugin, name=plugin.name),
                REQUEST_S,
                "register the model",
            )
            cluster.plugins.add(plugin.name)
        return cluster, workers, plugin, ({"GPU": 1} if gpu else None)

    def run_tiles(
        self,
        address: str | None,
        *,
        slide: str,
        plan: CellPlan,
        source: ModelSource,
        device: str,
        shards: ShardStore,
        min_area_px: float,
        on_progress: Callable[[Progress], None],
        check_cancel: Callable[[], None],
        set_stage: Callable[[str], None],
        window: int | None = None,
        sha256: str = "",
        postprocess: dict[str, Any] | None = None,
    ) -> DaskRun:
        """Segment every planned tile without a shard on the cluster at `address` (None: the
        session's LocalCluster); shards hold the results, exactly as `pipeline.run_tiles`."""
        with self._scheduler_errors(address):
            cluster, workers, plugin, resources = self._prepare(
                address, source, device, set_stage, sha256
            )
            client = cluster.client
            timings = DaskTimings()
            dashboard = _dashboard(client)
            where = f"{len(workers)} Dask worker{'s' if len(workers) != 1 else ''}"
            set_stage(f"segmenting on {where}" + (f" · {dashboard}" if dashboard else ""))

            todo = [t for t in plan.tiles if not shards.has(shard_key(t))]
            done_tiles = [t for t in plan.tiles if shards.has(shard_key(t))]
            state = Progress(plan.skipped + len(done_tiles), _count_cells(shards, done_tiles))
            on_progress(state)
            run = DaskRun(_scheduler_address(client), dashboard, len(workers), {}, timings)
            if not todo:
                return run
            task_plan = slim_plan(plan)
            token = uuid.uuid4().hex[:12]
            pending = iter(todo)
            inflight: dict[str, tuple[Future, Tile]] = {}

            def submit() -> Future | None:
                tile = next(pending, None)
                if tile is None:
                    return None
                fut = client.submit(
                    segment_tile,
                    plugin,
                    slide,
                    task_plan,
                    tile,
                    min_area_px,
                    postprocess,
                    key=f"wsitui-cells-{token}-{shard_key(tile)}",
                    resources=resources,
                )
                inflight[fut.key] = (fut, tile)
                return fut

            def width() -> int:
                threads = sum(t for t, _ in workers.values()) or 1
                return window or min(512, max(4, 2 * threads))

            began = time.perf_counter()
            ac = _Completed(loop=client.loop, with_results=True, raise_errors=False)
            try:
                for _ in range(width()):
                    fut = submit()
                    if fut is None:
                        break
                    ac.add(fut)
                health = _Health()
                last_refresh = time.monotonic()
                while inflight:
                    check_cancel()
                    if not ac.has_ready():
                        with ac.thread_condition:
                            ac.thread_condition.wait(timeout=POLL)
                    if not ac.has_ready():
                        now = time.monotonic()
                        health.check(client, workers)
                        if now - last_refresh > 2.0 and client.status == "running":
                            with contextlib.suppress(Exception):
                                workers = self._refresh_workers(cluster)
                            last_refresh = now
                        continue
                    for fut, result in ac.next_batch(block=False):
                        _, tile = inflight.pop(fut.key)
                        res = _result(fut, result, tile, client)
                        fut.release()
                        shards.put_bytes(shard_key(tile), res.data)
                        timings.read += res.read
                        timings.infer += res.infer
                        timings.post += res.post
                        run.tiles_by_worker[res.worker] = run.tiles_by_worker.get(res.worker, 0) + 1
                        if res.torch_threads:
                            run.torch_threads_by_worker[res.worker] = res.torch_threads
                        if res.device:
                            run.devices.add(res.device)
                        if res.network_runtime:
                            run.runtimes.add(res.network_runtime)
                        self._record(cluster, res.worker)
                        state.tiles_done += 1
                        state.cells += res.cells
                        state.odd += res.odd
                        on_progress(Progress(state.tiles_done, state.cells, state.odd))
                        while len(inflight) < width():
                            nxt = submit()
                            if nxt is None:
                                break
                            ac.add(nxt)
            finally:
                if inflight:  # canceled or failed: the job's outstanding tiles stop here
                    futures = [f for f, _ in inflight.values()]
                    inflight.clear()
                    with contextlib.suppress(Exception):
                        _call(lambda: client.cancel(futures, force=True), REQUEST_S, "cancel")
                ac.clear()
                timings.wait = time.perf_counter() - began
            return run


@dataclass(frozen=True, slots=True)
class _Untracked:
    """What `_Completed` gives in place of a result it failed to wait for."""

    error: Exception


class _Completed(as_completed):
    """`as_completed` whose tracking of a future cannot fail unseen.

    distributed waits for each added future in a coroutine on the client's loop
    (`_track_future`). One that raises anything but a cancel (the connection failing while the
    result is fetched, a result that does not deserialise) is only logged by the loop: the
    future never comes out, and a job waiting for its last tiles would wait forever on a
    healthy cluster. Here the failure comes out in the future's place, as `_Untracked`, and
    fails the job with one line (`_result`).
    """

    async def _track_future(self, future: Future) -> None:
        try:
            await super()._track_future(future)
        except Exception as e:
            with self.lock:
                if future not in self.futures:
                    return  # it came out before the failure
                self.futures[future] -= 1
                if not self.futures[future]:
                    del self.futures[future]
                self.queue.put_nowait((future, _Untracked(e)))
            with self.thread_condition:
                self.thread_condition.notify()


def _result(fut: Future, result: Any, tile: Tile, client: Client) -> TileResult:
    where = f"tile {tile.col},{tile.row}"
    if isinstance(result, _Untracked):
        e = result.error
        raise JobError(
            f"{where}: waiting for its result from the dask scheduler "
            f"{_scheduler_address(client)} failed ({type(e).__name__}: {_first_line(e)}): "
            "retry the job"
        )
    if fut.status == "finished" and isinstance(result, TileResult):
        return result
    if fut.status != "error" or not isinstance(result, tuple):
        why = getattr(result, "reason", "") if isinstance(result, FutureCancelledError) else ""
        raise JobError(
            f"{where} was lost ({why or fut.status}): the dask scheduler "
            f"{_scheduler_address(client)} went away or dropped it; retry the job when the "
            "cluster is back"
        )
    _, exc, _ = result
    if isinstance(exc, (ModelError, SlideError, JobError)):
        raise JobError(f"{exc} (on a Dask worker)") from None
    if type(exc).__name__ == "KilledWorker":
        raise JobError(
            f"{where} killed Dask workers several times (out of memory?): give workers more "
            "memory or use a smaller tile_size, then retry"
        ) from None
    raise JobError(f"{where} failed on a Dask worker: {type(exc).__name__}: {_first_line(exc)}")


class _Health:
    """Fails the job once the cluster has been unable to make progress for LOST_AFTER s."""

    def __init__(self) -> None:
        self.since: float | None = None

    def check(self, client: Client, workers: dict[str, tuple[int, int]]) -> None:
        problem = _health(client, workers)
        now = time.monotonic()
        if problem is None:
            self.since = None
        elif self.since is None:
            self.since = now
        elif now - self.since > LOST_AFTER:
            raise JobError(problem)


def _health(client: Client, workers: dict[str, tuple[int, int]]) -> str | None:
    """A one-line problem when the cluster cannot make progress, else None."""
    if client.status != "running":
        return (
            f"lost the dask scheduler {_scheduler_address(client)} ({client.status}): restart it, "
            "then retry the job"
        )
    if not workers:
        addr = _scheduler_address(client)
        return f"dask scheduler {addr} has no workers: start `dask worker {addr}`, then retry"
    return None


def _scheduler_address(client: Client) -> str:
    try:
        return str(client.scheduler.address)
    except Exception:
        return "?"


def _dashboard(client: Client) -> str:
    try:
        return str(client.dashboard_link or "")
    except Exception:  # no bokeh, or no dashboard service
        return ""


def _close(cluster: _Cluster) -> None:
    with contextlib.suppress(Exception):
        cluster.client.close(timeout=5)
    if cluster.local is not None:
        with contextlib.suppress(Exception):
            cluster.local.close(timeout=10)


def _probe(address: str, deadline_s: float) -> None:
    """Connect to a scheduler and read its handshake within `deadline_s` in all (OSError or
    TimeoutError otherwise). distributed's own connect bounds only the TCP connect: a peer
    that accepts and never answers would hold the job forever."""
    import socket

    from distributed.comm import connect
    from distributed.comm.addressing import parse_address, parse_host_port

    began = time.monotonic()
    scheme, loc = parse_address(address)
    if scheme == "tcp":  # a closed port or unknown host says so at once, not after retries
        try:
            socket.create_connection(parse_host_port(loc), timeout=deadline_s).close()
        except TimeoutError:
            raise TimeoutError(f"no answer within {deadline_s:g} s") from None
        except socket.gaierror as e:
            raise OSError(f"unknown host ({e.strerror})") from None
        except OSError as e:
            raise OSError(e.strerror or str(e)) from None
        deadline_s = max(0.1, deadline_s - (time.monotonic() - began))

    async def handshake() -> None:
        comm = await connect(address, timeout=deadline_s)
        comm.abort()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(handshake(), deadline_s))
    except TimeoutError:
        raise TimeoutError(f"no answer within {deadline_s:g} s") from None
    finally:
        loop.close()


def _call(fn: Callable[[], Any], deadline_s: float, what: str) -> Any:
    """`fn()` (a blocking request to a scheduler) within `deadline_s`, else TimeoutError: run in
    a daemon thread, left behind if the peer never answers."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # handed to the caller
            box["error"] = e

    thread = threading.Thread(target=target, name=f"wsitui-dask-{what}", daemon=True)
    thread.start()
    thread.join(deadline_s)
    if thread.is_alive():
        raise TimeoutError(f"no answer to {what} within {deadline_s:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _why(exc: BaseException) -> str:
    """Why a connect failed, without distributed's own (untrue) timings."""
    text = _first_line(exc)
    if isinstance(exc, TimeoutError) or text.startswith("Timed out trying to connect"):
        return f"no answer within {CONNECT_S:g} s"
    return text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


class DaskBackend:
    """The tiles on a Dask cluster (`address`, or the session's LocalCluster): the client
    reads the model's pixel size and hash from its file; the workers load it."""

    name = "dask"

    def __init__(
        self,
        clusters: DaskClusters,
        source: ModelSource,
        params: Any,  # SegmentCellsParams
        set_stage: Callable[[str], None],
    ) -> None:
        self.clusters, self.source, self.params = clusters, source, params
        self.set_stage = set_stage
        self.model: Any = None

    def describe(self, check_cancel: Callable[[], None]) -> Any:
        from wsitui.jobs.segment_cells.model_info import describe

        self.model = describe(self.source, self.params.device)
        return self.model

    def run_tiles(
        self,
        reader: Any,
        plan: CellPlan,
        shards: ShardStore,
        *,
        min_area_px: float,
        on_progress: Callable[[Progress], None],
        check_cancel: Callable[[], None],
        on_labels: Callable[[Tile, Any], None] | None,
    ) -> TileRun:
        from wsitui.jobs.segment_cells.accel import job_overrides, window_size

        params = self.params
        model = self.model if self.model is not None else self.describe(check_cancel)
        window = None
        if not model.is_classical:  # as the local backend runs the model (accel.accelerate)
            window = window_size(
                model.info.get("default_window_size"), params.max_nucleus_um, plan.model_px
            )
        # instanseg's kwargs and wsitui's nuclear check, as the local backend's own call passes them
        postprocess = job_overrides(
            window,
            params.nuclear_check,
            None if model.is_classical else params.mask_threshold,
            params.classical_fill,
        )
        run = self.clusters.run_tiles(
            params.scheduler_address,
            slide=str(reader.path),
            plan=plan,
            source=self.source,
            device=params.device,  # each worker picks its own device for "auto"
            shards=shards,
            min_area_px=min_area_px,
            on_progress=on_progress,
            check_cancel=check_cancel,
            set_stage=self.set_stage,
            sha256="" if model.is_classical else model.sha256,
            postprocess=postprocess or None,
        )
        t = run.timings
        info = dict(model.manifest())
        if run.devices:
            info["device"] = ",".join(sorted(run.devices))
        if run.runtimes:  # several only when workers differ (one without the split)
            info["network_runtime"] = "; ".join(sorted(run.runtimes))
        if window is not None:
            info["window_size"] = window
        info.update(precision="fp32", batch_size=1)
        return TileRun(
            # a worker's task reads, then predicts: the model waits for all of its reading
            timings={
                k: round(v, 4) for k, v in (("read", t.read), ("infer", t.infer), ("post", t.post))
            }
            | {"wait_read": round(t.read, 4)},
            model=info,
            batch_size=1,
            dask=run.manifest(),
        )
