"""A FlexiViT-resizable convolutional stem: convolutions to a stride-2 feature map, then an
overlapping patch embedding of that map whose kernel PI-resizes like ViT's (FlexiViT, arXiv 2212.08013).

ViT's "hybrid" input (Dosovitskiy et al., arXiv 2010.11929 Sec. 3.1) cuts the patches from a CNN
feature map instead of the pixels. Here the CNN is two 3x3 convolutions with BatchNorm and ReLU
(the first at stride 2), as in Xiao et al.'s stem (arXiv 2106.14881, conv_stem.py), which this
project found the tiny tower needs to learn *shape* from freely placed objects (issue 13). The
full conv stem strides all the way to the patch size and so runs at one patch size only; this one
stops at stride 2 and leaves the rest to one linear map per token, the *underlying* kernel that
FlexiViT resizes per patch size (issue 14). Each token sees a window twice its stride (k = p/2
map pixels per token, a 2k x 2k window, as PVT v2's overlapping patch embedding, arXiv
2106.13797), so an object across a patch edge reaches one token whole:

    pixels (B, 3, H, W)
      -> Conv 3x3 stride 2 -> BatchNorm -> ReLU            (B, C, H/2, W/2)
      -> Conv 3x3 stride 1 -> BatchNorm -> ReLU            (B, C, H/2, W/2)
      -> pad k/2 each side (floor before, ceil after)      (B, C, H/2 + k, W/2 + k)
      -> Conv 2k x 2k stride k, the kernel PI-resized      (B, width, H/p, W/p)
         from the underlying 2k0 x 2k0 (k0 = p0/2)
      -> tokens, row-major                                 (B, H/p * W/p, width)

Measured on the shape label alone (issue 13's probe: the 4 x 128 tower, cross-entropy, batch 128,
48 px, p = 8, 300 steps, one core): this stem 73.9 %; without the overlap (k x k windows) 44.9 %
with C = 64, 49.7 % with C = 32; with a third 3x3 convolution instead of the overlap 69.8 %; the
full conv stem 82.1 %; ViT's linear patchify 24.2 %.

Any even patch size that tiles the image works (48 px: 4, 6, 8, 12, 16). PI-resize's identity
(<Bx, PI(w)> = <x, w>) holds on the feature map, not on the pixels: the convolutions do not
commute with resizing, so unlike the linear stem a p=16 token of a 2x upsampled image is not the
p=8 token of the original. FlexiViT's training with a patch size drawn per step is what makes
the tokens agree across sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vistas.training.models.flexi import pi_resize_kernel

STRIDE = 2  # of the feature map the patches are cut from: every even patch size is reachable


def check_hybrid_patch_size(patch_size: int) -> None:
    if patch_size < STRIDE or patch_size % STRIDE:
        raise ValueError(f"a hybrid stem cuts patches from a stride-{STRIDE} feature map: the patch size must be "
                         f"a multiple of {STRIDE}, got {patch_size}")


class HybridStem(nn.Module):
    def __init__(self, width: int, patch_size: int, channels: int = 32):
        super().__init__()
        check_hybrid_patch_size(patch_size)
        self.patch_size, self.channels = patch_size, channels
        # No bias before BatchNorm: its shift is BatchNorm's.
        self.convs = nn.Sequential(
            nn.Conv2d(3, channels, 3, stride=STRIDE, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
        )
        w = window(patch_size)
        # The underlying kernel in the patch-embedding layout of the linear stem: (width, w*w*C),
        # (row, col, channel) order, which `pi_resize_kernel` resizes.
        self.patch_embed = nn.Linear(w * w * channels, width)
        for m in self.convs:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, pixels: torch.Tensor, patch_size: int | None = None) -> torch.Tensor:
        """(B, 3, H, W), H and W multiples of the patch size -> tokens (B, H/p * W/p, width), row-major."""
        return self.embed_map(self.convs(pixels), patch_size)  # convs: (B, C, H/2, W/2)

    def embed_map(self, feature_map: torch.Tensor, patch_size: int | None = None) -> torch.Tensor:
        """(B, C, h, w) feature map -> tokens (B, (2h/p) * (2w/p), width): a (p x p)-map-pixel window
        every p/2 map pixels, through the kernel PI-resized from the underlying patch size's."""
        p = patch_size or self.patch_size
        k = p // STRIDE
        x = F.pad(feature_map, (k // 2, k - k // 2, k // 2, k - k // 2))  # (B, C, h + k, w + k)
        x = F.conv2d(x, self.kernel(p), self.patch_embed.bias, stride=k)  # (B, D, h/k, w/k)
        return x.flatten(2).transpose(1, 2)  # (B, N, D)

    def kernel(self, patch_size: int) -> torch.Tensor:
        """The embedding kernel at `patch_size`, (D, C, w, w) with w = window(p): the underlying one
        PI-resized (itself at the underlying patch size)."""
        check_hybrid_patch_size(patch_size)
        new, old = window(patch_size), window(self.patch_size)
        kernel = pi_resize_kernel(self.patch_embed.weight, old, new, channels=self.channels)  # (D, new*new*C)
        return kernel.reshape(-1, new, new, self.channels).permute(0, 3, 1, 2)  # (D, C, new, new)


def window(patch_size: int) -> int:
    """Side of a token's window on the stride-2 map: twice the token stride p/2."""
    return 2 * (patch_size // STRIDE)


def hybrid_stem_flops(image_hw: tuple[int, int], patch_size: int, width: int, channels: int = 32) -> int:
    """Multiply-adds x 2 of the stem on one image at `patch_size`: the two convolutions and the
    windowed patch embedding (N tokens x window^2 x C x width; constant in p, as N falls as p^-2)."""
    h, w = image_hw[0] // STRIDE, image_hw[1] // STRIDE
    convs = h * w * 9 * (3 * channels + channels * channels)
    n = (image_hw[0] // patch_size) * (image_hw[1] // patch_size)
    return 2 * (convs + n * window(patch_size) ** 2 * channels * width)
