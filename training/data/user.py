"""Training on user data: any `vistas.sources` spec (folder, CSV, JSONL, WebDataset shards).

The same reader as the batch indexing job, so a data set that indexes also trains. Images
that fail to decode, and items without a caption (contrastive training needs one), are
skipped and counted in `.stats`, never fatal.

    ds = UserDataset("data/train.csv")
    for ex in ds: ...
    print(ds.stats.summary())  # "9,998 images decoded, 2 skipped (missing_caption=1, truncated_image=1)"
"""

from __future__ import annotations

from collections.abc import Iterator

from vistas.images import DEFAULT_MAX_PIXELS, DecodeStats
from vistas.sources import Item, SourceError, count_source, decode_items, iter_source
from vistas.training.data.types import Example


class UserDataset:
    """Iterable over `Example(image, caption, label=None, attrs={"id", "metadata"})`.

    Each pass re-reads the source and starts a fresh `.stats` (so it reports the last pass).
    The source is validated on construction: a missing path or a CSV without a `path`
    column fails here, before any training starts.
    """

    def __init__(self, source: str, max_pixels: int = DEFAULT_MAX_PIXELS, require_caption: bool = True):
        self.source, self.max_pixels, self.require_caption = source, max_pixels, require_caption
        iter_source(source)  # eager validation; the iterator itself is discarded
        self.stats = DecodeStats()

    def count_items(self) -> int | None:
        """Items in the source, for progress bars: an upper bound on the examples (failures are
        included), None when not cheap to know (tar shards). Not `__len__`, as it is not exact."""
        return count_source(self.source)

    def _with_captions(self, items: Iterator[Item]) -> Iterator[Item]:
        """Drop caption-less items before decoding (cheaper), counting them as failures."""
        for item in items:
            if self.require_caption and not item.caption and item.error is None:
                self.stats.add_failure(item.id, SourceError("missing_caption", "the item has no caption"))
                continue
            yield item

    def __iter__(self) -> Iterator[Example]:
        self.stats = DecodeStats()
        items = self._with_captions(iter_source(self.source))
        for item, image in decode_items(items, max_pixels=self.max_pixels, stats=self.stats):
            yield Example(image, item.caption or "", None, {"id": item.id, "metadata": item.metadata})
