"""Hugging Face `SiglipModel` / `Siglip2Model` weights -> vistas SigLIP.

    config = siglip_config(hf_config)            # transformers config object -> SigLIPConfig
    state = convert_state(read_weights(d), config)  # HF state dict -> vistas state dict

Every config field that changes the computation maps to a vistas field or is refused with
a message (`_refuse`). The weights are a renaming table plus three explicit reshapes:
  * SigLIP's Conv2d patch stem (D, 3, p, p) -> our Linear over (row, col, channel)
    patches (D, p*p*3). SigLIP 2's stem already is that Linear.
  * position embeddings (N, D) -> the (rows, cols, D) grid.
  * the MAP head's fused nn.MultiheadAttention in_proj (3D, D) -> q, k, v projections.
Key sets and shapes are asserted both ways, so a checkpoint that does not fit fails here,
naming the tensors, instead of producing wrong embeddings.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch

from vistas.training.models.siglip import SigLIPConfig
from vistas.training.models.text import TextConfig
from vistas.training.models.vit import ViTConfig

# transformers `hidden_act` -> `vistas.training.models.layers.ACTIVATIONS`. gelu_new and gelu_fast are
# the tanh approximation written out by hand: the same function as torch's approximate="tanh".
ACTIVATIONS = {
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu": "gelu",
    "gelu_python": "gelu",
    "quick_gelu": "quick_gelu",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}
MODEL_TYPES = ("siglip", "siglip2")

# Per-block and per-tower names: transformers (left) -> vistas (right), applied in order.
_RENAMES = [
    (r"^(vision|text)_model\.encoder\.layers\.(\d+)\.layer_norm(\d)\.", r"\1.encoder.blocks.\2.norm\3."),
    (r"^(vision|text)_model\.encoder\.layers\.(\d+)\.self_attn\.", r"\1.encoder.blocks.\2.attn."),
    (r"^(vision|text)_model\.encoder\.layers\.(\d+)\.mlp\.", r"\1.encoder.blocks.\2.mlp."),
    (r"^vision_model\.post_layernorm\.", "vision.encoder.norm."),
    (r"^text_model\.final_layer_norm\.", "text.encoder.norm."),
    (r"^vision_model\.embeddings\.patch_embedding\.bias$", "vision.patch_embed.bias"),
    (r"^vision_model\.head\.probe$", "vision.map_head.probe"),
    (r"^vision_model\.head\.layernorm\.", "vision.map_head.norm."),
    (r"^vision_model\.head\.mlp\.", "vision.map_head.mlp."),
    (r"^vision_model\.head\.attention\.out_proj\.", "vision.map_head.attn.out_proj."),
    (r"^text_model\.embeddings\.token_embedding\.", "text.token_embed."),
    (r"^text_model\.head\.", "text.head."),
    (r"^(vision|text)\.", lambda m: {"vision": "image.", "text": "text."}[m.group(1)]),
]


def _refuse(what: str, value, why: str) -> None:
    raise ValueError(f"{what}={value!r} is not supported: {why}")


def _act(cfg, tower: str) -> str:
    act = getattr(cfg, "hidden_act", "gelu_pytorch_tanh")
    if act not in ACTIVATIONS:
        _refuse(f"{tower}_config.hidden_act", act, f"vistas knows {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[act]


def _square(value, what: str) -> int:
    """HF allows `patch_size` / `image_size` as int or a pair; vistas' towers are square there."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            _refuse(what, value, "only square patches and position grids are supported")
        value = value[0]
    return int(value)


