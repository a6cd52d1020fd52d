"""Prometheus metrics of one app, in its own registry (several apps can live in one process).

HTTP (recorded by vistas.serving.observe for every request):
    vistas_http_requests_total{method,route,status}           counter
    vistas_http_request_duration_seconds{method,route}        histogram
    vistas_http_errors_total{route,status,code}               counter, `code` of the JSON error
    vistas_http_requests_in_progress                          gauge
Batching (recorded by vistas.serving.batching's worker threads, per model and tower):
    vistas_batch_size_rows{model,tower}                       histogram, rows per model call
    vistas_batch_requests{model,tower}                        histogram, requests per model call
    vistas_model_seconds{model,tower}                         histogram, duration of a model call
    vistas_queue_wait_seconds{model,tower}                    histogram, a request's wait for its batch
    vistas_queue_depth{model,tower}                           gauge, requests waiting (read at scrape)
    vistas_patch_size_images_total{model,patch_size}          counter, images embedded per patch size
    vistas_batch_rows_running{model,tower}                    gauge, rows in model calls under way
    vistas_batch_dropped_total{model,tower}                   counter, queued requests whose client left
Collections (read at scrape time from the app's vistas.index.Collections):
    vistas_collection_unavailable{collection}                 gauge, 1 per collection on disk that could not
                                                              be opened (damaged, locked by another process)
    vistas_collection_recoveries_total{collection,reason}     counter, index rebuilds from SQLite at open,
                                                              by what was wrong (snapshot_checksum, info_checksum,
                                                              self_check, writes_lost, log_gap, ...: see
                                                              vistas.index.snapshots.Damage)
Server:
    vistas_ready                                              gauge, 1 when models are loaded and not draining
    vistas_log_records_dropped_total                          counter, log lines dropped because stderr
                                                              was not read fast enough (vistas.serving.logs)

`route` is the route template ("/v1/collections/{name}/items"), never the raw path, so
the number of series stays bounded whatever clients send.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: F401 - re-exported for the route
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from vistas.serving.batching import BatchObserver, BatchStats
from vistas.serving.logs import dropped_records

# Seconds: 1 ms (a cached health probe) to 60 s (a large upsert on a busy CPU).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "vistas_http_requests", "HTTP requests by route and status.", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "vistas_http_request_duration_seconds",
            "Time from the request's arrival to its last response byte.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "vistas_http_errors", "Error responses by route, status and error code.", ["route", "status", "code"],
            registry=r,
        )
        self.in_progress = Gauge("vistas_http_requests_in_progress", "HTTP requests being handled.", registry=r)
        labels = ["model", "tower"]
        self.batch_rows = Histogram(
            "vistas_batch_size_rows", "Rows per batched model call.", labels, buckets=SIZE_BUCKETS, registry=r
        )
        self.batch_requests = Histogram(
            "vistas_batch_requests", "Requests per batched model call.", labels, buckets=SIZE_BUCKETS, registry=r
        )
        self.model_time = Histogram(
            "vistas_model_seconds", "Duration of one model call.", labels, buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_wait = Histogram(
            "vistas_queue_wait_seconds", "Time a request waited for its batch to start.", labels,
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.queue_depth = Gauge("vistas_queue_depth", "Requests waiting in a batching queue.", labels, registry=r)
        self.running_rows = Gauge(
            "vistas_batch_rows_running", "Rows in model calls under way (0 when the model is idle).", labels, registry=r
        )
        self.dropped = Counter(
            "vistas_batch_dropped", "Queued requests skipped because their client disconnected.", labels, registry=r
        )
        self.patch_size_images = Counter(
            "vistas_patch_size_images", "Images embedded per patch size (FlexiViT bundles serve several).",
            ["model", "patch_size"], registry=r,
        )
        self.ready = Gauge("vistas_ready", "1 when the models are loaded and the server is not draining.", registry=r)
        r.register(_DroppedLogRecords())
        self._collections = _CollectionHealth()
        r.register(self._collections)

    def request_done(self, method: str, route: str, status: int, seconds: float, error_code: str | None) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
        if status >= 400:
            self.errors.labels(route, str(status), error_code or "unknown").inc()

    def batch_observer(self, model: str) -> BatchObserver:
        """A callback for vistas.serving.batching that records one model's batches."""

        def observe(stats: BatchStats) -> None:
            labels = (model, stats.tower)
            if stats.dropped:
                self.dropped.labels(*labels).inc(stats.dropped)
            if stats.requests == 0:
                return
            self.batch_rows.labels(*labels).observe(stats.rows)
            self.batch_requests.labels(*labels).observe(stats.requests)
            self.model_time.labels(*labels).observe(stats.run_s)
            for w in stats.waits_s:
                self.queue_wait.labels(*labels).observe(w)

        return observe

    def watch_queues(self, models: dict) -> None:
        """Queue depth and running-rows gauges read each batching runtime's queues at scrape time."""
        for name, model in models.items():
            runtime = model.runtime
            if not hasattr(runtime, "queue_depth"):
                continue
            for tower in model.spec.towers:  # "image", "text", and a FlexiViT bundle's "image@p<P>"
                self.queue_depth.labels(name, tower).set_function(lambda rt=runtime, t=tower: rt.queue_depth(t))
                self.running_rows.labels(name, tower).set_function(lambda rt=runtime, t=tower: rt.running_rows(t))

    def watch_collections(self, source) -> None:
        """`source()` -> the app's Collections (or None), read at each scrape."""
        self._collections.source = source

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _DroppedLogRecords:
    """The process's dropped-log-line count, read at scrape time (logging is per process, not per app)."""

    def collect(self):
        yield CounterMetricFamily(
            "vistas_log_records_dropped", "Log lines dropped because stderr was not read fast enough.",
            value=dropped_records(),
        )

    def describe(self):
        return [CounterMetricFamily("vistas_log_records_dropped", "")]


class _CollectionHealth:
    """Unavailable collections and index recoveries, read from the collections at scrape time
    (the recoveries happen while the collections open, before any request)."""

    def __init__(self):
        self.source = lambda: None

    def collect(self):
        unavailable = GaugeMetricFamily(
            "vistas_collection_unavailable", "1 for each collection on disk that could not be opened.",
            labels=["collection"],
        )
        recoveries = CounterMetricFamily(
            "vistas_collection_recoveries", "Index rebuilds from SQLite at open, by what was wrong with the index.",
            labels=["collection", "reason"],
        )
        collections = self.source()
        if collections is not None:
            for name in collections.unavailable():
                unavailable.add_metric([name], 1)
            for collection in collections.all():
                for reason, n in sorted(collection.recoveries.items()):
                    recoveries.add_metric([collection.name, reason], n)
        yield unavailable
        yield recoveries

    def describe(self):
        return [GaugeMetricFamily("vistas_collection_unavailable", "", labels=["collection"]),
                CounterMetricFamily("vistas_collection_recoveries", "", labels=["collection", "reason"])]
