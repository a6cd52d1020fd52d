"""Images -> base64 strings, the way they travel in JSON.

Accepted: a path (str or pathlib.Path) to an image file, the encoded file bytes,
or a PIL image (sent as PNG). PIL is never imported here: a PIL image can only
exist if the caller already imported it, so we look it up in sys.modules.
"""

from __future__ import annotations

import base64
import io
import os
import sys
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

ImageInput = Union[str, os.PathLike, bytes, "PILImage"]

# Modes PNG stores as they are; anything else (CMYK, YCbCr, float, ...) is sent as RGB.
_PNG_MODES = {"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}


def image_bytes(image) -> bytes:
    """The encoded bytes of one image input (see module doc)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, (str, os.PathLike)):
        try:
            with open(image, "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise FileNotFoundError(f"image file not found: {os.fspath(image)!r}") from None
    pil = sys.modules.get("PIL.Image")
    if pil is not None and isinstance(image, pil.Image):
        if image.mode not in _PNG_MODES:
            image = image.convert("RGB")
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue()
    raise TypeError(
        f"cannot send a {type(image).__name__} as an image: give a file path, the file's bytes, or a PIL image"
    )


def encode_image(image) -> str:
    """One image input -> base64 text (standard alphabet, padded)."""
    return base64.b64encode(image_bytes(image)).decode("ascii")


def is_single_image(value) -> bool:
    """True for one image input, False for a list of them."""
    if isinstance(value, (str, os.PathLike, bytes, bytearray, memoryview)):
        return True
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(value, pil.Image)
