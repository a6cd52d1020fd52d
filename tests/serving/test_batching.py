"""The batching runtime on real onnxruntime sessions, from many threads: same answers as
unbatched, calls merged into batches, bounded queue, queue timeout, failure isolation,
dropped requests of clients that left, and draining on close."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from support.poll import wait_for
from support.tiny_bundle import SIZE, TEXT_LENGTH, build_bundle
from vistas.inference.onnx_runtime import OnnxRuntime
from vistas.serving.batching import (
    BatchConfig,
    BatchingRuntime,
    BatchStats,
    ClientGone,
    QueueFull,
    QueueTimeout,
    ShuttingDown,
)
from vistas.serving.context import enter_request, leave_request


@pytest.fixture(scope="module")
def heavy_bundle(tmp_path_factory):
    """~7 ms per image on one thread: slow enough for queues to fill."""
    return build_bundle(tmp_path_factory.mktemp("heavy"), "heavy", heavy=(512, 16))


def pixels(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 3, SIZE, SIZE)).astype(np.float32)


def run_together(rt: BatchingRuntime, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Each input from its own thread, all released at once -> the answers, in input order."""
    start = threading.Barrier(len(inputs))

    def call(x):
        start.wait()
        return rt.run("image", {"pixel_values": x})

    with ThreadPoolExecutor(len(inputs)) as pool:
        return list(pool.map(call, inputs))


class Recorder:
    def __init__(self):
        self.batches: list[BatchStats] = []

    def __call__(self, stats: BatchStats) -> None:
        self.batches.append(stats)


def test_concurrent_calls_are_batched_and_answers_unchanged(bundles):
    inner = OnnxRuntime(bundles[0], threads=1)
    seen = Recorder()
    rt = BatchingRuntime(inner, BatchConfig(max_batch_size=16, max_delay_ms=50), observer=seen)
    inputs = [pixels(1 + i % 3, seed=i) for i in range(12)]  # 1-3 rows each: 24 rows
    outs = run_together(rt, inputs)
    rt.close()
    for x, out in zip(inputs, outs):  # each caller gets its own rows, in order
        np.testing.assert_allclose(out, inner.run("image", {"pixel_values": x}), atol=1e-6)
    assert sum(b.rows for b in seen.batches) == 24 and sum(b.requests for b in seen.batches) == 12
    assert len(seen.batches) < 12, [b.requests for b in seen.batches]  # calls were merged
    assert max(b.rows for b in seen.batches) <= 16
    assert rt.run is not None and [t.name for t in rt.inputs("text")] == ["input_ids"]


def test_towers_have_separate_queues(bundles):
    seen = Recorder()
    rt = BatchingRuntime(OnnxRuntime(bundles[0], threads=1), BatchConfig(max_delay_ms=30), observer=seen)
    ids = np.full((2, TEXT_LENGTH), 5, np.int64)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(rt.run, "image", {"pixel_values": pixels(1, 0)}) for _ in range(2)]
        futures += [pool.submit(rt.run, "text", {"input_ids": ids}) for _ in range(2)]
        shapes = [f.result().shape for f in futures]
    rt.close()
    assert shapes == [(1, 8)] * 2 + [(2, 8)] * 2
    assert {b.tower for b in seen.batches} == {"image", "text"}


def test_bad_request_fails_alone(bundles):
    rt = BatchingRuntime(OnnxRuntime(bundles[0], threads=1), BatchConfig(max_delay_ms=30))
    with ThreadPoolExecutor(3) as pool:
        good = [pool.submit(rt.run, "image", {"pixel_values": pixels(1, i)}) for i in range(2)]
        bad = pool.submit(rt.run, "image", {"pixel_values": np.zeros((1, 3, SIZE + 1, SIZE), np.float32)})
        with pytest.raises(ValueError, match="must have shape"):
            bad.result()
        assert all(f.result().shape == (1, 8) for f in good)
    rt.close()


