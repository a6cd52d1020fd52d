"""Transformer building blocks shared by the image and text towers.

Pre-LN transformer as in ViT (arXiv 2010.11929) and big_vision `models/vit.py`:
`x + Attn(LN(x))`, `x + MLP(LN(x))`, one LayerNorm after the last block. Projection
names (q_proj, k_proj, v_proj, out_proj, fc1, fc2) follow transformers' Siglip so
weight conversion is a renaming table, not a reshuffle.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# big_vision uses flax's LayerNorm default epsilon (1e-6); so do released SigLIP configs.
LN_EPS = 1e-6

# MLP activations by name. SigLIP uses the tanh approximation of GELU (flax `nn.gelu`'s
# default, transformers `gelu_pytorch_tanh`); the others are what transformers' configs name.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,  # exact, erf-based
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),  # CLIP's approximation
    "relu": F.relu,
    "silu": F.silu,
}
DEFAULT_ACT = "gelu_tanh"


def check_act(act: str) -> str:
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; known: {sorted(ACTIVATIONS)}")
    return act


def init_linear(module: nn.Module) -> None:
    """big_vision's transformer init: xavier-uniform kernels, (near-)zero biases.

    Apply with `model.apply(init_linear)`; modules other than nn.Linear are left alone.
    """
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class MlpBlock(nn.Module):
    """Linear -> activation (`ACTIVATIONS[act]`) -> Linear."""

    def __init__(self, width: int, mlp_dim: int, act: str = DEFAULT_ACT):
        super().__init__()
        self.fc1 = nn.Linear(width, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, width)
        self.act = ACTIVATIONS[check_act(act)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head dot-product attention over `scaled_dot_product_attention`.

    Self-attention by default; pass `kv` for cross-attention (MAPHead's probe).
    `mask` is a key-padding mask (B, Nk) bool, True = a real token that may be
    attended to. Padded *queries* still produce (meaningless) outputs: callers
    ignore them via the same mask. A row whose keys are all masked gives NaN.
    """

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by the number of heads {heads}")
        self.heads = heads
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(
        self, x: torch.Tensor, kv: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        kv = x if kv is None else kv
        b, nq, d = x.shape
        nk, h = kv.shape[1], self.heads
        q = self.q_proj(x).view(b, nq, h, d // h).transpose(1, 2)  # (B, h, Nq, hd)
        k = self.k_proj(kv).view(b, nk, h, d // h).transpose(1, 2)  # (B, h, Nk, hd)
        v = self.v_proj(kv).view(b, nk, h, d // h).transpose(1, 2)  # (B, h, Nk, hd)
        attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, Nk), True = attend
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, h, Nq, hd)
        y = y.transpose(1, 2).reshape(b, nq, d)  # (B, Nq, D)
        return self.out_proj(y)


class Block(nn.Module):
    """Pre-LN transformer block."""

    def __init__(self, width: int, mlp_dim: int, heads: int, ln_eps: float = LN_EPS, act: str = DEFAULT_ACT):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=ln_eps)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=ln_eps)
        self.mlp = MlpBlock(width, mlp_dim, act)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask=mask)  # (B, N, D)
        return x + self.mlp(self.norm2(x))  # (B, N, D)


class Encoder(nn.Module):
    """`depth` pre-LN blocks and the final LayerNorm (big_vision `encoder_norm`).

    forward(x (B, N, D), mask (B, N) bool | None) -> (x (B, N, D), out) where
    out["block00"], ... are the block outputs before the final norm.
    """

    def __init__(
        self, width: int, depth: int, mlp_dim: int, heads: int, ln_eps: float = LN_EPS, act: str = DEFAULT_ACT
    ):
        super().__init__()
        self.blocks = nn.ModuleList(Block(width, mlp_dim, heads, ln_eps, act) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=ln_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        out = {}
        for i, block in enumerate(self.blocks):
            x = out[f"block{i:02d}"] = block(x, mask)
        return self.norm(x), out


class MAPHead(nn.Module):
    """Multihead attention pooling (big_vision `MAPHead`; Lee et al. 2019, arXiv 1810.00825).

    A learned probe attends to the tokens, then a LayerNorm + MLP residual; no
    LayerNorm before the attention because the encoder output is already normed.
    forward(x (B, N, D), mask (B, N) bool | None) -> (B, D).
    """

    def __init__(self, width: int, mlp_dim: int, heads: int, ln_eps: float = LN_EPS, act: str = DEFAULT_ACT):
        super().__init__()
        self.probe = nn.Parameter(torch.empty(1, 1, width))
        self.attn = Attention(width, heads)
        self.norm = nn.LayerNorm(width, eps=ln_eps)
        self.mlp = MlpBlock(width, mlp_dim, act)
        nn.init.xavier_uniform_(self.probe)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        probe = self.probe.expand(x.shape[0], -1, -1)  # (B, 1, D)
        x = self.attn(probe, kv=x, mask=mask)  # (B, 1, D)
        x = x + self.mlp(self.norm(x))  # (B, 1, D)
        return x[:, 0]  # (B, D)
