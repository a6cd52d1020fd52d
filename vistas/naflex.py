"""SigLIP 2 NaFlex preprocessing (arXiv 2502.14786, Sec. 2.4.1): numpy + PIL, no torch.

Each image keeps its aspect ratio: it is resized so that its patch grid (h, w) is the
largest one with h * w <= max_num_patches, patchified in (row, col, channel) order and
padded to max_num_patches patches. The tower then resizes its learned position embedding
to (h, w) per image (`vistas.training.models.vit.ViT.forward_naflex`).

    inputs = naflex_batch(images, spec)
    inputs["pixel_values"]          float32 (B, N, p*p*3)
    inputs["pixel_attention_mask"]  int32   (B, N), 1 = real patch
    inputs["spatial_shapes"]        int64   (B, 2) = (h, w) in patches

Names, dtypes and values are those of transformers' Siglip2ImageProcessor (the PIL
backend, `Siglip2ImageProcessorPil`), so its outputs and ours are interchangeable.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from vistas.bundle import IMAGE_INPUT, MASK_INPUT, SHAPES_INPUT
from vistas.images import RESAMPLE, ImageSpec, normalize, patchify, reduction, to_rgb

# Binary search on the scale factor stops when the bracket is narrower than this; the
# value is the reference's (transformers `get_image_size_for_max_num_patches`), and the
# chosen size depends on it, so it is part of the preprocessing contract.
SCALE_TOLERANCE = 1e-5


def _scaled_side(side: int, scale: float, patch_size: int) -> int:
    """side * scale rounded UP to whole patches, at least one patch."""
    return max(patch_size, math.ceil(side * scale / patch_size) * patch_size)


def size_for_patch_budget(height: int, width: int, patch_size: int, max_num_patches: int) -> tuple[int, int]:
    """(height, width) of an image -> the (height, width) in pixels NaFlex resizes it to.

    The largest scale (found by bisection on [1e-6, 100]) whose patch-rounded size fits
    the budget; the aspect ratio is kept up to rounding each side up to whole patches.
    """
    lo, hi = SCALE_TOLERANCE / 10, 100.0
    while hi - lo >= SCALE_TOLERANCE:
        mid = (lo + hi) / 2
        h, w = _scaled_side(height, mid, patch_size), _scaled_side(width, mid, patch_size)
        if (h // patch_size) * (w // patch_size) <= max_num_patches:
            lo = mid
        else:
            hi = mid
    return _scaled_side(height, lo, patch_size), _scaled_side(width, lo, patch_size)


def naflex_image(img: Image.Image, spec: ImageSpec) -> tuple[np.ndarray, tuple[int, int]]:
    """RGB PIL image -> (patches float32 (h*w, p*p*3), (h, w) in patches), unpadded."""
    reduced = reduction(img)  # reduced on decode: the grid comes from the source's size
    img = to_rgb(img)
    p = spec.patch_size
    source_w, source_h = reduced.source_size if reduced is not None else img.size
    height, width = size_for_patch_budget(source_h, source_w, p, spec.max_num_patches)
    if img.size != (width, height) or reduced is not None:
        img = img.resize((width, height), RESAMPLE[spec.resample], box=reduced.box if reduced is not None else None)
    patches, _ = patchify(normalize(np.asarray(img), spec), p)  # (h*w, p*p*3)
    return patches, (height // p, width // p)


def naflex_batch(images: list[Image.Image], spec: ImageSpec) -> dict[str, np.ndarray]:
    """RGB PIL images -> the NaFlex image tower's named inputs, padded to max_num_patches."""
    if spec.mode != "naflex":
        raise ValueError(f"naflex_batch needs an ImageSpec with mode 'naflex', got mode {spec.mode!r}")
    n, dim = spec.max_num_patches, spec.patch_size * spec.patch_size * 3
    pixels = np.zeros((len(images), n, dim), np.float32)  # (B, N, p*p*3)
    mask = np.zeros((len(images), n), np.int32)  # (B, N)
    shapes = np.zeros((len(images), 2), np.int64)  # (B, 2)
    for i, img in enumerate(images):
        patches, hw = naflex_image(img, spec)
        pixels[i, : len(patches)] = patches
        mask[i, : len(patches)] = 1
        shapes[i] = hw
    return {IMAGE_INPUT: pixels, MASK_INPUT: mask, SHAPES_INPUT: shapes}