def siglip_config(hf) -> SigLIPConfig:
    """A transformers SiglipConfig / Siglip2Config (as AutoConfig loads it, defaults filled) -> SigLIPConfig."""
    if hf.model_type not in MODEL_TYPES:
        raise ValueError(
            f"config.json has model_type {hf.model_type!r}; vistas imports two-tower {MODEL_TYPES} "
            "checkpoints (SiglipModel, Siglip2Model), not a single tower"
        )
    v, t = hf.vision_config, hf.text_config
    if getattr(v, "num_channels", 3) != 3:
        _refuse("vision_config.num_channels", v.num_channels, "vistas towers take RGB images")
    patch = _square(v.patch_size, "vision_config.patch_size")
    if hf.model_type == "siglip2":  # NaFlex: a square grid of num_patches learned positions
        side = math.isqrt(v.num_patches)
        if side * side != v.num_patches:
            _refuse("vision_config.num_patches", v.num_patches, "Siglip2 reshapes it to a square grid")
        grid = (side, side)
    else:
        grid = (_square(v.image_size, "vision_config.image_size") // patch,) * 2
    image = ViTConfig(
        width=v.hidden_size,
        depth=v.num_hidden_layers,
        mlp_dim=v.intermediate_size,
        heads=v.num_attention_heads,
        patch_size=patch,
        posemb_grid=grid,
        # Without its MAP head, transformers' Siglip*ForImageClassification mean-pools the
        # (masked) tokens; that is the image embedding a headless tower gives here.
        pool="map" if v.vision_use_head else "gap",
        head_dim=None,
        ln_eps=v.layer_norm_eps,
        act=_act(v, "vision"),
    )
    text = TextConfig(
        vocab_size=t.vocab_size,
        length=t.max_position_embeddings,
        width=t.hidden_size,
        depth=t.num_hidden_layers,
        mlp_dim=t.intermediate_size,
        heads=t.num_attention_heads,
        head_dim=t.projection_size or t.hidden_size,
        ln_eps=t.layer_norm_eps,
        act=_act(t, "text"),
    )
    return SigLIPConfig(image=image, text=text, embed_dim=text.head_dim)


def read_weights(directory: str | Path) -> tuple[dict[str, torch.Tensor], list[Path]]:
    """-> (state dict in float32, the weight files read). Single or sharded safetensors,
    or a legacy pytorch_model.bin (loaded with weights_only=True: no code runs)."""
    from safetensors.torch import load_file

    d = Path(directory)
    if (d / "model.safetensors").is_file():
        files = [d / "model.safetensors"]
    elif (d / "model.safetensors.index.json").is_file():
        index = json.loads((d / "model.safetensors.index.json").read_text())
        files = [d / f for f in sorted(set(index["weight_map"].values()))]
    elif (d / "pytorch_model.bin").is_file():
        files = [d / "pytorch_model.bin"]
    else:
        raise FileNotFoundError(
            f"{d} has no model.safetensors, model.safetensors.index.json or pytorch_model.bin: "
            "is it a complete Hugging Face checkpoint directory?"
        )
    state: dict[str, torch.Tensor] = {}
    for f in files:
        part = torch.load(f, map_location="cpu", weights_only=True) if f.suffix == ".bin" else load_file(str(f))
        state.update(part)
    return {k: v.to(torch.float32) for k, v in state.items()}, files


def convert_state(hf: dict[str, torch.Tensor], config: SigLIPConfig) -> dict[str, torch.Tensor]:
    """transformers SiglipModel / Siglip2Model state dict -> vistas SigLIP state dict."""
    hf = {k: v for k, v in hf.items() if not k.endswith("position_ids")}  # buffers, not weights
    img, txt = config.image, config.text
    out: dict[str, torch.Tensor] = {}

    def take(key: str) -> torch.Tensor:
        if key not in hf:
            raise ValueError(f"the checkpoint has no tensor {key!r} that its config implies")
        return hf.pop(key)

    stem = take("vision_model.embeddings.patch_embedding.weight")
    if stem.ndim == 4:  # SigLIP Conv2d (D, C, p, p) -> Linear over (row, col, channel) patches
        stem = stem.permute(0, 2, 3, 1)
    out["image.patch_embed.weight"] = stem.reshape(img.width, -1)  # (D, p*p*3)
    out["image.pos_embedding"] = take("vision_model.embeddings.position_embedding.weight").reshape(
        *img.posemb_grid, img.width
    )
    # Transformers slices position_ids[:L] for inputs of length L; vistas pads to exactly L.
    out["text.pos_embedding"] = take("text_model.embeddings.position_embedding.weight")[: txt.length]
    if img.pool == "map":
        for kind in ("weight", "bias"):
            q, k, v = take(f"vision_model.head.attention.in_proj_{kind}").chunk(3)
            out[f"image.map_head.attn.q_proj.{kind}"] = q
            out[f"image.map_head.attn.k_proj.{kind}"] = k
            out[f"image.map_head.attn.v_proj.{kind}"] = v
    out["t"] = take("logit_scale").reshape(())
    out["b"] = take("logit_bias").reshape(())
    for key in list(hf):
        new = key
        for pattern, repl in _RENAMES:
            new = re.sub(pattern, repl, new)
        if new == key:
            raise ValueError(f"checkpoint tensor {key!r} has no counterpart in vistas' SigLIP")
        out[new] = hf.pop(key)
    return out


def check_state(state: dict[str, torch.Tensor], model: torch.nn.Module, source: str) -> None:
    """Both ways: every model tensor is given, nothing else is, and every shape fits."""
    want = model.state_dict()
    missing, extra = sorted(set(want) - set(state)), sorted(set(state) - set(want))
    wrong = [f"{k}: {tuple(state[k].shape)} != {tuple(want[k].shape)}"
             for k in sorted(set(want) & set(state)) if state[k].shape != want[k].shape]
    if missing or extra or wrong:
        raise ValueError(
            f"{source} does not fit the model its config describes: missing={missing} extra={extra} "
            f"shape mismatches={wrong}"
        )
