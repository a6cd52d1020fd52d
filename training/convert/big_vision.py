"""big_vision two-tower `.npz` checkpoints (SigLIP, SigLIP 2) -> vistas SigLIP.

    params = read_npz("webli_en_b16_224_63724782.npz")  # flat {"img/...": array}, layers unstacked
    config = npz_config(params)                          # sizes read off the array shapes
    state = convert_npz(params, config)                  # vistas state dict

Naming (big_vision `models/proj/image_text/two_towers.py`, `models/vit.py`,
`text_transformer.py`; the same table as transformers' `convert_siglip_to_hf.py`):

    img/embedding/{kernel,bias}       patch stem: conv (p, p, 3, D), or SigLIP 2's dense (p*p*3, D)
    img/pos_embedding                 (1, rows*cols, D)
    img/Transformer/encoderblock_N/   LayerNorm_0, MultiHeadDotProductAttention_0/{query,key,value,out},
                                      LayerNorm_1, MlpBlock_0/Dense_{0,1}
    img/Transformer/encoder_norm
    img/MAPHead_0/                    probe, MultiHeadDotProductAttention_0, LayerNorm_0, MlpBlock_0
    img/head                          optional Linear after pooling
    txt/Embed_0/embedding, txt/pos_embedding (1, L, D), txt/Encoder_0/encoderblock_N/...,
    txt/Encoder_0/encoder_norm, txt/head (absent in some i18n checkpoints: identity)
    t, b                              log temperature and bias

A scanned (`nn.scan`) tower stores `encoderblock/...` once with a leading layer axis; it
is split into `encoderblock_N`. Keys may carry a leading `params/`. The file holds no
hyperparameters: sizes come from the shapes (heads from the attention kernels, which are
(D, heads, head_dim)); the activation (tanh-GELU) and LayerNorm epsilon (1e-6) are
big_vision's defaults for these models.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch

from vistas.training.models.siglip import SigLIPConfig
from vistas.training.models.text import TextConfig
from vistas.training.models.vit import ViTConfig

_BLOCK = re.compile(r"^(img/Transformer|txt/Encoder_0)/encoderblock_(\d+)/")


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """A big_vision .npz -> {name: float32 array} with '/'-joined names and unstacked layers."""
    with np.load(path, allow_pickle=False) as f:
        flat = {k.removeprefix("params/"): np.asarray(f[k], np.float32) for k in f.files}
    out: dict[str, np.ndarray] = {}
    for key, value in flat.items():
        m = re.match(r"^(img/Transformer|txt/Encoder_0)/encoderblock/(.*)$", key)
        if m:  # scanned: (depth, ...) -> one tensor per layer
            for i, layer in enumerate(value):
                out[f"{m.group(1)}/encoderblock_{i}/{m.group(2)}"] = layer
        else:
            out[key] = value
    return out


def _depth(params: dict, prefix: str) -> int:
    blocks = {int(m.group(2)) for k in params if (m := _BLOCK.match(k)) and m.group(1) == prefix}
    if not blocks or blocks != set(range(len(blocks))):
        raise ValueError(f"the .npz has no complete {prefix}/encoderblock_N layers (found {sorted(blocks)})")
    return len(blocks)


def _need(params: dict, key: str) -> np.ndarray:
    if key not in params:
        raise ValueError(f"the .npz has no {key!r}: is it a big_vision two-tower (SigLIP) checkpoint?")
    return params[key]


def npz_config(params: dict[str, np.ndarray]) -> SigLIPConfig:
    """Sizes read off the array shapes (see the module docstring for what is assumed)."""
    stem = _need(params, "img/embedding/kernel")
    width = stem.shape[-1]
    patch = stem.shape[0] if stem.ndim == 4 else math.isqrt(stem.shape[0] // 3)
    n_pos = _need(params, "img/pos_embedding").shape[1]
    side = math.isqrt(n_pos)
    if side * side != n_pos:
        raise ValueError(f"img/pos_embedding has {n_pos} positions, not a square grid; give the grid explicitly")
    if any(k.startswith("img/cls") for k in params):
        raise ValueError("the image tower has a class token (pool_type 'tok'); vistas supports 'map' and 'gap'")
    attn = "MultiHeadDotProductAttention_0/query/kernel"
    image = ViTConfig(
        width=width,
        depth=_depth(params, "img/Transformer"),
        mlp_dim=_need(params, "img/Transformer/encoderblock_0/MlpBlock_0/Dense_0/kernel").shape[1],
        heads=_need(params, f"img/Transformer/encoderblock_0/{attn}").shape[1],
        patch_size=patch,
        posemb_grid=(side, side),
        pool="map" if "img/MAPHead_0/probe" in params else "gap",
        head_dim=params["img/head/kernel"].shape[1] if "img/head/kernel" in params else None,
    )
    embed = _need(params, "txt/Embed_0/embedding")
    text = TextConfig(
        vocab_size=embed.shape[0],
        length=_need(params, "txt/pos_embedding").shape[1],
        width=embed.shape[1],
        depth=_depth(params, "txt/Encoder_0"),
        mlp_dim=_need(params, "txt/Encoder_0/encoderblock_0/MlpBlock_0/Dense_0/kernel").shape[1],
        heads=_need(params, f"txt/Encoder_0/encoderblock_0/{attn}").shape[1],
        head_dim=params["txt/head/kernel"].shape[1] if "txt/head/kernel" in params else embed.shape[1],
    )
    return SigLIPConfig(image=image, text=text, embed_dim=text.head_dim)


def _dense(params: dict, bv: str, ours: str, out: dict) -> None:
    """flax Dense kernel (in, out) -> torch Linear weight (out, in)."""
    out[f"{ours}.weight"] = params.pop(f"{bv}/kernel").T
    out[f"{ours}.bias"] = params.pop(f"{bv}/bias")


def _norm(params: dict, bv: str, ours: str, out: dict) -> None:
    out[f"{ours}.weight"] = params.pop(f"{bv}/scale")
    out[f"{ours}.bias"] = params.pop(f"{bv}/bias")


def _attention(params: dict, bv: str, ours: str, out: dict) -> None:
    """DenseGeneral q/k/v kernels (D, heads, hd), biases (heads, hd); out kernel (heads, hd, D)."""
    for name in ("query", "key", "value"):
        kernel = params.pop(f"{bv}/{name}/kernel")
        out[f"{ours}.{name[0]}_proj.weight"] = kernel.reshape(kernel.shape[0], -1).T  # (heads*hd, D)
        out[f"{ours}.{name[0]}_proj.bias"] = params.pop(f"{bv}/{name}/bias").reshape(-1)
    kernel = params.pop(f"{bv}/out/kernel")
    out[f"{ours}.out_proj.weight"] = kernel.reshape(-1, kernel.shape[-1]).T  # (D, heads*hd)
    out[f"{ours}.out_proj.bias"] = params.pop(f"{bv}/out/bias")


def _encoder(params: dict, bv: str, ours: str, depth: int, out: dict) -> None:
    for i in range(depth):
        b = f"{bv}/encoderblock_{i}"
        _norm(params, f"{b}/LayerNorm_0", f"{ours}.blocks.{i}.norm1", out)
        _attention(params, f"{b}/MultiHeadDotProductAttention_0", f"{ours}.blocks.{i}.attn", out)
        _norm(params, f"{b}/LayerNorm_1", f"{ours}.blocks.{i}.norm2", out)
        _dense(params, f"{b}/MlpBlock_0/Dense_0", f"{ours}.blocks.{i}.mlp.fc1", out)
        _dense(params, f"{b}/MlpBlock_0/Dense_1", f"{ours}.blocks.{i}.mlp.fc2", out)
    _norm(params, f"{bv}/encoder_norm", f"{ours}.norm", out)


def convert_npz(params: dict[str, np.ndarray], config: SigLIPConfig) -> dict[str, torch.Tensor]:
    """read_npz's params -> vistas SigLIP state dict. Raises if an array is missing or left over."""
    try:
        return _convert(dict(params), config)
    except KeyError as e:
        raise ValueError(f"the .npz has no {e.args[0]!r}, which its other arrays imply") from None