class _SignalsRuns(OnnxRuntime):
    """The real runtime, telling when a model call has begun."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.running = threading.Event()

    def run(self, tower, inputs):
        self.running.set()
        return super().run(tower, inputs)


def test_full_queue_is_refused_with_a_retry_hint(heavy_bundle):
    inner = _SignalsRuns(heavy_bundle, threads=1)
    rt = BatchingRuntime(inner, BatchConfig(max_batch_size=1, queue_size=1))
    errors, results = [], []
    start = threading.Barrier(5)

    def call(i, barrier=None):
        if barrier is not None:
            barrier.wait()
        try:
            results.append(rt.run("image", {"pixel_values": pixels(32, i)}))  # ~0.2 s per call
        except QueueFull as e:
            errors.append(e)

    first = threading.Thread(target=call, args=(0,))
    first.start()
    assert inner.running.wait(10)  # the first call runs (~0.2 s): the queue's one place is free
    threads = [threading.Thread(target=call, args=(i, start)) for i in range(1, 6)]
    for t in threads:
        t.start()
    for t in [first, *threads]:
        t.join()
    rt.close()
    # One runs, one waits; the others arrive at a full queue.
    assert errors and len(results) + len(errors) == 6 and len(results) >= 2
    assert all(e.retry_after >= 1 and "queue is full" in str(e) for e in errors)


def test_queue_timeout_gives_the_place_up(heavy_bundle):
    seen = Recorder()
    inner = _SignalsRuns(heavy_bundle, threads=1)
    rt = BatchingRuntime(inner, BatchConfig(max_batch_size=64, timeout_s=0.05), observer=seen)
    with ThreadPoolExecutor(2) as pool:
        long = pool.submit(rt.run, "image", {"pixel_values": pixels(64, 0)})  # ~0.4 s
        assert inner.running.wait(10), "the long batch never started"
        late = pool.submit(rt.run, "image", {"pixel_values": pixels(1, 1)})
        with pytest.raises(QueueTimeout, match="waited"):
            late.result()
        assert long.result().shape == (64, 8)  # a running batch is never cut off
    assert rt.queue_depth("image") == 0
    rt.close()
    # The late row never ran, even where its request thread woke after the worker was free
    # again (the worker itself refuses a job that waited past timeout_s).
    assert [b.rows for b in seen.batches] == [64]


def test_requests_of_departed_clients_are_dropped(heavy_bundle):
    seen = Recorder()
    inner = _SignalsRuns(heavy_bundle, threads=1)
    rt = BatchingRuntime(inner, BatchConfig(max_batch_size=64), observer=seen)

    def call_as_request(ctx_out, x):
        ctx, token = enter_request("r1")  # what the HTTP middleware does per request
        ctx_out.append(ctx)
        try:
            return rt.run("image", {"pixel_values": x})
        finally:
            leave_request(token)

    with ThreadPoolExecutor(2) as pool:
        long = pool.submit(rt.run, "image", {"pixel_values": pixels(64, 0)})
        assert inner.running.wait(10), "the long batch never started"
        ctxs: list = []
        gone = pool.submit(call_as_request, ctxs, pixels(3, 1))
        wait_for(lambda: rt.queue_depth("image") == 1, "the second request to queue behind the running batch")
        ctxs[0].client_gone = True  # the client disconnected while queued
        with pytest.raises(ClientGone):
            gone.result()
        long.result()
    rt.close()
    assert sum(b.rows for b in seen.batches) == 64  # its 3 rows never ran
    assert sum(b.dropped for b in seen.batches) == 1


class _GatedRuns(OnnxRuntime):
    """The real runtime, whose model calls wait for `gate`: the test decides when the first ends."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()

    def run(self, tower, inputs):
        assert self.gate.wait(60), "the test never opened the gate"
        return super().run(tower, inputs)


def test_close_drains_queued_work_and_refuses_new(heavy_bundle):
    inner = _GatedRuns(heavy_bundle, threads=1)
    rt = BatchingRuntime(inner, BatchConfig(max_batch_size=8))
    with ThreadPoolExecutor(7) as pool:
        futures = [pool.submit(rt.run, "image", {"pixel_values": pixels(8, i)}) for i in range(6)]
        # The first request is held in its model call, so the other five stay queued however
        # slow the machine is (before: a fast first call could finish before five had queued).
        wait_for(lambda: rt.queue_depth("image") == 5, "the requests to queue up behind the first")
        closing = pool.submit(rt.close)  # returns once every queued request has its answer
        wait_for(lambda: rt.closed, "close() to begin")
        assert rt.queue_depth("image") == 5  # close began with the work still queued
        inner.gate.set()
        closing.result(timeout=60)
        # Each future completes when its thread wakes from the answered job: moments after close().
        assert [f.result(timeout=10).shape for f in futures] == [(8, 8)] * 6
    with pytest.raises(ShuttingDown):
        rt.run("image", {"pixel_values": pixels(1, 0)})


def _overlaps(batches: list[BatchStats]) -> int:
    """How many pairs of model calls ran at the same time."""
    spans = sorted((b.started, b.started + b.run_s) for b in batches)
    return sum(1 for i, (_, end) in enumerate(spans) for start, _ in spans[i + 1 :] if start < end)


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_run_batches_side_by_side_on_one_session(heavy_bundle, workers):
    before = set(threading.enumerate())
    inner = OnnxRuntime(heavy_bundle, threads=1)
    seen = Recorder()
    rt = BatchingRuntime(inner, BatchConfig(max_batch_size=2, workers=workers), observer=seen)
    inputs = [pixels(2, seed=i) for i in range(8)]  # one request per model call
    outs = run_together(rt, inputs)
    for x, out in zip(inputs, outs):
        np.testing.assert_allclose(out, inner.run("image", {"pixel_values": x}), atol=1e-6)
    assert sum(b.requests for b in seen.batches) == 8
    if workers == 1:
        assert _overlaps(seen.batches) == 0
    else:  # 8 calls of ~15 ms on 2 workers: calls overlap
        assert _overlaps(seen.batches) >= 1, [(b.started, b.run_s) for b in seen.batches]
    rt.close()
    with pytest.raises(ShuttingDown):
        rt.run("image", {"pixel_values": inputs[0]})
    workers_left = [t.name for t in threading.enumerate() if t not in before and t.name.startswith("batcher")]
    assert not workers_left, "close() stops every worker"


def test_workers_must_be_positive():
    with pytest.raises(ValueError, match="workers"):
        BatchConfig(workers=0)
