"""FlexiViT's patch-size draw: one patch size per training step (arXiv 2212.08013, Sec. 3.2).

A recipe asks for it with

    c.flexi = dict(patch_sizes=[4, 6, 8, 12, 16], probs=[0.15, 0.2, 0.3, 0.2, 0.15])

(big_vision: `flexi.choice(v, p)`; `probs` may be left out for a uniform draw). Every size must
tile the recipe's fixed image size. `patch_sizes="auto"` takes every size that tiles the image
from half to twice the model's own patch size (48 px, p=8: 4, 6, 8, 12, 16; 224 px, p=16: 8,
14, 16, 28, 32), for recipes that start from a checkpoint whose sizes they do not know. The draw is a pure function of (seed, step), so a resumed
run replays the same sizes; evaluation runs at every size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from vistas.training.models.flexi import check_patch_size

_STREAM = 0xF1E  # keeps this draw apart from the data's streams of the same seed


class PatchSizes:
    def __init__(self, patch_sizes: Sequence[int], probs: Sequence[float] | None = None, *,
                 image_hw: tuple[int, int], seed: int = 0):
        sizes = [int(p) for p in patch_sizes]
        if not sizes or len(set(sizes)) != len(sizes):
            raise ValueError(f"flexi.patch_sizes must be distinct patch sizes, got {list(patch_sizes)}")
        for p in sizes:
            check_patch_size(image_hw, p)
        if probs is None:
            probs = [1.0] * len(sizes)
        probs = np.asarray(probs, dtype=np.float64)
        if probs.shape != (len(sizes),) or (probs < 0).any() or probs.sum() <= 0:
            raise ValueError(f"flexi.probs must be {len(sizes)} non-negative weights, one per patch size "
                             f"{sizes}, not all zero; got {list(probs)}")
        self.sizes, self.probs, self.seed = sizes, probs / probs.sum(), seed

    @classmethod
    def from_config(cls, flexi: Mapping | None, image_hw: tuple[int, int], seed: int = 0,
                    patch_size: int | None = None) -> "PatchSizes | None":
        """`patch_size`: the model's own, for patch_sizes="auto"."""
        if not flexi:
            return None
        unknown = set(flexi) - {"patch_sizes", "probs"}
        if unknown or "patch_sizes" not in flexi:
            raise ValueError(f"config.flexi takes patch_sizes (and optional probs), got keys {sorted(flexi)}")
        sizes = flexi["patch_sizes"]
        if sizes == "auto":
            if patch_size is None:
                raise ValueError('flexi.patch_sizes="auto" needs the model\'s patch size')
            sizes = auto_sizes(image_hw, patch_size)
            if flexi.get("probs") is not None:
                raise ValueError('flexi.probs cannot go with patch_sizes="auto" (the sizes are not known in advance)')
        return cls(sizes, flexi.get("probs"), image_hw=image_hw, seed=seed)

    def at(self, step: int) -> int:
        """The patch size of training step `step`."""
        rng = np.random.default_rng([self.seed, _STREAM, step])
        return self.sizes[int(rng.choice(len(self.sizes), p=self.probs))]


def auto_sizes(image_hw: tuple[int, int], patch_size: int) -> list[int]:
    """Patch sizes from patch_size / 2 to 2 x patch_size that tile the image."""
    h, w = image_hw
    return [p for p in range(max(1, patch_size // 2), 2 * patch_size + 1) if h % p == 0 and w % p == 0]