def _convert(params: dict[str, np.ndarray], config: SigLIPConfig) -> dict[str, torch.Tensor]:
    img, txt = config.image, config.text
    out: dict[str, np.ndarray] = {}
    stem = params.pop("img/embedding/kernel")  # (p, p, 3, D) conv or (p*p*3, D) dense, both (row, col, channel)
    out["image.patch_embed.weight"] = stem.reshape(-1, img.width).T  # (D, p*p*3)
    out["image.patch_embed.bias"] = params.pop("img/embedding/bias")
    out["image.pos_embedding"] = params.pop("img/pos_embedding").reshape(*img.posemb_grid, img.width)
    _encoder(params, "img/Transformer", "image.encoder", img.depth, out)
    if img.pool == "map":
        out["image.map_head.probe"] = params.pop("img/MAPHead_0/probe").reshape(1, 1, img.width)
        _attention(params, "img/MAPHead_0/MultiHeadDotProductAttention_0", "image.map_head.attn", out)
        _norm(params, "img/MAPHead_0/LayerNorm_0", "image.map_head.norm", out)
        _dense(params, "img/MAPHead_0/MlpBlock_0/Dense_0", "image.map_head.mlp.fc1", out)
        _dense(params, "img/MAPHead_0/MlpBlock_0/Dense_1", "image.map_head.mlp.fc2", out)
    if img.head_dim:
        _dense(params, "img/head", "image.head", out)

    out["text.token_embed.weight"] = params.pop("txt/Embed_0/embedding")
    out["text.pos_embedding"] = params.pop("txt/pos_embedding").reshape(txt.length, txt.width)
    _encoder(params, "txt/Encoder_0", "text.encoder", txt.depth, out)
    if "txt/head/kernel" in params:
        _dense(params, "txt/head", "text.head", out)
    else:  # i18n checkpoints without a text head: the identity, as transformers' conversion does
        out["text.head.weight"] = np.eye(txt.width, dtype=np.float32)
        out["text.head.bias"] = np.zeros(txt.width, np.float32)
    out["t"] = params.pop("t").reshape(())
    out["b"] = params.pop("b").reshape(())
    if params:
        raise ValueError(f"the .npz has arrays vistas' SigLIP does not use: {sorted(params)}")
    return {k: torch.from_numpy(np.array(v, order="C")) for k, v in out.items()}  # copies; keeps 0-d t, b
