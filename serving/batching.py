"""Dynamic batching across requests, as a runtime that wraps a runtime.

    runtime = BatchingRuntime(OnnxRuntime(bundle), BatchConfig(max_batch_size=32, max_delay_ms=0))
    runtime.run("image", {"pixel_values": x})   # blocks this request thread until its rows are done

It has the surface of every runtime (`spec`, `bundle_dir`, `inputs`, `run`), so
ServedModel and every route above it batch without knowing. Each tower has its own
bounded queue and its own worker threads (`workers`, one by default). `run` is called from request threads (routes
use `run_in_threadpool`), after preprocessing, so image decoding and tokenising happen
in those threads while the worker runs the model; the event loop never waits here.

The worker takes the oldest queued request and then waits up to `max_delay_ms`, counted
from that request's arrival, for more rows, up to `max_batch_size`; requests whose
tensors have other trailing shapes wait for a later batch. The named tensors are
concatenated on the batch axis, run once, and the (B, D) result is split back. This is
the scheme of NVIDIA Triton's dynamic batcher (`max_queue_delay_microseconds`,
`preferred_batch_size`), and like Triton's queue policy the timeout bounds the time a
request may *wait in the queue*; once its batch runs, it finishes.

Workers: with `workers` = K, K batches of one tower run at once, each a call on the same
onnxruntime session (its weights are shared; Run is thread-safe). This is Triton's
`instance_group { count: K }` on a CPU: with `threads` = cores / K, concurrent requests run
side by side on their own cores instead of splitting every operator across all of them,
which pays where an operator is too small to split well. Measured on 2 cores, bare
onnxruntime at batch 1: one 1-thread session run from 2 threads gave +50 % images/s over one
2-thread session on the bundled model, +10-20 % on a B/16. Through HTTP at concurrency 8,
where decoding and the server share the cores, 2 workers x 1 thread gave the bundled model
~15 % more requests/s (server CPU per request 11-12 -> 9-11 ms) but the B/16 ~10 % fewer
(3.43 vs 3.80 img/s); a lone request runs on 1 thread, so its latency grows (about 2x on the
B/16). A setting to measure per model and machine, off by default.

Failure isolation: every request's tensors are checked against `inputs(tower)` before
they are queued, so a bad request fails alone; if a batch still fails, its requests are
run one by one so that only the culprit gets the error.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vistas.inference.runtime import check_feeds
from vistas.serving.context import current_request

log = logging.getLogger("vistas.serving.batching")


@dataclass(frozen=True)
class BatchConfig:
    max_batch_size: int = 32  # rows per model call; a larger single request runs alone
    max_delay_ms: float = 0.0  # how long the oldest request may wait for others to join it
    queue_size: int = 64  # requests waiting per tower; beyond it: QueueFull (HTTP 429)
    timeout_s: float = 30.0  # longest wait in the queue; beyond it: QueueTimeout (HTTP 503)
    workers: int = 1  # model calls of one tower running at once (see the module docstring)

    def __post_init__(self):
        if self.max_batch_size < 1 or self.queue_size < 1 or self.workers < 1:
            raise ValueError(f"max_batch_size, queue_size and workers must be >= 1, got {self}")
        if self.max_delay_ms < 0 or self.timeout_s <= 0:
            raise ValueError(f"max_delay_ms must be >= 0 and timeout_s > 0, got {self}")


class QueueFull(Exception):
    def __init__(self, tower: str, size: int, retry_after: int):
        self.retry_after = retry_after
        super().__init__(
            f"The {tower} queue is full ({size} requests waiting); retry in {retry_after} s or send fewer "
            "concurrent requests."
        )


class QueueTimeout(Exception):
    def __init__(self, tower: str, waited: float):
        super().__init__(
            f"The request waited {waited:.1f} s in the {tower} queue without being run (batch_timeout_s); "
            "the server is overloaded, retry later."
        )


class ShuttingDown(Exception):
    def __init__(self):
        super().__init__("The server is shutting down and takes no new work; retry on another replica.")


class ClientGone(Exception):
    """The client disconnected before its queued rows were run; nobody reads the answer."""


@dataclass
class BatchStats:
    """One model call, for metrics: rows and requests in it, run time, each request's queue wait."""

    tower: str
    rows: int
    requests: int
    run_s: float
    waits_s: list[float] = field(default_factory=list)
    dropped: int = 0  # requests whose client had gone, skipped before this batch
    started: float = 0.0  # time.monotonic() when the model call began


