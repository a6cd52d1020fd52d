"""A convolutional stem for the ViT: "Early Convolutions Help Transformers See Better"
(Xiao et al., arXiv 2106.14881).

ViT's patchify stem is one stride-p linear map per p x p patch. An object that lands across
patch boundaries, at any sub-patch offset, reaches the transformer as unrelated pieces of
several linear maps; the tower must learn shift invariance inside each patch from data. The
paper replaces that stem with a few stride-2 3x3 convolutions (BatchNorm, ReLU) and a final
1x1 convolution to the width, reaching the same stride p and token grid, for about the FLOPs
of one transformer block; it reports faster, more robust optimisation.

Measured here (issue 13, the shapes generator with free placement, 48 px images, p = 8, the
bundled recipe's 4 x 128 tower trained on the shape label alone, cross-entropy, batch 128):
shape accuracy after 300 / 900 / 1,500 steps was 24 / 40 / 46 % with the linear stem and 82 %
after 300 with this stem; a 3-layer CNN alone reached 81 / 94 % at 300 / 900. Convolving each
patch on its own (no view across patch edges) reached only 59 % at 600.

    pixels (B, 3, H, W)
      -> [Conv 3x3 stride 2 -> BatchNorm -> ReLU] x log2(p)   channels width/2^(k-1) ... width
      -> Conv 1x1 -> tokens (B, width, H/p, W/p)

The stem sees the whole image, so a model with it takes pixels, not patch sets: NaFlex and
NaViT packing need the linear stem (`ViTConfig.stem = "patch"`). It strides to one patch size, so
FlexiViT needs the linear stem or the hybrid one (hybrid_stem.py: convolutions to stride 2, then
a PI-resizable patch embedding).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def conv_stem_channels(width: int, patch_size: int) -> list[int]:
    """Output channels of the log2(p) stride-2 convolutions, doubling up to `width` (32-64-128 for the
    tiny recipe's width 128 at p = 8). Xiao et al. tune a channel plan per model size; doubling to
    the width keeps the last 3x3 convolution as wide as the tokens, at about one block's FLOPs."""
    k = int(math.log2(patch_size))
    if patch_size < 2 or 2**k != patch_size:
        raise ValueError(f"a conv stem needs a power-of-two patch size (stride-2 convolutions), got {patch_size}")
    return [max(8, width // 2 ** (k - 1 - i)) for i in range(k)]


class ConvStem(nn.Module):
    def __init__(self, width: int, patch_size: int):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in conv_stem_channels(width, patch_size):
            # No bias before BatchNorm: its shift is BatchNorm's.
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            c_in = c
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Conv2d(c_in, width, 1)
        for m in self.convs:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) with H, W multiples of the patch size -> tokens (B, H/p * W/p, width), row-major."""
        x = self.proj(self.convs(pixels))  # (B, D, H/p, W/p)
        return x.flatten(2).transpose(1, 2)  # (B, N, D)
