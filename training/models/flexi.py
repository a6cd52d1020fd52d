"""FlexiViT (Beyer et al., arXiv 2212.08013): one ViT that runs at any patch size.

The patch embedding keeps one *underlying* kernel (p0 x p0) and the position embedding one
learned grid; at run time the kernel is resized to the requested patch size p by
**PI-resize** and the grid bilinearly to the token grid (`vit.resize_posemb`).

PI-resize (Sec. 3.4 of the paper, big_vision `models/proj/flexi/vit.py:resample_patchemb`):
resizing a patch x (p0 x p0) to p x p is linear, x' = B x, with B the matrix of bilinear,
half-pixel, non-antialiased resizing (`tf.image.resize(..., "bilinear")`). A token is
<x, w>; the kernel w' = pinv(B^T) w gives <B x, w'> = <x, w> exactly when p >= p0 (B^T has
full row rank) and the least-squares best when p < p0. The matrix is built as the reference
builds it: each basis patch sent through the resize, its output a column of B.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F


def _as_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h < 1 or w < 1:
        raise ValueError(f"patch size must be positive, got {size}")
    return h, w


@functools.lru_cache(maxsize=64)
def _resize_matrix(old_hw: tuple[int, int], new_hw: tuple[int, int]) -> np.ndarray:
    oh, ow = old_hw
    basis = torch.eye(oh * ow, dtype=torch.float64).reshape(oh * ow, 1, oh, ow)  # one basis patch per row
    # Bilinear with half-pixel centres and no antialiasing: tf.image.resize(method="bilinear")'s
    # defaults, which the reference used. An antialiased resize agrees only when upsampling.
    out = F.interpolate(basis, size=new_hw, mode="bilinear", align_corners=False, antialias=False)
    return out.reshape(oh * ow, -1).T.numpy()  # (nh*nw, oh*ow): column i = resized basis patch i


def resize_matrix(old: int | tuple[int, int], new: int | tuple[int, int]) -> np.ndarray:
    """B (new_h*new_w, old_h*old_w) float64: row-major patch of side `old` -> resized patch of side `new`."""
    return _resize_matrix(_as_hw(old), _as_hw(new)).copy()


@functools.lru_cache(maxsize=64)
def _pi_matrix(old_hw: tuple[int, int], new_hw: tuple[int, int]) -> np.ndarray:
    return np.linalg.pinv(_resize_matrix(old_hw, new_hw).T)  # (nh*nw, oh*ow)


@torch.compiler.assume_constant_result
def _pi_tensor(oh: int, ow: int, nh: int, nw: int) -> torch.Tensor:
    # A constant of the sizes only: an exported graph gets the matrix, not the pinv that made it.
    return torch.from_numpy(_pi_matrix((oh, ow), (nh, nw)))


def pi_resize_matrix(old: int | tuple[int, int], new: int | tuple[int, int]) -> np.ndarray:
    """pinv(B^T) (new_h*new_w, old_h*old_w) float64: a flattened kernel of side `old` -> side `new`."""
    return _pi_matrix(_as_hw(old), _as_hw(new)).copy()


def pi_resize_kernel(kernel: torch.Tensor, old: int | tuple[int, int], new: int | tuple[int, int],
                     channels: int = 3) -> torch.Tensor:
    """PI-resize a patch-embedding weight in vistas' layout: (D, old_h*old_w*C) -> (D, new_h*new_w*C).

    The layout is `nn.Linear` over patches flattened in (row, col, channel) order (`vit.patchify`).
    Differentiable in `kernel` (the resize is a constant matrix), so a FlexiViT trains through it.
    The same size returns `kernel` itself: bit-identical to the model without the resize.
    """
    (oh, ow), (nh, nw) = _as_hw(old), _as_hw(new)
    d, k = kernel.shape
    if k != oh * ow * channels:
        raise ValueError(f"kernel has {k} inputs, expected {oh}*{ow}*{channels} = {oh * ow * channels} "
                         f"for patch size {(oh, ow)} with {channels} channels")
    if (oh, ow) == (nh, nw):
        return kernel
    pi = _pi_tensor(oh, ow, nh, nw).to(kernel)  # (nh*nw, oh*ow)
    w = kernel.reshape(d, oh * ow, channels)  # (D, oh*ow, C)
    new = torch.einsum("nk,dkc->dnc", pi, w)  # (D, nh*nw, C)
    return new.reshape(d, nh * nw * channels)


def patch_flops(image_hw: tuple[int, int], patch_size: int, width: int, depth: int, mlp_dim: int,
                channels: int = 3, stem_flops: int | None = None) -> int:
    """Multiply-adds x 2 of a ViT image tower (stem + encoder) on one image at `patch_size`.

    Counts the matrix products, which dominate: stem N*p*p*C*D; per block the q/k/v/out
    projections 4*N*D^2, the attention scores and mixing 2*N^2*D, the MLP 2*N*D*mlp.
    Pooling and norms are left out (under 1 % at these sizes). `stem_flops`: another stem's
    count in place of the linear patchify's (a hybrid stem, `hybrid_stem.hybrid_stem_flops`).
    """
    n = (image_hw[0] // patch_size) * (image_hw[1] // patch_size)
    block = 4 * n * width * width + 2 * n * n * width + 2 * n * width * mlp_dim
    if stem_flops is None:
        stem_flops = 2 * n * patch_size * patch_size * channels * width
    return stem_flops + 2 * depth * block


def check_patch_size(image_hw: tuple[int, int], patch_size: int) -> None:
    """A patch size must tile the image: FlexiViT trains at a fixed image size with patch sizes
    that divide it (48 px: 4, 6, 8, 12, 16)."""
    h, w = image_hw
    if patch_size < 1 or h % patch_size or w % patch_size:
        divisors = [p for p in range(1, min(h, w) + 1) if h % p == 0 and w % p == 0]
        raise ValueError(f"patch size {patch_size} does not tile a {h}x{w} image; "
                         f"patch sizes that do: {divisors}")


def seq_len(image_hw: tuple[int, int], patch_size: int) -> int:
    return math.prod(s // patch_size for s in image_hw)