BatchObserver = Callable[[BatchStats], None]


class _Job:
    __slots__ = ("feeds", "rows", "signature", "arrived", "gone", "done", "result", "error", "state")

    def __init__(self, feeds: dict[str, np.ndarray], gone: Callable[[], bool]):
        self.feeds = feeds
        self.rows = len(next(iter(feeds.values())))
        # Requests batch together only when every tensor agrees past the batch axis.
        self.signature = tuple((k, v.dtype.str, v.shape[1:]) for k, v in sorted(feeds.items()))
        self.arrived = time.monotonic()
        self.gone = gone
        self.done = threading.Event()
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None
        self.state = "queued"  # -> "running" -> "done"


def _never_gone() -> bool:
    return False


class _TowerQueue:
    """One tower's queue and the worker threads that drain it."""

    def __init__(self, runtime, tower: str, config: BatchConfig, label: str, observer: BatchObserver | None):
        self.runtime, self.tower, self.config, self.observer = runtime, tower, config, observer
        self.specs = runtime.inputs(tower)
        self._queue: deque[_Job] = deque()
        self._cv = threading.Condition()
        self._closing = False
        self._batch_s = 0.0  # moving average of a model call, for Retry-After
        self._running_rows = 0  # rows in model calls under way (a gauge: ops and tests see a call in progress)
        self._threads = [
            threading.Thread(target=self._work, name=f"batcher:{label}:{tower}:{i}", daemon=True)
            for i in range(config.workers)
        ]
        for thread in self._threads:
            thread.start()

    # ---- request threads ------------------------------------------------------------------

    def submit(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        feeds = check_feeds(self.specs, inputs, f"{self.tower} tower")  # a bad request fails alone, here
        ctx = current_request()
        job = _Job(feeds, ctx.gone if ctx is not None else _never_gone)
        with self._cv:
            if self._closing:
                raise ShuttingDown()
            if len(self._queue) >= self.config.queue_size:
                raise QueueFull(self.tower, len(self._queue), self._retry_after())
            self._queue.append(job)
            self._cv.notify()
        if not job.done.wait(self.config.timeout_s):
            with self._cv:
                if job.state == "queued":  # never started: give its place up
                    self._queue.remove(job)
                    raise QueueTimeout(self.tower, time.monotonic() - job.arrived)
            job.done.wait()  # its batch is running: it finishes
        if job.error is not None:
            raise job.error
        return job.result

    def depth(self) -> int:
        return len(self._queue)

    def running_rows(self) -> int:
        return self._running_rows

    def _retry_after(self) -> int:
        """Seconds until the queue has likely drained (at least 1): calls ahead times a call's duration."""
        calls = math.ceil(sum(j.rows for j in self._queue) / self.config.max_batch_size) + 1
        return max(1, math.ceil(calls * self._batch_s / self.config.workers))

    # ---- the worker threads ---------------------------------------------------------------

    def _work(self) -> None:
        while True:
            batch, dropped = self._next_batch()
            if batch is None:
                return
            self._run(batch, dropped)

    def _next_batch(self) -> tuple[list[_Job] | None, int]:
        """Block until there is work; wait up to max_delay for the batch to fill. None: closed and empty."""
        cfg = self.config
        with self._cv:
            while True:
                while not self._queue and not self._closing:
                    self._cv.wait()
                if not self._queue:
                    return None, 0
                deadline = self._queue[0].arrived + cfg.max_delay_ms / 1000
                while self._queue and not self._closing and sum(j.rows for j in self._queue) < cfg.max_batch_size:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cv.wait(remaining)
                if self._queue:  # another worker may have taken it all while this one waited
                    break
            batch, rows, skipped, expired, signature = [], 0, [], [], None
            now = time.monotonic()
            for job in self._queue:
                if job.gone():
                    skipped.append(job)
                    continue
                if now - job.arrived >= cfg.timeout_s:
                    # Its request thread has not woken to give the place up yet (a busy machine
                    # wakes it late); the wait bound holds all the same: it is not run.
                    expired.append(job)
                    continue
                if signature is None:
                    signature = job.signature
                elif job.signature != signature or rows + job.rows > cfg.max_batch_size:
                    continue  # keeps its place for the next batch
                batch.append(job)
                rows += job.rows
                job.state = "running"
                if rows >= cfg.max_batch_size:
                    break
            for job in batch + skipped + expired:
                self._queue.remove(job)
        for job in skipped:
            self._finish(job, error=ClientGone("the client disconnected while its request was queued"))
        for job in expired:
            self._finish(job, error=QueueTimeout(self.tower, now - job.arrived))
        return batch, len(skipped)

    def _run(self, batch: list[_Job], dropped: int) -> None:
        if not batch:
            if dropped and self.observer is not None:
                self.observer(BatchStats(self.tower, 0, 0, 0.0, [], dropped))
            return
        started = time.monotonic()
        rows = sum(j.rows for j in batch)
        with self._cv:
            self._running_rows += rows
        try:
            if len(batch) == 1:
                feeds = batch[0].feeds
            else:  # (sum of rows, ...) per input name, in queue order
                feeds = {k: np.concatenate([j.feeds[k] for j in batch]) for k in batch[0].feeds}
            out, error = self.runtime.run(self.tower, feeds), None
        except Exception as e:  # noqa: BLE001 - isolate the failing request, then hand the error to its caller
            out, error = None, e
        finally:
            with self._cv:
                self._running_rows -= rows
        if error is not None:
            if len(batch) > 1:
                log.warning("a batch of %d %s requests failed (%r); running them one by one", len(batch), self.tower, error)
                for job in batch:
                    self._run([job], 0)
                return
            self._finish(batch[0], error=error)  # raised in the request thread, where the error handler logs it
            return
        run_s = time.monotonic() - started
        self._batch_s = run_s if self._batch_s == 0 else 0.8 * self._batch_s + 0.2 * run_s
        start = 0
        for job in batch:
            self._finish(job, result=out[start : start + job.rows])
            start += job.rows
        if self.observer is not None:
            waits = [started - j.arrived for j in batch]
            self.observer(BatchStats(self.tower, start, len(batch), run_s, waits, dropped, started))

    def _finish(self, job: _Job, *, result: np.ndarray | None = None, error: BaseException | None = None) -> None:
        job.result, job.error, job.state = result, error, "done"
        job.done.set()

    def close(self, timeout: float | None) -> None:
        """Refuse new work, let the workers finish every queued request, then stop them."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))


class BatchingRuntime:
    """A runtime whose `run` batches concurrent calls per tower (see the module docstring).

    name:      label of the worker threads and of the metrics (the model name).
    observer:  called from the worker thread with a BatchStats after every model call.
    """

    def __init__(self, runtime, config: BatchConfig, *, name: str | None = None, observer: BatchObserver | None = None):
        self.inner = runtime
        self.spec = runtime.spec
        self.bundle_dir = runtime.bundle_dir
        self.config = config
        self.name = name or runtime.spec.name
        self._observer = observer
        self._queues: dict[str, _TowerQueue] = {}
        self._lock = threading.Lock()
        self._closed = False

    def inputs(self, tower: str):
        return self.inner.inputs(tower)

    def run(self, tower: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """{name: (B, ...) array} -> float32 (B, D), run together with concurrent calls."""
        rows = {len(v) for v in inputs.values()}
        if rows == {0}:  # nothing to queue for
            return self.inner.run(tower, inputs)
        return self._queue(tower).submit(inputs)

    def queue_depth(self, tower: str) -> int:
        """Requests waiting (not yet running) in this tower's queue."""
        q = self._queues.get(tower)
        return q.depth() if q is not None else 0

    def running_rows(self, tower: str) -> int:
        """Rows in this tower's model calls under way now."""
        q = self._queues.get(tower)
        return q.running_rows() if q is not None else 0

    @property
    def closed(self) -> bool:
        """True once close() has begun: new requests get ShuttingDown."""
        return self._closed

    def close(self, timeout: float | None = 30.0) -> None:
        """Drain: queued requests still run and get their answers; new ones get ShuttingDown."""
        with self._lock:
            self._closed = True
            queues = list(self._queues.values())
        for q in queues:
            q.close(timeout)
        if (inner_close := getattr(self.inner, "close", None)) is not None:
            inner_close()

    def _queue(self, tower: str) -> _TowerQueue:
        q = self._queues.get(tower)
        if q is not None:
            return q
        with self._lock:  # towers start their worker on first use
            if self._closed:
                raise ShuttingDown()
            if tower not in self._queues:
                self._queues[tower] = _TowerQueue(self.inner, tower, self.config, self.name, self._observer)
            return self._queues[tower]
