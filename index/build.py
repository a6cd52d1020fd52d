"""Batch indexing: embed a whole source of images into a collection, resumably.

    vistas index build --bundle B --source photos/ --out idx/ [--engine ray] [--embeddings-out emb/]
    vistas serve B --index idx/

The source is cut into units (vistas/sources.py: a tar shard, a Parquet file, or `unit_size`
listed items) read in a fixed order. Each unit is decoded (parallel threads: PIL releases the
GIL while decoding), embedded in batches, optionally written as a Parquet shard
(`embeddings_out/part-<unit>.parquet`, atomically: vistas/atomic.py), and then committed to the
collection in ONE SQLite transaction together with the job's progress. So a job killed at any
moment (kill -9 included) and started again continues at the first uncommitted unit: no item
missing, none doubled (its shard, if written, is rewritten whole). Resuming over a source that
changed since is refused; `resume=False` starts over.

A job that starts on an empty collection loads in bulk (Collection.bulk_load): its index type is
chosen for the final size, trained once on a sample and filled batch by batch at the end.

Engines: "local" (threads + the model in this process) or "ray" (index/ray_engine.py: Ray Data
batch inference, actors holding the model). Both yield the same rows (index/embed_stage.py makes
them), and the commit path here is shared, so they build the same collection.

Bad files are skipped, counted, and all listed in `OUT/<collection>/build_report.json`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from vistas.atomic import atomic_write
from vistas.index.collection import Collection
from vistas.index.embed_stage import BuildConfig, ImageEmbedder, Row, decode_item, embed_batch
from vistas.index.indexes import IndexConfig
from vistas.index.registry import Collections
from vistas.sources import Item, Unit, count_source, fingerprint, iter_unit, split_source

_EXAMPLES = 20


@dataclass
class BuildReport:
    source: str
    collection: str
    indexed: int = 0
    failed: int = 0
    failures_by_code: dict[str, int] = field(default_factory=dict)
    failure_examples: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # every bad item, "id: code: message"
    units: int = 0
    resumed_at_unit: int = 0
    index: dict = field(default_factory=dict)  # the collection's info() after the build
    embeddings_out: str | None = None
    seconds: float = 0.0

    @property
    def items_per_s(self) -> float:
        return (self.indexed + self.failed) / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        s = f"indexed {self.indexed} items into '{self.collection}' in {self.seconds:.1f}s ({self.items_per_s:.1f} items/s)"
        if self.resumed_at_unit:
            s += f", resumed at unit {self.resumed_at_unit}/{self.units}"
        if self.index:
            recall = self.index.get("recall_at_10")
            s += f"; index {self.index['index']}" + (f", recall@10 {recall:.3f}" if recall is not None else "")
        if self.failed:
            codes = ", ".join(f"{k}={v}" for k, v in sorted(self.failures_by_code.items()))
            s += f"; skipped {self.failed} bad items ({codes}), listed in build_report.json"
        return s


def build_index(
    source: str,
    out_dir: str | Path,
    model: ImageEmbedder,
    config: BuildConfig | None = None,
    *,
    model_factory: Callable[[], ImageEmbedder] | None = None,
    **overrides,
) -> BuildReport:
    """Embed every decodable image of `source` into `out_dir/<collection>` (see the module docstring).

    `overrides` are BuildConfig fields. The Ray engine needs `model_factory` (picklable, e.g.
    functools.partial(vistas.inference.model.load_model, bundle_dir)): each actor builds its own model.
    """
    config = dataclasses.replace(config or BuildConfig(), **overrides)
    if config.engine == "ray" and model_factory is None:
        raise ValueError("the ray engine needs model_factory: a picklable callable that loads the model in each actor")
    t0 = time.perf_counter()
    units = split_source(source, config.unit_size)  # validates the source before anything is created
    job = f"build:{Path(source).resolve()}"
    with Collections(out_dir) as collections:
        coll = collections.get_or_create(config.collection, model.dim, model.space_id, config.index)
        state = _start_state(coll, job, fingerprint(units), config)
        report = BuildReport(source=str(source), collection=config.collection, units=len(units),
                             resumed_at_unit=state["units_done"], embeddings_out=config.embeddings_out)
        total = count_source(source)
        bar = tqdm(total=total, initial=min(state["items"], total or state["items"]), desc=f"index {config.collection}",
                   unit="img", disable=not config.progress, dynamic_ncols=True, smoothing=0.1)
        rows = _engine_rows(units, state["units_done"], model, model_factory, config)
        if state["bulk"]:
            with coll.bulk_load(config.index):
                _commit_units(coll, job, state, rows, model.space_id, config, bar)
        else:
            _commit_units(coll, job, state, rows, model.space_id, config, bar)
        bar.close()
        state["complete"] = True
        coll.upsert([], np.zeros((0, coll.dim), np.float32), jobs={job: state})
        failures = [f for unit in coll.job_states(f"{job}/failures/") for f in unit]
        report.index = coll.info()
    report.indexed, report.failed = state["indexed"], state["failed"]
    report.failures_by_code, report.failures = state["by_code"], failures
    report.failure_examples = failures[:_EXAMPLES]
    report.seconds = time.perf_counter() - t0
    report_json = json.dumps(asdict(report), indent=2) + "\n"
    atomic_write(Path(out_dir) / config.collection / "build_report.json", lambda tmp: tmp.write_text(report_json))
    return report


def _start_state(coll: Collection, job: str, fp: str, config: BuildConfig) -> dict:
    state = coll.job_state(job) if config.resume else None
    if state is not None and not state.get("complete"):
        if state["fingerprint"] != fp:
            raise ValueError(
                f"the source changed since the interrupted build of {job[6:]} (its files or their order differ); "
                "run again with --no-resume to index it from the start"
            )
        return state
    coll.delete_jobs(f"{job}/failures/")
    return {"fingerprint": fp, "units_done": 0, "items": 0, "indexed": 0, "failed": 0, "by_code": {},
            "bulk": coll.count == 0, "complete": False}


def _commit_units(
    coll: Collection, job: str, state: dict, rows: Iterator[tuple[int, list[Row]]], space_id: str,
    config: BuildConfig, bar,
) -> None:
    """Per unit: shard file, then items + progress in one commit (the resume point)."""
    for unit_index, unit_rows in rows:
        good = list({r.id: r for r in unit_rows if r.error is None}.values())  # a repeated id: the last wins
        bad = [r for r in unit_rows if r.error is not None]
        if config.embeddings_out:
            write_shard(Path(config.embeddings_out) / f"part-{unit_index:06d}.parquet", good, space_id)
        state["units_done"] = unit_index + 1
        state["items"] += len(unit_rows)
        state["indexed"] += len(good)
        state["failed"] += len(bad)
        for r in bad:
            state["by_code"][r.code] = state["by_code"].get(r.code, 0) + 1
        bad = [f"{r.id}: {r.code}: {r.error}" for r in bad]
        vectors = np.stack([r.vector for r in good]) if good else np.zeros((0, coll.dim), np.float32)
        coll.upsert(
            [r.id for r in good], vectors, [r.item_metadata for r in good], space_id=space_id,
            thumbnails=[r.thumbnail for r in good] if config.thumbnails else None,
            jobs={job: state, **({f"{job}/failures/{unit_index:06d}": bad} if bad else {})},
        )
        bar.update(len(unit_rows))
        bar.set_postfix(bad=state["failed"])


def _engine_rows(units: list[Unit], start: int, model, model_factory, config: BuildConfig):
    if config.engine == "ray":
        from vistas.index.ray_engine import ray_rows

        return ray_rows(units, start, model_factory, config)
    return local_rows(units, start, model, config)


# --- the local engine ----------------------------------------------------------


def local_rows(units: list[Unit], start: int, model: ImageEmbedder, config: BuildConfig) -> Iterator[tuple[int, list[Row]]]:
    """(unit index, rows) for units[start:], decoding in threads while the model runs."""
    with ThreadPoolExecutor(config.workers, thread_name_prefix="decode") as pool:
        for unit_index in range(start, len(units)):
            rows: list[Row] = []
            for batch in _decoded_batches(iter_unit(units[unit_index]), pool, config, model):
                rows += embed_batch(model, batch)
            yield unit_index, rows


def _decoded_batches(items: Iterator[Item], pool: ThreadPoolExecutor, config: BuildConfig, model) -> Iterator[list]:
    """Batches of decode results; the next batch decodes while the caller embeds this one."""
    pending = None
    for batch in iter(lambda: list(islice(items, config.batch_size)), []):
        futures = [pool.submit(decode_item, item.id, item.caption, item.metadata, item.read if item.error is None
                               else item.error, config, model) for item in batch]
        if pending is not None:
            yield [f.result() for f in pending]
        pending = futures
    if pending is not None:
        yield [f.result() for f in pending]


# --- embedding shards ----------------------------------------------------------


def write_shard(path: Path, rows: list[Row], space_id: str) -> None:
    """Parquet (id: string, embedding: fixed_size_list<float32>, metadata: JSON string), atomically.

    The schema metadata records the embedding space and dim, so a shard is never mixed with
    vectors of another model. An id repeated across shards: the later shard wins.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    dim = len(rows[0].vector) if rows else 0
    flat = np.concatenate([r.vector for r in rows]).astype(np.float32) if rows else np.zeros(0, np.float32)
    table = pa.table(
        {
            "id": pa.array([r.id for r in rows], pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), max(dim, 1)) if rows
            else pa.array([], pa.list_(pa.float32(), 1)),
            "metadata": pa.array([json.dumps(r.item_metadata) for r in rows], pa.string()),
        }
    ).replace_schema_metadata({"vistas.space_id": space_id, "vistas.dim": str(dim)})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: pq.write_table(table, str(tmp)))


