"""big_vision `.npz` checkpoints: vistas' loader against transformers' npz -> HF conversion.

transformers' conversion scripts (`models/siglip/convert_siglip_to_hf.py`,
`models/siglip2/convert_siglip2_to_hf.py`) are not shipped in the transformers 5.23 wheel,
so they cannot be imported offline. `_transformers_conversion` below re-states their rules
as the scripts at huggingface/transformers commits 283d692a (SigLIP) and 0c85c9ae
(SigLIP 2) write them: `split_to_layers` for scanned `encoderblock/` arrays, the
`create_rename_keys` table, `rename_key`'s reshapes (attention kernels
`reshape(-1, hidden).T`, conv stem `transpose(3, 2, 0, 1)`, SigLIP 2's dense stem `.T`,
other kernels `.T`, position embeddings `reshape(-1, hidden)`, biases `reshape(-1)`) and
`read_in_q_k_v_head`; the result is loaded into transformers' own SiglipModel /
Siglip2Model with strict=True. The .npz itself is written from a tiny random transformers
model (`_to_big_vision`, the inverse), and that transformers model is the third witness.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from support.hf_models import TinySiglip, Tower, save_tiny
from vistas.export.parity import CAPTIONS, compare, parity_images, reference_embeddings, torch_embeddings
from vistas.training.convert import big_vision
from vistas.training.convert.sources import load_source

ATTN = "MultiHeadDotProductAttention_0"
TOWERS = {"img": ("vision_model", "img/Transformer"), "txt": ("text_model", "txt/Encoder_0")}


def _to_big_vision(hf: dict[str, torch.Tensor], kind: str, heads: dict[str, int]) -> dict[str, np.ndarray]:
    """transformers state dict -> big_vision names and layouts (the inverse of the scripts' rules)."""
    a = {k: v.numpy() for k, v in hf.items()}
    bv: dict[str, np.ndarray] = {}
    stem = a["vision_model.embeddings.patch_embedding.weight"]
    bv["img/embedding/kernel"] = stem.transpose(2, 3, 1, 0) if kind == "siglip" else stem.T  # conv HWIO / dense
    bv["img/embedding/bias"] = a["vision_model.embeddings.patch_embedding.bias"]
    bv["img/pos_embedding"] = a["vision_model.embeddings.position_embedding.weight"][None]
    bv["txt/Embed_0/embedding"] = a["text_model.embeddings.token_embedding.weight"]
    bv["txt/pos_embedding"] = a["text_model.embeddings.position_embedding.weight"][None]

    def attention(src: str, dst: str, tower: str, qkv: list[tuple[np.ndarray, np.ndarray]]):
        h = heads[tower]
        for name, (w, b) in zip(("query", "key", "value"), qkv):
            bv[f"{dst}/{name}/kernel"] = w.T.reshape(w.shape[1], h, -1)  # (D, heads, hd)
            bv[f"{dst}/{name}/bias"] = b.reshape(h, -1)
        w = a[f"{src}.out_proj.weight"]
        bv[f"{dst}/out/kernel"] = w.T.reshape(h, -1, w.shape[0])  # (heads, hd, D)
        bv[f"{dst}/out/bias"] = a[f"{src}.out_proj.bias"]

    for tower, (hf_name, bv_name) in TOWERS.items():
        i = 0
        while f"{hf_name}.encoder.layers.{i}.layer_norm1.weight" in a:
            src, dst = f"{hf_name}.encoder.layers.{i}", f"{bv_name}/encoderblock_{i}"
            for n in (1, 2):
                bv[f"{dst}/LayerNorm_{n - 1}/scale"] = a[f"{src}.layer_norm{n}.weight"]
                bv[f"{dst}/LayerNorm_{n - 1}/bias"] = a[f"{src}.layer_norm{n}.bias"]
                bv[f"{dst}/MlpBlock_0/Dense_{n - 1}/kernel"] = a[f"{src}.mlp.fc{n}.weight"].T
                bv[f"{dst}/MlpBlock_0/Dense_{n - 1}/bias"] = a[f"{src}.mlp.fc{n}.bias"]
            qkv = [(a[f"{src}.self_attn.{p}_proj.weight"], a[f"{src}.self_attn.{p}_proj.bias"]) for p in "qkv"]
            attention(f"{src}.self_attn", f"{dst}/{ATTN}", tower, qkv)
            i += 1
    for hf_norm, bv_norm in (("vision_model.post_layernorm", "img/Transformer/encoder_norm"),
                             ("text_model.final_layer_norm", "txt/Encoder_0/encoder_norm")):
        bv[f"{bv_norm}/scale"], bv[f"{bv_norm}/bias"] = a[f"{hf_norm}.weight"], a[f"{hf_norm}.bias"]
    bv["img/MAPHead_0/probe"] = a["vision_model.head.probe"]
    qkv = list(zip(np.split(a["vision_model.head.attention.in_proj_weight"], 3),
                   np.split(a["vision_model.head.attention.in_proj_bias"], 3)))
    attention("vision_model.head.attention", f"img/MAPHead_0/{ATTN}", "img", qkv)
    bv["img/MAPHead_0/LayerNorm_0/scale"] = a["vision_model.head.layernorm.weight"]
    bv["img/MAPHead_0/LayerNorm_0/bias"] = a["vision_model.head.layernorm.bias"]
    for n in (0, 1):
        bv[f"img/MAPHead_0/MlpBlock_0/Dense_{n}/kernel"] = a[f"vision_model.head.mlp.fc{n + 1}.weight"].T
        bv[f"img/MAPHead_0/MlpBlock_0/Dense_{n}/bias"] = a[f"vision_model.head.mlp.fc{n + 1}.bias"]
    bv["txt/head/kernel"], bv["txt/head/bias"] = a["text_model.head.weight"].T, a["text_model.head.bias"]
    bv["t"], bv["b"] = a["logit_scale"], a["logit_bias"]
    return bv


def _scan(bv: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stack encoderblock_N/... into one encoderblock/... array per name, as nn.scan saves them."""
    out, stacks = {}, {}
    for key, value in bv.items():
        prefix, sep, rest = key.partition("/encoderblock_")
        if not sep:
            out[key] = value
            continue
        layer, _, name = rest.partition("/")
        stacks.setdefault(f"{prefix}/encoderblock/{name}", {})[int(layer)] = value
    for key, layers in stacks.items():
        out[key] = np.stack([layers[i] for i in range(len(layers))])
    return out


def _transformers_conversion(bv: dict[str, np.ndarray], kind: str, config) -> dict[str, torch.Tensor]:
    """The rules of transformers' convert_siglip{,2}_to_hf.py (see the module docstring)."""
    state = {k.removeprefix("params/"): v for k, v in bv.items()}
    for key in [k for k in state if "/encoderblock/" in k]:  # split_to_layers
        for i, layer in enumerate(state.pop(key)):
            state[key.replace("encoderblock", f"encoderblock_{i}")] = layer
    hidden = {"vision": config.vision_config.hidden_size, "text": config.text_config.hidden_size}
    renames = [("img/embedding/kernel", "vision_model.embeddings.patch_embedding.weight"),
               ("img/embedding/bias", "vision_model.embeddings.patch_embedding.bias"),
               ("img/pos_embedding", "vision_model.embeddings.position_embedding.weight"),
               ("txt/Embed_0/embedding", "text_model.embeddings.token_embedding.weight"),
               ("txt/pos_embedding", "text_model.embeddings.position_embedding.weight")]
    for tower, (hf_name, bv_name) in TOWERS.items():
        for i in range(getattr(config, f"{'vision' if tower == 'img' else 'text'}_config").num_hidden_layers):
            src, dst = f"{bv_name}/encoderblock_{i}", f"{hf_name}.encoder.layers.{i}"
            for n in (0, 1):
                renames += [(f"{src}/LayerNorm_{n}/scale", f"{dst}.layer_norm{n + 1}.weight"),
                            (f"{src}/LayerNorm_{n}/bias", f"{dst}.layer_norm{n + 1}.bias"),
                            (f"{src}/MlpBlock_0/Dense_{n}/kernel", f"{dst}.mlp.fc{n + 1}.weight"),
                            (f"{src}/MlpBlock_0/Dense_{n}/bias", f"{dst}.mlp.fc{n + 1}.bias")]
            for bv_p, hf_p in (("key", "k_proj"), ("value", "v_proj"), ("query", "q_proj"), ("out", "out_proj")):
                renames += [(f"{src}/{ATTN}/{bv_p}/{x}", f"{dst}.self_attn.{hf_p}.{y}")
                            for x, y in (("kernel", "weight"), ("bias", "bias"))]
    renames += [("img/Transformer/encoder_norm/scale", "vision_model.post_layernorm.weight"),
                ("img/Transformer/encoder_norm/bias", "vision_model.post_layernorm.bias"),
                ("img/MAPHead_0/probe", "vision_model.head.probe"),
                ("img/MAPHead_0/LayerNorm_0/scale", "vision_model.head.layernorm.weight"),
                ("img/MAPHead_0/LayerNorm_0/bias", "vision_model.head.layernorm.bias"),
                ("img/MAPHead_0/MlpBlock_0/Dense_0/kernel", "vision_model.head.mlp.fc1.weight"),
                ("img/MAPHead_0/MlpBlock_0/Dense_0/bias", "vision_model.head.mlp.fc1.bias"),
                ("img/MAPHead_0/MlpBlock_0/Dense_1/kernel", "vision_model.head.mlp.fc2.weight"),
                ("img/MAPHead_0/MlpBlock_0/Dense_1/bias", "vision_model.head.mlp.fc2.bias"),
                (f"img/MAPHead_0/{ATTN}/out/kernel", "vision_model.head.attention.out_proj.weight"),
                (f"img/MAPHead_0/{ATTN}/out/bias", "vision_model.head.attention.out_proj.bias"),
                ("txt/Encoder_0/encoder_norm/scale", "text_model.final_layer_norm.weight"),
                ("txt/Encoder_0/encoder_norm/bias", "text_model.final_layer_norm.bias"),
                ("txt/head/kernel", "text_model.head.weight"), ("txt/head/bias", "text_model.head.bias"),
                ("t", "logit_scale"), ("b", "logit_bias")]
    hf = {}
    for old, new in renames:  # rename_key
        val = state.pop(old)
        tower = "vision" if new.startswith("vision") else "text"
        if any(p in new for p in ("out_proj", "v_proj", "k_proj", "q_proj")):
            val = val.reshape(-1, hidden[tower])
        if "patch_embedding.weight" in new:
            val = val.transpose(3, 2, 0, 1) if kind == "siglip" else val.T
        elif new.endswith("weight") and "position_embedding" not in new and "token_embedding" not in new:
            val = val.T
        if "position_embedding" in new:
            val = val.reshape(-1, hidden[tower])
        if new.endswith("bias"):
            val = val.reshape(-1)
        hf[new] = torch.from_numpy(np.ascontiguousarray(val))
    head = f"img/MAPHead_0/{ATTN}"  # read_in_q_k_v_head: q, k, v -> one in_proj
    w = [state.pop(f"{head}/{p}/kernel").reshape(-1, hidden["vision"]).T for p in ("query", "key", "value")]
    b = [state.pop(f"{head}/{p}/bias").reshape(-1) for p in ("query", "key", "value")]
    hf["vision_model.head.attention.in_proj_weight"] = torch.from_numpy(np.concatenate(w))
    hf["vision_model.head.attention.in_proj_bias"] = torch.from_numpy(np.concatenate(b))
    assert not state, f"arrays the conversion did not use: {sorted(state)}"
    return hf


CASES = {
    # SigLIP: conv stem, per-layer arrays, no prefix; towers of different sizes and depths.
    "siglip": (TinySiglip(vision=Tower(hidden=32, layers=2, heads=4), text=Tower(hidden=24, layers=3, heads=2),
                          projection=32, text_length=7), False, ""),
    # SigLIP 2 NaFlex: dense stem, scanned (stacked) layers, "params/" prefix.
    "siglip2": (TinySiglip(kind="siglip2", patch=4, num_patches=16, max_num_patches=20, tokenizer="gemma"),
                True, "params/"),
}


@pytest.fixture(scope="module", params=list(CASES))
def npz_case(request, tmp_path_factory):
    from transformers import AutoModel

    cfg, scanned, prefix = CASES[request.param]
    hf_dir = save_tiny(cfg, tmp_path_factory.mktemp(f"hf-{request.param}"))
    original = AutoModel.from_pretrained(hf_dir).eval()
    heads = {"img": cfg.vision.heads, "txt": cfg.text.heads}
    bv = _to_big_vision(original.state_dict(), cfg.kind, heads)
    bv = _scan(bv) if scanned else bv
    npz = tmp_path_factory.mktemp(f"npz-{request.param}") / "checkpoint.npz"
    np.savez(npz, **{prefix + k: v for k, v in bv.items()})
    # transformers' conversion of the .npz, saved next to the processor files as the reference.
    ref = type(original)(original.config).eval()
    ref.load_state_dict(_transformers_conversion(dict(np.load(npz)), cfg.kind, original.config), strict=True)
    ref_dir = tmp_path_factory.mktemp(f"ref-{request.param}")
    ref.save_pretrained(ref_dir)
    for f in hf_dir.iterdir():
        if f.name not in ("config.json", "model.safetensors"):
            (ref_dir / f.name).write_bytes(f.read_bytes())
    return request.param, npz, hf_dir, ref_dir


def test_npz_loads_like_transformers_conversion(npz_case):
    name, npz, hf_dir, ref_dir = npz_case
    loaded = load_source(f"npz:{npz}", processor=str(hf_dir))
    images, texts = parity_images(), CAPTIONS
    ours = torch_embeddings(loaded, images, texts)
    via_transformers = reference_embeddings(ref_dir, images, texts, loaded.preprocess.text.length)
    original = reference_embeddings(hf_dir, images, texts, loaded.preprocess.text.length)
    assert max(compare(via_transformers, original).values()) <= 1e-6, "the .npz writer is not the inverse"
    diffs = compare(ours, via_transformers)
    assert max(diffs.values()) <= 1e-4, (name, diffs)
    assert loaded.preprocess.image.mode == ("naflex" if name == "siglip2" else "fixed")


def test_scanned_and_unscanned_layouts_read_the_same(npz_case, tmp_path):
    _, npz, _, _ = npz_case
    params = big_vision.read_npz(npz)
    assert not any("/encoderblock/" in k for k in params) and not any(k.startswith("params/") for k in params)
    flipped = tmp_path / "flipped.npz"
    scanned = any("/encoderblock/" in k for k in np.load(npz).files)
    np.savez(flipped, **(params if scanned else _scan(params)))
    again = big_vision.read_npz(flipped)
    assert sorted(again) == sorted(params)
    assert all(np.array_equal(again[k], params[k]) for k in params)


def test_npz_errors_name_the_problem(npz_case, tmp_path):
    _, npz, hf_dir, _ = npz_case
    params = big_vision.read_npz(npz)
    broken = dict(params)
    del broken["txt/Encoder_0/encoderblock_0/MlpBlock_0/Dense_1/bias"]
    with pytest.raises(ValueError, match="no 'txt/Encoder_0/encoderblock_0/MlpBlock_0/Dense_1/bias'"):
        big_vision.convert_npz(broken, big_vision.npz_config(broken))
    with pytest.raises(ValueError, match="does not use: \\['opt/mu'\\]"):
        big_vision.convert_npz({**params, "opt/mu": np.zeros(3, np.float32)}, big_vision.npz_config(params))
    with pytest.raises(FileNotFoundError, match="no image processor and tokenizer"):
        load_source(f"npz:{npz}", processor=str(tmp_path))  # an empty folder
