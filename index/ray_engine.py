"""The embedding stage of a batch job as Ray Data batch inference, for a Ray cluster.

    vistas index build --bundle B --source 's3-mounted/shards/*.tar' --out idx/ --engine ray \
        --ray-address auto --ray-actors 8

Pipeline (ray.data): one row per source unit -> `flat_map` reads the unit's items (in Ray tasks,
in parallel: tar shards and Parquet files are read where the task runs, so paths must be
visible to the workers) -> `map_batches` with an actor pool: each actor loads the model once
(the picklable `model_factory`) and decodes + embeds batches -> rows stream back to the driver in
source order (`preserve_order`), where index/build.py commits them unit by unit exactly as for
the local engine. So resume, shards and the index are the same; only where the work runs moves.

The driver holds one unit of rows at a time, never all vectors.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Iterator

import numpy as np

from vistas.index.embed_stage import BuildConfig, Row, decode_item, embed_batch
from vistas.sources import Unit, iter_unit


def _read_unit(row: dict) -> list[dict]:
    """A unit -> its items as rows (bytes read here, decoding left to the actors)."""
    out = []
    for item in iter_unit(pickle.loads(row["unit_pickle"])):
        try:
            data, code, error = item.read(), None, None
        except Exception as e:  # noqa: BLE001 - a bad item becomes a row with its error
            data, code, error = b"", getattr(e, "code", type(e).__name__), str(e)
        out.append({"unit": row["unit"], "id": item.id, "caption": item.caption, "metadata": json.dumps(item.metadata),
                    "data": data, "code": code, "error": error})
    return out


class EmbedActor:
    """Holds one model; decodes and embeds a batch of item rows (a pyarrow Table)."""

    def __init__(self, model_factory: Callable, config: BuildConfig):
        self.model = model_factory()
        self.config = config

    def __call__(self, batch):
        import pyarrow as pa

        decoded = [
            decode_item(rec["id"], rec["caption"], json.loads(rec["metadata"]),
                        _SourceFailure(rec["code"], rec["error"]) if rec["code"] else rec["data"], self.config, self.model)
            for rec in batch.to_pylist()
        ]
        rows = embed_batch(self.model, decoded)
        return pa.table({
            "unit": batch.column("unit"),
            "id": pa.array([r.id for r in rows], pa.string()),
            "caption": pa.array([r.caption for r in rows], pa.string()),
            "metadata": pa.array([json.dumps(r.metadata) for r in rows], pa.string()),
            "vector": pa.array([None if r.vector is None else r.vector.tolist() for r in rows], pa.list_(pa.float32())),
            "thumbnail": pa.array([r.thumbnail for r in rows], pa.binary()),
            "code": pa.array([r.code for r in rows], pa.string()),
            "error": pa.array([r.error for r in rows], pa.string()),
        })


class _SourceFailure(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def ray_rows(
    units: list[Unit], start: int, model_factory: Callable, config: BuildConfig
) -> Iterator[tuple[int, list[Row]]]:
    """(unit index, rows) for units[start:], from a Ray Data pipeline, in source order."""
    import ray

    if not ray.is_initialized():
        ray.init(address=config.ray_address, include_dashboard=False, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # commits follow source order: the resume point
    context.enable_progress_bars = False
    todo = [{"unit": i, "unit_pickle": pickle.dumps(units[i])} for i in range(start, len(units))]
    if not todo:
        return
    ds = (
        ray.data.from_items(todo, override_num_blocks=len(todo))
        .flat_map(_read_unit)
        .map_batches(EmbedActor, fn_constructor_args=(model_factory, config), batch_size=config.batch_size,
                     batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=config.ray_actors))
    )
    current, rows = start, []
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        for rec in batch.to_pylist():
            unit = int(rec["unit"])
            while current < unit:  # every unit before this one is complete (empty units too)
                yield current, rows
                current, rows = current + 1, []
            rows.append(Row(id=rec["id"], caption=rec["caption"], metadata=json.loads(rec["metadata"]),
                            vector=None if rec["vector"] is None else np.asarray(rec["vector"], np.float32),
                            thumbnail=rec["thumbnail"], code=rec["code"], error=rec["error"]))
    while current < len(units):
        yield current, rows
        current, rows = current + 1, []
