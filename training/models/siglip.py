"""SigLIP: a ViT image tower and a text transformer trained with the pairwise
sigmoid loss (Zhai et al., arXiv 2303.15343; loss in `training/losses.py`).

Adapted from big_vision `models/proj/image_text/two_towers.py`. Both towers end
in embeddings of the same dim; the probability that image i matches text j is
sigmoid(exp(t) * <zimg_i, ztxt_j> + b) with learnable scalars t and b.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vistas.training.models.text import TextConfig, TextTransformer
from vistas.training.models.vit import ViT, ViTConfig

FAMILY = "siglip"


@dataclass(frozen=True)
class SigLIPConfig:
    image: ViTConfig
    text: TextConfig
    embed_dim: int
    # Sec. 3 / Algorithm 1 of arXiv 2303.15343: t' = log 10 and b = -10, so that training
    # starts near the prior that almost every pair is a negative, with no large correction.
    t_init: float = math.log(10)
    b_init: float = -10.0

    def __post_init__(self):
        for name, tower in (("image", self.image), ("text", self.text)):
            if tower.out_dim != self.embed_dim:
                what = "head_dim (or width when head_dim is None)" if name == "image" else "head_dim"
                raise ValueError(
                    f"the {name} tower outputs {tower.out_dim}-dim embeddings but embed_dim is "
                    f"{self.embed_dim}; set the {name} config's {what} to {self.embed_dim}"
                )

    def to_dict(self) -> dict:
        """The checkpoint's config.json; "family" picks the builder in `vistas.training.models`."""
        return {
            "family": FAMILY,
            "image": self.image.to_dict(),
            "text": self.text.to_dict(),
            "embed_dim": self.embed_dim,
            "t_init": self.t_init,
            "b_init": self.b_init,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "SigLIPConfig":
        d = dict(d)
        family = d.pop("family", FAMILY)
        if family != FAMILY:
            raise ValueError(f"config is for model family {family!r}, not {FAMILY!r}")
        image, text = ViTConfig.from_dict(d.pop("image")), TextConfig.from_dict(d.pop("text"))
        return cls(image=image, text=text, **d)


class SigLIP(nn.Module):
    def __init__(self, config: SigLIPConfig):
        super().__init__()
        self.config = config
        self.image = ViT(config.image)
        self.text = TextTransformer(config.text)
        self.t = nn.Parameter(torch.tensor(float(config.t_init)))  # log temperature, scalar
        self.b = nn.Parameter(torch.tensor(float(config.b_init)))  # logit bias, scalar

    def encode_image(self, pixels: torch.Tensor, normalize: bool = True, patch_size: int | None = None) -> torch.Tensor:
        """pixels (B, 3, H, W) -> (B, embed_dim); `patch_size` runs the tower as a FlexiViT (ViT.forward)."""
        return _finish(self.image(pixels, patch_size)[0], normalize)

    def encode_image_patches(
        self,
        patches: torch.Tensor,
        coords: torch.Tensor,
        mask: torch.Tensor | None = None,
        normalize: bool = True,
        grid_hw: tuple[int, int] | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """patches (B, N, p*p*3), coords (B, N, 2), mask (B, N) -> (B, embed_dim). See ViT.forward_patches."""
        return _finish(self.image.forward_patches(patches, coords, mask, grid_hw)[0], normalize)

    def encode_naflex(
        self,
        pixel_values: torch.Tensor,
        pixel_attention_mask: torch.Tensor,
        spatial_shapes: torch.Tensor,
        normalize: bool = True,
    ) -> torch.Tensor:
        """SigLIP 2 NaFlex inputs -> (B, embed_dim). See ViT.forward_naflex."""
        return _finish(self.image.forward_naflex(pixel_values, pixel_attention_mask, spatial_shapes)[0], normalize)

    def encode_image_inputs(
        self, inputs: Mapping[str, torch.Tensor], normalize: bool = True, patch_size: int | None = None
    ) -> torch.Tensor:
        """The image tower's named inputs (`vistas.inputs.image_inputs`: fixed-size pixels or
        NaFlex patches) -> (B, embed_dim). `patch_size`: see `encode_image`."""
        return _finish(self._image_tower(inputs, patch_size)[0], normalize)

    def encode_text(self, input_ids: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """input_ids (B, L) int64 -> (B, embed_dim)."""
        return _finish(self.text(input_ids)[0], normalize)

    def forward(
        self, images: torch.Tensor | Mapping[str, torch.Tensor], input_ids: torch.Tensor,
        patch_size: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """images: pixels (B, 3, H, W), or the image tower's named inputs (`vistas.inputs`:
        {"pixel_values"} or NaFlex); input_ids (B', L) -> (zimg (B, E), ztxt (B', E), out),
        both L2-normalised.

        out: the towers' intermediates under "img/..." and "txt/...", their norms
        before normalisation ("img/norm", "txt/norm"), "t" and "b" (the parameters,
        what `sigmoid_loss` takes) and "logit_scale" = exp(t) (what bundles store).
        `patch_size` (fixed-size pixels only) trains the image tower as a FlexiViT at that size.
        """
        images = images if isinstance(images, Mapping) else {"pixel_values": images}
        x_img, out_img = self._image_tower(images, patch_size)
        x_txt, out_txt = self.text(input_ids)  # (B', E)
        out = {f"img/{k}": v for k, v in out_img.items()} | {f"txt/{k}": v for k, v in out_txt.items()}
        out["img/norm"] = x_img.norm(dim=-1)  # (B,)
        out["txt/norm"] = x_txt.norm(dim=-1)  # (B',)
        out["t"], out["b"], out["logit_scale"] = self.t, self.b, self.t.exp()
        return _finish(x_img, True), _finish(x_txt, True), out

    def _image_tower(self, inputs: Mapping[str, torch.Tensor], patch_size: int | None = None) -> tuple[torch.Tensor, dict]:
        if set(inputs) == {"pixel_values"}:
            return self.image(inputs["pixel_values"], patch_size)
        if patch_size not in (None, self.config.image.patch_size):
            raise ValueError(
                f"patch_size={patch_size} needs fixed-size pixel inputs; NaFlex inputs are already cut into "
                f"{self.config.image.patch_size}-pixel patches by preprocessing"
            )
        return self.image.forward_naflex(inputs["pixel_values"], inputs["pixel_attention_mask"], inputs["spatial_shapes"])

    def lock_image_tower(self) -> None:
        """Freeze the image tower: LiT, "locked image, unlocked text" (arXiv 2111.07991)."""
        for p in self.image.parameters():
            p.requires_grad_(False)


def _finish(x: torch.Tensor, normalize: bool) -> torch.Tensor:
    return F.normalize(x, dim=-1) if normalize else x


def build(config: dict) -> SigLIP:
    """Registry builder: a config.json dict -> SigLIP."""
    return SigLIP(SigLIPConfig.from_dict(config))
