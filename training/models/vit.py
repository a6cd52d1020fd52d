"""Vision Transformer image tower (arXiv 2010.11929), the SigLIP image encoder.

Adapted from big_vision `models/vit.py`. The primary input is a *set of patches*
(patches, coords, mask; layout in `vistas.images`), so fixed-size images,
FlexiViT/NaFlex variable resolution and NaViT-style padded sets share one path:

    patches (B, N, p*p*3) --Linear--> tokens (B, N, D)
      (or pixels --conv stem--> tokens, `stem="conv"` / `"hybrid"`: whole images only, see
       conv_stem.py and hybrid_stem.py)
      + position embedding looked up at coords in the (resized) learned grid
      --> pre-LN encoder (padded tokens masked out of attention)
      --> pool: "map" (SigLIP) | "gap" (masked mean) | "none"
      --> optional Linear head (SigLIP's image tower has none)

`forward(pixels)` patchifies exactly like `vistas.images.patchify` and is the
path exported to ONNX (`image_encoder.onnx`) for fixed-size bundles; `forward_naflex`
takes SigLIP 2 NaFlex inputs (`vistas.naflex`) and is the path of NaFlex bundles.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vistas.training.models.conv_stem import ConvStem, conv_stem_channels
from vistas.training.models.flexi import pi_resize_kernel
from vistas.training.models.hybrid_stem import HybridStem, check_hybrid_patch_size
from vistas.training.models.layers import DEFAULT_ACT, LN_EPS, Encoder, MAPHead, check_act, init_linear

# Model sizes: Table 2 of arXiv 2106.04560 (Scaling Vision Transformers); So400m is the
# shape-optimised ViT of arXiv 2305.13035 (Getting ViT in Shape), SigLIP's largest tower.
VARIANTS: dict[str, dict[str, int]] = {
    "Ti": dict(width=192, depth=12, mlp_dim=768, heads=3),
    "S": dict(width=384, depth=12, mlp_dim=1536, heads=6),
    "M": dict(width=512, depth=12, mlp_dim=2048, heads=8),
    "B": dict(width=768, depth=12, mlp_dim=3072, heads=12),
    "L": dict(width=1024, depth=24, mlp_dim=4096, heads=16),
    "So400m": dict(width=1152, depth=27, mlp_dim=4304, heads=16),
}

Pool = Literal["map", "gap", "none"]
Stem = Literal["patch", "conv", "hybrid"]


def decode_variant(variant: str) -> dict[str, int]:
    """'B/16' -> {width, depth, mlp_dim, heads, patch_size}; 'B' -> the same without patch_size."""
    m = re.fullmatch(r"(\w+?)(?:/(\d+))?", variant)
    if not m or m.group(1) not in VARIANTS:
        raise ValueError(
            f"unknown ViT variant {variant!r}; expected NAME or NAME/PATCH with NAME in {list(VARIANTS)}, "
            "e.g. 'B/16', or build a ViTConfig with explicit sizes"
        )
    out = dict(VARIANTS[m.group(1)])
    if m.group(2):
        out["patch_size"] = int(m.group(2))
    return out


@dataclass(frozen=True)
class ViTConfig:
    """Image tower hyperparameters. The defaults are a tiny CPU-trainable model;
    real sizes come from `ViTConfig.from_variant("B/16", image_size=224)`."""

    width: int = 128
    depth: int = 4
    mlp_dim: int = 512  # 4 x width, as in every Table 2 variant
    heads: int = 4
    patch_size: int = 8
    # Grid (rows, cols) of the learned position embedding: the training image size / patch
    # size. Other grids get a bilinear resize of it (FlexiViT arXiv 2212.08013, SigLIP 2 NaFlex).
    posemb_grid: tuple[int, int] = (4, 4)
    pool: Pool = "map"  # SigLIP pools with a MAP head (arXiv 2303.15343 Sec. 4)
    head_dim: int | None = None  # Linear after pooling; None = none (SigLIP's image tower)
    ln_eps: float = LN_EPS
    act: str = DEFAULT_ACT  # MLP activation, a key of `vistas.training.models.layers.ACTIVATIONS`
    # "patch": ViT's linear patchify (every released checkpoint); "conv": Xiao et al.'s
    # convolutional stem (arXiv 2106.14881, training/models/conv_stem.py), pixels in only, one
    # patch size; "hybrid": convolutions to a stride-2 map, then a PI-resizable overlapping patch
    # embedding of it (training/models/hybrid_stem.py), pixels in only, any even patch size (FlexiViT).
    stem: Stem = "patch"

    def __post_init__(self):
        if self.stem not in ("patch", "conv", "hybrid"):
            raise ValueError(f"stem must be 'patch', 'conv' or 'hybrid', got {self.stem!r}")
        if self.stem == "conv":
            conv_stem_channels(self.width, self.patch_size)  # raises for a patch size it cannot reach
        if self.stem == "hybrid":
            check_hybrid_patch_size(self.patch_size)
        if self.pool not in ("map", "gap", "none"):
            raise ValueError(f"pool must be 'map', 'gap' or 'none', got {self.pool!r}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        check_act(self.act)

    @property
    def out_dim(self) -> int:
        return self.head_dim or self.width

    @classmethod
    def from_variant(cls, variant: str, image_size: int | tuple[int, int] = 224, **overrides) -> "ViTConfig":
        """ViTConfig.from_variant("So400m/14", 384) -> the SigLIP So400m/14 image tower at 384px."""
        sizes = decode_variant(variant)
        if "patch_size" not in sizes:
            raise ValueError(f"variant {variant!r} has no patch size; write it as e.g. {variant}/16")
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        p = sizes["patch_size"]
        # Floor, as the reference conv stem ("VALID" padding) drops the remainder:
        # So400m/14 at 384px has a 27x27 grid and ignores the last 6 pixel rows/cols.
        return cls(**{**sizes, "posemb_grid": (h // p, w // p), **overrides})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["posemb_grid"] = list(self.posemb_grid)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ViTConfig":
        known = {f.name for f in fields(cls)}
        if unknown := set(d) - known:
            raise ValueError(f"unknown ViTConfig fields {sorted(unknown)}; known: {sorted(known)}")
        d = dict(d)
        if "posemb_grid" in d:
            d["posemb_grid"] = tuple(d["posemb_grid"])
        return cls(**d)


def patchify(pixels: torch.Tensor, patch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) -> patches (B, N, p*p*3) in (row, col, channel) order, coords (B, N, 2) int64.

    The batched torch twin of `vistas.images.patchify`, the layout serving and NaFlex use.
    """
    b, c, h, w = pixels.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"image size {h}x{w} is not a multiple of patch size {p}")
    gh, gw = h // p, w // p
    x = pixels.reshape(b, c, gh, p, gw, p).permute(0, 2, 4, 3, 5, 1)  # (B, gh, gw, p, p, C)
    patches = x.reshape(b, gh * gw, p * p * c)  # (B, N, p*p*C)
    rows = torch.arange(gh, device=pixels.device).repeat_interleave(gw)  # (N,) 0,0,..,1,1,..
    cols = torch.arange(gw, device=pixels.device).repeat(gh)  # (N,) 0,1,..,0,1,..
    coords = torch.stack([rows, cols], dim=-1).expand(b, -1, -1)  # (B, N, 2)
    return patches, coords