def import_shards(directory: str | Path, out_dir: str | Path, collection: str = "default",
                  index: IndexConfig | None = None) -> dict:
    """Build a collection from embedding shards (ours, or any with the same three columns).

    Shard by shard into SQLite (one transaction each), then the index once: trained on a sample,
    filled batch by batch, so no more than a shard of raw vectors is ever in memory. Every shard
    must carry the same embedding space. Returns the collection's info().
    """
    shards = read_shards(directory)
    first = next(shards, None)
    if first is None:
        raise FileNotFoundError(f"no part-*.parquet shards in {directory}")
    ids, vectors, _, space = first
    if not space:
        raise ValueError(f"{directory}: shards carry no vistas.space_id; they were not written by vistas")
    with Collections(out_dir) as collections:
        coll = collections.get_or_create(collection, vectors.shape[1], space, index)
        with coll.bulk_load(index):
            for ids, vectors, metadata, shard_space in itertools.chain([first], shards):
                keep = sorted({id: i for i, id in enumerate(ids)}.values())  # an id repeated: the last wins
                coll.upsert([ids[i] for i in keep], vectors[keep], [metadata[i] for i in keep], space_id=shard_space)
        return coll.info()


def read_shards(directory: str | Path) -> Iterator[tuple[list[str], np.ndarray, list[dict], str]]:
    """(ids, embeddings (n, D) float32, metadata, space_id) per shard, in shard order."""
    import pyarrow.parquet as pq

    for path in sorted(Path(directory).glob("part-*.parquet")):
        table = pq.read_table(path)
        meta = table.schema.metadata or {}
        space = meta.get(b"vistas.space_id", b"").decode()
        ids = table.column("id").to_pylist()
        dim = int(meta.get(b"vistas.dim", b"0"))
        flat = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        vectors = flat.reshape(len(ids), dim) if ids else np.zeros((0, dim), np.float32)
        yield ids, vectors.astype(np.float32), [json.loads(m) for m in table.column("metadata").to_pylist()], space
