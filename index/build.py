"""Batch indexing: embed a whole collection of images into a FAISS + SQLite collection.

    vistas index build --bundle B --source photos/ --out idx/
    vistas serve B --index idx/

The embedder is handed in (anything with `embed_images(list[PIL]) -> (N, D)`, `dim` and
`space_id`), so this module needs no model runtime of its own. Bad files are skipped,
counted and listed in `OUT/<collection>/build_report.json`; they never stop the job.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from index.registry import Collections
from vistas.images import DEFAULT_MAX_PIXELS, DecodeStats
from vistas.sources import count_source, decode_items, iter_source


class ImageEmbedder(Protocol):
    dim: int
    space_id: str

    def embed_images(self, images: list[Image.Image]) -> np.ndarray: ...


@dataclass
class BuildReport:
    source: str
    collection: str
    indexed: int = 0
    failed: int = 0
    failures_by_code: dict[str, int] = field(default_factory=dict)
    failure_examples: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def items_per_s(self) -> float:
        return self.indexed / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        s = f"indexed {self.indexed} items into '{self.collection}' in {self.seconds:.1f}s ({self.items_per_s:.1f} items/s)"
        if self.failed:
            codes = ", ".join(f"{k}={v}" for k, v in sorted(self.failures_by_code.items()))
            s += f"; skipped {self.failed} bad items ({codes}), listed in build_report.json"
        return s


def _batches(pairs: Iterator, size: int) -> Iterator[list]:
    """Batches of (item, image); an id seen again starts a new batch, so the later copy wins
    by a second upsert (a collection refuses duplicate ids inside one upsert)."""
    batch, ids = [], set()
    for item, image in pairs:
        if len(batch) == size or item.id in ids:
            yield batch
            batch, ids = [], set()
        batch.append((item, image))
        ids.add(item.id)
    if batch:
        yield batch


def build_index(
    source: str,
    out_dir: str | Path,
    model: ImageEmbedder,
    *,
    collection: str = "default",
    batch_size: int = 64,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = True,
) -> BuildReport:
    """Embed every decodable image of `source` and upsert it (id, vector, caption + metadata)."""
    t0 = time.perf_counter()
    items = iter_source(source)  # validates the source before anything is created
    coll = Collections(out_dir).get_or_create(collection, dim=model.dim, space_id=model.space_id)
    stats = DecodeStats()
    report = BuildReport(source=str(source), collection=collection)
    bar = tqdm(total=count_source(source), desc=f"index {collection}", unit="img", disable=not progress, dynamic_ncols=True)
    for batch in _batches(decode_items(items, max_pixels=max_pixels, stats=stats), batch_size):
        done, images = zip(*batch)
        vectors = model.embed_images(list(images))  # (n, D), L2-normalised
        metadata = [dict(item.metadata, **({"caption": item.caption} if item.caption else {})) for item in done]
        report.indexed += coll.upsert([item.id for item in done], vectors, metadata, space_id=model.space_id)
        bar.update(stats.ok + stats.failed - bar.n)  # failures advance the bar too
        bar.set_postfix(bad=stats.failed)
    bar.update(stats.ok + stats.failed - bar.n)
    bar.close()
    coll.flush()
    report.failed, report.failures_by_code, report.failure_examples = stats.failed, stats.by_code, stats.examples
    report.seconds = time.perf_counter() - t0
    report_path = Path(out_dir) / collection / "build_report.json"
    report_path.write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report