def resize_posemb(posemb: torch.Tensor, new_hw: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize a (gh, gw, D) position-embedding grid to (h, w, D).

    Antialiased bilinear with half-pixel centres: what transformers' Siglip2 (NaFlex)
    `resize_positional_embeddings` asks of `F.interpolate(mode="bilinear",
    align_corners=False, antialias=True)` and what PIL's BILINEAR resize computes; the
    antialiasing filter only matters when downsampling. Computed with `resize_weights`
    rather than F.interpolate, whose CPU kernel returns wrong values when the output is
    one column wide (torch 2.13: a (16, 16) grid resized to (40, 1) differs from PIL by
    0.44). In an exported graph the sizes are static and the result folds into a constant.
    The same size returns `posemb` itself.
    """
    h, w = int(new_hw[0]), int(new_hw[1])
    gh, gw, _ = posemb.shape
    if (gh, gw) == (h, w):
        return posemb
    rows = resize_weights(torch.arange(h, device=posemb.device)[None], torch.tensor([[h]], device=posemb.device), gh)
    cols = resize_weights(torch.arange(w, device=posemb.device)[None], torch.tensor([[w]], device=posemb.device), gw)
    return torch.einsum("hi,ijd,wj->hwd", rows[0], posemb, cols[0])  # (h, w, D)


def resize_weights(index: torch.Tensor, out_size: torch.Tensor, in_size: int) -> torch.Tensor:
    """Weights of `resize_posemb` along one axis, for output position `index` of a length-`out_size` axis.

    index (B, N) int64 and out_size (B, 1) int64 -> (B, N, in_size) float32, rows summing to 1.
    The filter of antialiased bilinear resizing (PIL's BILINEAR, torch's upsample_bilinear2d_aa):
    a triangle centred on the output sample, widened by the scale factor when downsampling,
    renormalised over the input positions that exist. Written with static shapes so that
    out_size may be data (NaFlex: every image has its own grid) and the graph still exports.
    """
    scale = in_size / out_size.to(torch.float32)  # (B, 1) input pixels per output pixel
    support = scale.clamp(min=1.0)  # (B, 1) half-width of the triangle, in input pixels
    centre = scale * (index.to(torch.float32) + 0.5)  # (B, N)
    taps = torch.arange(in_size, device=index.device, dtype=torch.float32) + 0.5  # (in,)
    w = (1 - (taps - centre[..., None]).abs() / support[..., None]).clamp(min=0)  # (B, N, in)
    return w / w.sum(dim=-1, keepdim=True)


class ViT(nn.Module):
    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = c = config
        if c.stem == "conv":
            self.conv_stem = ConvStem(c.width, c.patch_size)
        elif c.stem == "hybrid":
            self.hybrid_stem = HybridStem(c.width, c.patch_size)
        else:
            self.patch_embed = nn.Linear(c.patch_size * c.patch_size * 3, c.width)
        # big_vision posemb "learn": normal(stddev=1/sqrt(width)).
        self.pos_embedding = nn.Parameter(torch.randn(*c.posemb_grid, c.width) / math.sqrt(c.width))
        self.encoder = Encoder(c.width, c.depth, c.mlp_dim, c.heads, c.ln_eps, c.act)
        self.map_head = MAPHead(c.width, c.mlp_dim, c.heads, c.ln_eps, c.act) if c.pool == "map" else None
        self.head = nn.Linear(c.width, c.head_dim) if c.head_dim else None
        self.apply(init_linear)

    def forward(self, pixels: torch.Tensor, patch_size: int | None = None) -> tuple[torch.Tensor, dict]:
        """pixels (B, 3, H, W), normalised -> (x (B, out_dim), out). The ONNX-exported path.

        Rows and columns past the last whole patch are dropped, as the reference conv stem
        ("VALID" padding) does: So400m/14 at 384 px sees a 27x27 grid of the top-left 378 px.
        `patch_size` other than the config's runs the model as a FlexiViT (arXiv 2212.08013):
        the kernel PI-resized, the position embedding resized to the (H/p, W/p) grid.
        """
        out: dict = {}
        return self.trunk(self.stem_tokens(pixels, patch_size, out), None, out)

    def stem_tokens(self, pixels: torch.Tensor, patch_size: int | None = None, out: dict | None = None) -> torch.Tensor:
        """pixels (B, 3, H, W) -> tokens with their position embedding (B, H/p * W/p, D): the part of
        `forward` that depends on the patch size (`trunk` does the rest)."""
        out = {} if out is None else out
        p = patch_size or self.config.patch_size
        grid_hw = (pixels.shape[2] // p, pixels.shape[3] // p)
        if not grid_hw[0] or not grid_hw[1]:
            raise ValueError(f"a {pixels.shape[2]}x{pixels.shape[3]} image is smaller than one {p}x{p} patch")
        pixels = pixels[:, :, : grid_hw[0] * p, : grid_hw[1] * p]
        if self.config.stem == "conv" and p != self.config.patch_size:
            raise ValueError(f"patch_size {p}: a conv-stem ViT runs at its own patch size "
                             f"({self.config.patch_size}) only; FlexiViT needs stem='patch' or 'hybrid'")
        if self.config.stem == "conv":
            x = out["stem"] = self.conv_stem(pixels)  # (B, N, D)
        elif self.config.stem == "hybrid":
            x = out["stem"] = self.hybrid_stem(pixels, p)  # (B, N, D)
        else:
            patches, _ = patchify(pixels, p)  # (B, N, p*p*3)
            x = out["stem"] = self.embed_patches(patches, p)  # (B, N, D)
        rows, cols = torch.meshgrid(torch.arange(grid_hw[0], device=x.device),
                                    torch.arange(grid_hw[1], device=x.device), indexing="ij")
        coords = torch.stack([rows.flatten(), cols.flatten()], -1).expand(x.shape[0], -1, -1)  # (B, N, 2)
        x = out["with_posemb"] = x + self.position_embedding(coords, None, grid_hw)  # (B, N, D)
        return x

    def forward_naflex(
        self, pixel_values: torch.Tensor, pixel_attention_mask: torch.Tensor, spatial_shapes: torch.Tensor
    ) -> tuple[torch.Tensor, dict]:
        """SigLIP 2 NaFlex inputs (as `vistas.naflex` and transformers' Siglip2ImageProcessor make them).

        pixel_values (B, N, p*p*3): each image's h*w patches in row-major order, then padding;
        pixel_attention_mask (B, N), nonzero = real patch; spatial_shapes (B, 2) int64 = (h, w).
        Patch n of an image sits at (n // w, n % w); its position embedding is the learned grid
        resized to (h, w). Traceable with data-dependent (h, w): the ONNX-exported NaFlex path.
        """
        n = torch.arange(pixel_values.shape[1], device=pixel_values.device)  # (N,)
        w = spatial_shapes[:, 1:2].clamp(min=1)  # (B, 1)
        coords = torch.stack([n // w, n % w], dim=-1)  # (B, N, 2)
        return self.forward_patches(pixel_values, coords, pixel_attention_mask != 0, grid_hw=spatial_shapes)

    def forward_patches(
        self,
        patches: torch.Tensor,
        coords: torch.Tensor,
        mask: torch.Tensor | None = None,
        grid_hw: tuple[int, int] | torch.Tensor | None = None,
        patch_size: int | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """A padded batch of patch sets -> (x, out).

        patches (B, N, p*p*3) float; coords (B, N, 2) int64 (row, col); mask (B, N) bool,
        True = real patch (None = all real). Padded entries may hold any values.
        grid_hw: the patch grid the coords live in, which picks the position-embedding
        resize: (h, w) for the whole batch, an int64 (B, 2) tensor per image, or None to
        take each image's max real coords + 1. Per-image grids also export to ONNX (see position_embedding).
        patch_size: the side of the patches (default the config's); another size embeds them
        with the PI-resized kernel (`embed_patches`).

        x is (B, out_dim) for pool "map"/"gap" and (B, N, out_dim) for "none".
        out: "stem", "with_posemb", "encoder" (per-block dict), "encoded" (B, N, D),
        "pre_logits" (pooled, before the head), "logits" (after the head, if any).
        """
        if self.config.stem != "patch":
            raise ValueError(f"this ViT has a {self.config.stem} stem, which sees whole images: call forward(pixels); "
                             "patch sets (NaFlex, packed sequences) need a model with stem='patch'")
        p = patch_size or self.config.patch_size
        b, n, pdim = patches.shape
        if pdim != p * p * 3:
            raise ValueError(f"patches have {pdim} values, expected {p}*{p}*3 = {p * p * 3} (patch size {p}, RGB)")
        if coords.shape != (b, n, 2):
            raise ValueError(f"coords must be (B, N, 2) = ({b}, {n}, 2), got {tuple(coords.shape)}")
        if mask is not None and mask.shape != (b, n):
            raise ValueError(f"mask must be (B, N) = ({b}, {n}), got {tuple(mask.shape)}")

        out = {}
        x = out["stem"] = self.embed_patches(patches, p)  # (B, N, D)
        return self._encode(x, coords, mask, grid_hw, out)

    def _encode(self, x: torch.Tensor, coords: torch.Tensor, mask: torch.Tensor | None,
                grid_hw: tuple[int, int] | torch.Tensor | None, out: dict) -> tuple[torch.Tensor, dict]:
        """Stem tokens (B, N, D) -> position embedding, encoder, pool, head (see forward_patches)."""
        x = out["with_posemb"] = x + self.position_embedding(coords, mask, grid_hw)  # (B, N, D)
        return self.trunk(x, mask, out)

    def trunk(self, x: torch.Tensor, mask: torch.Tensor | None = None,
              out: dict | None = None) -> tuple[torch.Tensor, dict]:
        """Tokens with their position embedding (B, N, D) -> encoder, pool, head: the part of the
        tower that is the same at every patch size (a FlexiViT's shared trunk)."""
        out = {} if out is None else out
        x, out["encoder"] = self.encoder(x, mask)  # (B, N, D)
        out["encoded"] = x
        x = out["pre_logits"] = self._pool(x, mask)  # (B, D) or (B, N, D)
        if self.head is not None:
            x = out["logits"] = self.head(x)  # (B, head_dim) or (B, N, head_dim)
        return x, out

    def embed_patches(self, patches: torch.Tensor, patch_size: int) -> torch.Tensor:
        """(B, N, p*p*3) -> (B, N, D). At the config's patch size this is the plain Linear (the
        same bits as ever); at another, FlexiViT's PI-resized kernel (`flexi.pi_resize_kernel`)."""
        if patch_size == self.config.patch_size:
            return self.patch_embed(patches)
        kernel = pi_resize_kernel(self.patch_embed.weight, self.config.patch_size, patch_size)  # (D, p*p*3)
        return F.linear(patches, kernel, self.patch_embed.bias)

    def position_embedding(
        self,
        coords: torch.Tensor,
        mask: torch.Tensor | None,
        grid_hw: tuple[int, int] | torch.Tensor | None,
    ) -> torch.Tensor:
        """(B, N, 2) coords -> (B, N, D) embeddings from the grid resized to each image's grid."""
        if mask is not None:
            coords = coords.masked_fill(~mask[..., None], 0)  # padding may hold any coords
        if grid_hw is None:
            grid_hw = coords.amax(dim=1) + 1  # (B, 2): the image's own extent, as NaFlex resizes
        if not isinstance(grid_hw, torch.Tensor):
            return self._lookup(coords, (int(grid_hw[0]), int(grid_hw[1])))
        # Per-image grids: each patch's embedding is a weighted sum of the learned grid, with the
        # weights of the antialiased bilinear resize to its own image's grid. Sizes stay static,
        # so the same code runs eagerly and in an exported graph with data-dependent (h, w).
        self._check_coords(coords, mask, grid_hw)
        gh, gw, d = self.pos_embedding.shape
        rows = resize_weights(coords[..., 0], grid_hw[:, 0:1], gh)  # (B, N, gh)
        cols = resize_weights(coords[..., 1], grid_hw[:, 1:2], gw)  # (B, N, gw)
        weights = (rows[..., :, None] * cols[..., None, :]).flatten(2)  # (B, N, gh*gw)
        return weights @ self.pos_embedding.reshape(gh * gw, d)  # (B, N, D)

    def _check_coords(self, coords: torch.Tensor, mask: torch.Tensor | None, grid_hw: torch.Tensor) -> None:
        if torch.compiler.is_exporting() or not coords.numel():
            return
        if grid_hw.shape != (coords.shape[0], 2) or (grid_hw < 1).any():
            raise ValueError(f"grid_hw must be (B, 2) = ({coords.shape[0]}, 2) positive sizes, got {grid_hw.tolist()}")
        inside = ((coords >= 0) & (coords < grid_hw[:, None, :])).all(dim=-1)  # (B, N)
        if mask is not None:
            inside = inside | ~mask
        if not inside.all():
            b, i = (~inside).nonzero()[0].tolist()
            raise ValueError(
                f"image {b}: patch {i} has coords {coords[b, i].tolist()}, outside its {grid_hw[b].tolist()} "
                "patch grid; pass the right grid_hw or mark padding with mask=False"
            )

    def _lookup(self, coords: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        if not torch.compiler.is_exporting() and coords.numel():
            lo, hi = coords.amin(dim=(0, 1)).tolist(), coords.amax(dim=(0, 1)).tolist()
            if lo[0] < 0 or lo[1] < 0 or hi[0] >= hw[0] or hi[1] >= hw[1]:
                raise ValueError(
                    f"patch coords span rows {lo[0]}..{hi[0]}, cols {lo[1]}..{hi[1]}, outside the "
                    f"{hw[0]}x{hw[1]} patch grid; pass the right grid_hw or mark padding with mask=False"
                )
        table = resize_posemb(self.pos_embedding, hw)  # (h, w, D)
        return table[coords[..., 0], coords[..., 1]]  # (B, N, D)

    def _pool(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        pool = self.config.pool
        if pool == "map":
            return self.map_head(x, mask)  # (B, D)
        if pool == "gap":
            if mask is None:
                return x.mean(dim=1)  # (B, D)
            m = mask[..., None].to(x.dtype)  # (B, N, 1)
            return (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)  # (B, D)
        return x  # "none": (B, N, D), e.g. for a captioning decoder to attend to
