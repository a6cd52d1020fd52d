"""Text transformer tower, the SigLIP text encoder.

Adapted from big_vision `models/proj/image_text/text_transformer.py`:

    input_ids (B, L) --embed--> (B, L, D) + learned position embedding (L, D)
      --> pre-LN encoder, *no attention mask*, final LayerNorm
      --> pool the LAST token (or the mean of all tokens, pool="gap") --> Linear head to the embedding dim

SigLIP pads every text to a fixed length L and reads the last position (big_vision
`pool_type="last"`, transformers SiglipTextTransformer `[:, -1]`), so the padding
length and side are part of the model; `vistas.tokenizer.TextSpec` carries them.

big_vision's text tower also offers pool_type "gap" (the mean over all L positions, padding
included, no mask either), here `pool="gap"`. Tried for issue 13, where the six shape names
still embedded at cosine 0.90-1.00 of each other after 500 steps of the varied shapes: with
"gap" they did too (shape 22 % at step 250, seen pairs 26 % at 500, as with "last"); what
broke the symmetry was a curriculum (configs/siglip_shapes_digits.py). The recipes use "last".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from vistas.training.models.layers import DEFAULT_ACT, LN_EPS, Encoder, check_act, init_linear
from vistas.training.models.vit import decode_variant


@dataclass(frozen=True)
class TextConfig:
    """Text tower hyperparameters; defaults are a tiny CPU-trainable model."""

    vocab_size: int = 1000
    length: int = 16  # L: must equal TextSpec.length of the tokenizer that feeds it
    width: int = 128
    depth: int = 4
    mlp_dim: int = 512
    heads: int = 4
    head_dim: int = 128  # output (embedding) dim; transformers' projection_size, = width by default there
    ln_eps: float = LN_EPS
    act: str = DEFAULT_ACT  # MLP activation, a key of `vistas.training.models.layers.ACTIVATIONS`
    pool: str = "last"  # "last" (SigLIP, every released checkpoint) | "gap" (mean over the L positions)

    def __post_init__(self):
        if self.pool not in ("last", "gap"):
            raise ValueError(f"text pool must be 'last' or 'gap', got {self.pool!r}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        check_act(self.act)

    @property
    def out_dim(self) -> int:
        return self.head_dim

    @classmethod
    def from_variant(cls, variant: str, vocab_size: int, length: int, **overrides) -> "TextConfig":
        """TextConfig.from_variant("B", 32000, 64): the ViT size table applied to text, as big_vision does."""
        sizes = decode_variant(variant)
        sizes.pop("patch_size", None)
        return cls(**{**sizes, "vocab_size": vocab_size, "length": length, "head_dim": sizes["width"], **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TextConfig":
        known = {f.name for f in fields(cls)}
        if unknown := set(d) - known:
            raise ValueError(f"unknown TextConfig fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


class TextTransformer(nn.Module):
    def __init__(self, config: TextConfig):
        super().__init__()
        self.config = c = config
        self.token_embed = nn.Embedding(c.vocab_size, c.width)
        # big_vision posemb "learn": normal(stddev=1/sqrt(width)); flax Embed's lecun-normal for tokens.
        self.pos_embedding = nn.Parameter(torch.randn(c.length, c.width) / math.sqrt(c.width))
        self.encoder = Encoder(c.width, c.depth, c.mlp_dim, c.heads, c.ln_eps, c.act)
        self.head = nn.Linear(c.width, c.head_dim)
        nn.init.normal_(self.token_embed.weight, std=1 / math.sqrt(c.width))
        self.apply(init_linear)

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """input_ids (B, L) int64, padded to L -> (x (B, head_dim), out).

        out: "embedded", "encoder" (per-block dict), "encoded" (B, L, D),
        "pre_logits" (last token or the mean, B, D), "logits" (after the head, = x).
        """
        b, length = input_ids.shape
        if length != self.config.length:
            raise ValueError(
                f"input_ids have length {length}, the model expects {self.config.length}: "
                "pad or truncate with the checkpoint's TextSpec (the last position is pooled)"
            )
        out = {}
        x = out["embedded"] = self.token_embed(input_ids) + self.pos_embedding  # (B, L, D)
        x, out["encoder"] = self.encoder(x)  # (B, L, D)
        out["encoded"] = x
        x = out["pre_logits"] = x[:, -1] if self.config.pool == "last" else x.mean(dim=1)  # (B, D)
        x = out["logits"] = self.head(x)  # (B, head_dim)
        return x, out
