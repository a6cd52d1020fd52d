"""Thumbnails stored with items that came as images, for result grids (the search page).

A JPEG of at most THUMBNAIL_SIZE pixels on its longer side: ~2-6 KB per item, kept in the
collection's SQLite file next to the item, so it is written and deleted in the same transaction.
Items added as vectors or texts have none.
"""

from __future__ import annotations

import io

from PIL import Image

THUMBNAIL_SIZE = 128
JPEG_QUALITY = 85


def make_thumbnail(image: Image.Image, size: int = THUMBNAIL_SIZE) -> bytes:
    """JPEG bytes of `image` shrunk to fit size x size (aspect ratio kept; never enlarged)."""
    thumb = image.convert("RGB")
    thumb.thumbnail((size, size), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    thumb.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()
