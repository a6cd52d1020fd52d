"""PIL images -> the named input arrays of a bundle's image tower, per its ImageSpec.

One function for serving (`vistas.inference.model.ServedModel.image_inputs`), training and
export, so every caller feeds the tower exactly what its spec prescribes:

    mode "fixed":  {"pixel_values": float32 (B, 3, H, W)}
    mode "naflex": {"pixel_values": float32 (B, N, p*p*3), "pixel_attention_mask": int32 (B, N),
                    "spatial_shapes": int64 (B, 2)}   (see `vistas.naflex`)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from vistas.bundle import IMAGE_INPUT
from vistas.images import ImageSpec, preprocess_batch
from vistas.naflex import naflex_batch, size_for_patch_budget


def image_inputs(images: Sequence[Image.Image], spec: ImageSpec) -> dict[str, np.ndarray]:
    """RGB PIL images -> the image tower's named inputs, batch first."""
    if spec.mode == "naflex":
        return naflex_batch(list(images), spec)
    return {IMAGE_INPUT: preprocess_batch(list(images), spec)}  # (B, 3, H, W)


def input_size(spec: ImageSpec, width: int, height: int) -> tuple[int, int]:
    """(width, height) of an upright image -> the (width, height) the spec resizes it to: what
    decoding may reduce it towards (`vistas.images.open_image(need=...)`)."""
    if spec.mode == "naflex":
        h, w = size_for_patch_budget(height, width, spec.patch_size, spec.max_num_patches)
        return w, h
    return spec.width, spec.height
