"""The Prometheus view of `Metrics.snapshot`: one collector, read at every scrape.

Names follow Prometheus conventions: the `wsitui_` prefix, base units (seconds), `_total` on
counters. Label values are bounded: job types, job states, resource names (declared by the
executors), a fixed set of outcomes, and at most `MAX_BRANCH_LABELS` branch names plus
`(other)`. Tenant names and job ids are never labels: tenants appear as aggregate gauges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from wsitui.core.metrics import Histogram, MetricsSnapshot

# name, type, labels, help: the README table is generated from the same list (see docs).
METRICS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("wsitui_queued_jobs", "gauge", (), "Jobs queued to run: started by the user, not running."),
    ("wsitui_branch_queued_jobs", "gauge", ("branch",), "Queued jobs per branch name."),
    ("wsitui_pending_jobs", "gauge", (), "PENDING jobs, held ones included (admission bound)."),
    ("wsitui_running_jobs", "gauge", (), "Jobs running now."),
    ("wsitui_workers", "gauge", ("state",), "Workers by state: busy or free."),
    ("wsitui_resource_used", "gauge", ("resource",), "Units of a resource held (e.g. gpu)."),
    ("wsitui_resource_capacity", "gauge", ("resource",), "Units of a resource available."),
    ("wsitui_tenants", "gauge", ("state",), "Tenants by state: active or waiting."),
    ("wsitui_job_latency_seconds", "histogram", ("job_type",), "Start to end of job runs."),
    ("wsitui_job_queue_wait_seconds", "histogram", ("job_type",), "Queued to started."),
    ("wsitui_tiles_processed_total", "counter", ("job_type",), "Tiles processed."),
    ("wsitui_jobs_finished_total", "counter", ("job_type", "state"), "Jobs ended, by state."),
    ("wsitui_submissions_total", "counter", ("outcome",), "Submissions by admission outcome."),
)
_HELP = {name: text for name, _, _, text in METRICS}
# Besides these, one counter for each total the job types declare (`Executor.totals`, e.g.
# wsitui_cells_found_total), served after wsitui_tiles_processed_total.


def _gauge(name: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, _HELP[name], labels=list(labels))


def _counter(name: str, labels: tuple[str, ...] = ()) -> CounterMetricFamily:
    # prometheus-client adds `_total` back when it writes a counter out.
    return CounterMetricFamily(name.removesuffix("_total"), _HELP[name], labels=list(labels))


def _histogram(name: str, data: dict[str, Histogram]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, _HELP[name], labels=["job_type"])
    for job_type, hist in sorted(data.items()):
        buckets = [
            ("+Inf" if bound == float("inf") else f"{bound:g}", float(n))
            for bound, n in hist.cumulative()
        ]
        family.add_metric([job_type], buckets, hist.total)
    return family


def families(snap: MetricsSnapshot) -> list[Metric]:
    """Every metric family of one snapshot, in the order of `METRICS`."""
    queued = _gauge("wsitui_queued_jobs")
    queued.add_metric([], snap.queued)
    branches = _gauge("wsitui_branch_queued_jobs", ("branch",))
    for branch, depth in sorted(snap.queued_by_branch.items()):
        branches.add_metric([branch], depth)
    pending = _gauge("wsitui_pending_jobs")
    pending.add_metric([], snap.pending)
    running = _gauge("wsitui_running_jobs")
    running.add_metric([], snap.running)
    workers = _gauge("wsitui_workers", ("state",))
    workers.add_metric(["busy"], snap.workers_busy)
    workers.add_metric(["free"], snap.workers_free)
    used = _gauge("wsitui_resource_used", ("resource",))
    cap = _gauge("wsitui_resource_capacity", ("resource",))
    for name, (in_use, capacity) in sorted(snap.resources.items()):
        used.add_metric([name], in_use)
        cap.add_metric([name], capacity)
    tenants = _gauge("wsitui_tenants", ("state",))
    tenants.add_metric(["active"], snap.tenants_active)
    tenants.add_metric(["waiting"], snap.tenants_waiting)
    tiles = _counter("wsitui_tiles_processed_total", ("job_type",))
    for job_type, n in sorted(snap.tiles.items()):
        tiles.add_metric([job_type], n)
    totals = []
    for total, n in snap.totals:
        family = CounterMetricFamily(total.metric.removesuffix("_total"), total.help, labels=[])
        family.add_metric([], n)
        totals.append(family)
    finished = _counter("wsitui_jobs_finished_total", ("job_type", "state"))
    for (job_type, state), n in sorted(snap.outcomes.items()):
        finished.add_metric([job_type, state], n)
    submissions = _counter("wsitui_submissions_total", ("outcome",))
    submissions.add_metric(["admitted"], snap.submissions_admitted)
    for reason, n in sorted(snap.submissions_refused.items()):
        submissions.add_metric([reason], n)
    return [
        queued,
        branches,
        pending,
        running,
        workers,
        used,
        cap,
        tenants,
        _histogram("wsitui_job_latency_seconds", dict(snap.latency)),
        _histogram("wsitui_job_queue_wait_seconds", dict(snap.queue_wait)),
        tiles,
        *totals,
        finished,
        submissions,
    ]


class SnapshotCollector(Collector):
    """Reads a fresh snapshot at every scrape (on the engine's loop thread)."""

    def __init__(self, snapshot: Callable[[], MetricsSnapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from families(self._snapshot())


def registry_for(snapshot: Callable[[], MetricsSnapshot]) -> CollectorRegistry:
    """A registry of its own (not the global one): only wsitui's metrics, nothing per process."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    return registry
