"""Thumbnails stored with items that came as images, for result grids (the search page).

A JPEG of at most THUMBNAIL_SIZE pixels on its longer side: ~2-6 KB per item, kept in the
collection's SQLite file next to the item, so it is written and deleted in the same transaction.
Items added as vectors or texts have none.
"""

from __future__ import annotations

import io
import math

from PIL import Image

from vistas.images import reduction

THUMBNAIL_SIZE = 128
JPEG_QUALITY = 85


# Pillow's Image.thumbnail default: resize in two steps, the last one by at least 2x.
REDUCING_GAP = 2.0


def thumbnail_size(width: int, height: int, size: int = THUMBNAIL_SIZE) -> tuple[int, int]:
    """(width, height) of an image -> its thumbnail's, rounded as Pillow's `Image.thumbnail` rounds:
    fits size x size, keeps the aspect ratio, never enlarges. Also what decoding for a thumbnail
    may reduce an image towards (`vistas.images.open_image(need=...)`)."""
    if size >= width and size >= height:
        return width, height
    aspect = width / height
    if aspect <= 1:  # as tall as wide or taller: the height is `size`
        return _round_aspect(size * aspect, lambda n: abs(aspect - n / size)), size
    return size, _round_aspect(size / aspect, lambda n: 0 if n == 0 else abs(aspect - size / n))


def _round_aspect(number: float, key) -> int:
    return max(min(math.floor(number), math.ceil(number), key=key), 1)


def make_thumbnail(image: Image.Image, size: int = THUMBNAIL_SIZE) -> bytes:
    """JPEG bytes of `image` shrunk to fit size x size (aspect ratio kept; never enlarged).

    An image reduced on decode (`vistas.images.reduction`) is shrunk from its source's box at its
    source's aspect ratio, so it gives the thumbnail of the full image up to Pillow's two-step resize."""
    reduced = reduction(image)
    width, height = reduced.source_size if reduced is not None else image.size
    thumb = image.convert("RGB")
    dims = thumbnail_size(width, height, size)
    if dims != thumb.size or reduced is not None:  # what Image.thumbnail does, plus the box
        box = reduced.box if reduced is not None else None
        thumb = thumb.resize(dims, Image.Resampling.BICUBIC, box=box, reducing_gap=REDUCING_GAP)
    buf = io.BytesIO()
    thumb.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()
