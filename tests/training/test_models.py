"""Contracts of the SigLIP towers: sizes, layouts, masking, configs, ONNX export, and
numerical parity with the reference implementation (transformers' Siglip)."""

import json

import numpy as np
import pytest
import torch

from vistas import images
from vistas.training.losses import sigmoid_loss
from vistas.training.models import MODELS, build_model, register
from vistas.training.models.siglip import SigLIP, SigLIPConfig
from vistas.training.models.text import TextConfig, TextTransformer
from vistas.training.models.vit import VARIANTS, ViT, ViTConfig, decode_variant, patchify, resize_posemb

torch.set_num_threads(1)

TINY_VIT = dict(width=32, depth=2, mlp_dim=64, heads=4, patch_size=8, posemb_grid=(4, 4))
TINY_TEXT = dict(vocab_size=50, length=8, width=32, depth=2, mlp_dim=64, heads=4, head_dim=32)


def tiny_siglip(**image_overrides) -> SigLIP:
    torch.manual_seed(0)
    cfg = SigLIPConfig(ViTConfig(**{**TINY_VIT, **image_overrides}), TextConfig(**TINY_TEXT), embed_dim=32)
    return SigLIP(cfg)


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ---------------------------------------------------------------- sizes


def test_decode_variant():
    assert decode_variant("B/16") == dict(width=768, depth=12, mlp_dim=3072, heads=12, patch_size=16)
    assert decode_variant("So400m/14")["patch_size"] == 14
    assert "patch_size" not in decode_variant("L")
    with pytest.raises(ValueError, match="unknown ViT variant"):
        decode_variant("XL/16")


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variants_match_transformers_siglip_sizes(name):
    """Every table entry, built on the meta device (no memory, no compute), has exactly the
    parameters of transformers' SiglipVisionModel / SiglipTextModel of the same size."""
    from transformers import SiglipTextConfig, SiglipVisionConfig
    from transformers.models.siglip.modeling_siglip import SiglipTextModel, SiglipVisionModel

    v = VARIANTS[name]
    hf = dict(hidden_size=v["width"], intermediate_size=v["mlp_dim"], num_hidden_layers=v["depth"],
              num_attention_heads=v["heads"])
    with torch.device("meta"):
        ours_img = ViT(ViTConfig.from_variant(f"{name}/16", 224))
        ref_img = SiglipVisionModel(SiglipVisionConfig(**hf, image_size=224, patch_size=16))
        ours_txt = TextTransformer(TextConfig.from_variant(name, vocab_size=32000, length=64))
        ref_txt = SiglipTextModel(SiglipTextConfig(**hf, vocab_size=32000, max_position_embeddings=64))
    assert n_params(ours_img) == n_params(ref_img)
    assert n_params(ours_txt) == n_params(ref_txt)
    assert ours_img.pos_embedding.shape == (14, 14, v["width"])


def test_so400m_is_400m():
    with torch.device("meta"):
        m = ViT(ViTConfig.from_variant("So400m/14", 384))
    assert n_params(m) == 428_225_600  # google/siglip-so400m-patch14-384 vision tower


# ---------------------------------------------------------------- layout and position embeddings


def test_torch_patchify_equals_vistas_patchify():
    pixels = torch.randn(2, 3, 24, 40)
    patches, coords = patchify(pixels, 8)
    for i in range(2):
        ref_patches, ref_coords = images.patchify(pixels[i].numpy(), 8)
        np.testing.assert_array_equal(patches[i].numpy(), ref_patches)
        np.testing.assert_array_equal(coords[i].numpy(), ref_coords)


def test_posemb_resize():
    posemb = torch.randn(4, 5, 8)
    assert torch.equal(resize_posemb(posemb, (4, 5)), posemb)
    assert resize_posemb(posemb, (7, 3)).shape == (7, 3, 8)
    const = torch.ones(4, 5, 8) * 0.25  # interpolating a constant field leaves it constant
    torch.testing.assert_close(resize_posemb(const, (3, 9)), torch.full((3, 9, 8), 0.25))


@pytest.mark.parametrize("in_hw,out_hw", [((4, 4), (4, 4)), ((4, 5), (9, 2)), ((16, 16), (3, 40)),
                                          ((16, 16), (40, 1)), ((4, 4), (2, 1)), ((27, 27), (1, 1)), ((7, 2), (5, 12))])
def test_posemb_resize_is_antialiased_bilinear(in_hw, out_hw):
    """resize_posemb (and the weights NaFlex uses) equal PIL's BILINEAR resize of a float image, an
    independent implementation of the same filter, and torch's F.interpolate(antialias=True) except
    where its CPU kernel is wrong (one output column with another height: see resize_posemb)."""
    from PIL import Image

    grid = torch.randn(*in_hw, 3)
    got = resize_posemb(grid, out_hw)  # (h, w, 3)
    for c in range(3):
        pil = Image.fromarray(grid[..., c].numpy(), mode="F").resize(out_hw[::-1], Image.Resampling.BILINEAR)
        np.testing.assert_allclose(got[..., c].numpy(), np.asarray(pil), atol=2e-6)
    aa = torch.nn.functional.interpolate(grid.permute(2, 0, 1)[None], size=out_hw, mode="bilinear",
                                         align_corners=False, antialias=True)[0].permute(1, 2, 0)
    if out_hw[1] != 1:
        torch.testing.assert_close(got, aa, atol=2e-6, rtol=1e-5)
    if out_hw == (40, 1):  # the case resize_posemb's docstring cites (torch 2.13, CPU)
        assert (got - aa).abs().max() > 0.1


def test_per_image_posemb_resize_equals_the_static_one():
    """The NaFlex path (each image its own grid, sizes as data) gives the static resize per image."""
    posemb = torch.randn(4, 5, 8)
    vit = ViT(ViTConfig(**{**TINY_VIT, "width": 8, "heads": 2, "posemb_grid": (4, 5)}))
    with torch.no_grad():
        vit.pos_embedding.copy_(posemb)
    hw = torch.tensor([[2, 9], [7, 3], [4, 5], [1, 1], [12, 1]])
    n = 63
    coords = torch.stack([torch.arange(n) // hw[:, 1:2], torch.arange(n) % hw[:, 1:2]], dim=-1)
    mask = torch.arange(n)[None] < (hw[:, 0:1] * hw[:, 1:2])
    got = vit.position_embedding(coords, mask, hw)
    for i, (h, w) in enumerate(hw.tolist()):
        torch.testing.assert_close(got[i, : h * w], resize_posemb(posemb, (h, w)).reshape(h * w, 8))


def test_image_size_not_a_multiple_of_the_patch_is_cropped_like_a_valid_conv():
    vit = tiny_siglip().image.eval()
    pixels = torch.randn(2, 3, 37, 45)
    with torch.no_grad():
        torch.testing.assert_close(vit(pixels)[0], vit(pixels[:, :, :32, :40])[0])


def test_old_configs_without_activation_load_as_tanh_gelu():
    d = ViTConfig(**TINY_VIT).to_dict()
    del d["act"]
    assert ViTConfig.from_dict(d).act == "gelu_tanh"
    with pytest.raises(ValueError, match="unknown activation 'mish'"):
        TextConfig(**{**TINY_TEXT, "act": "mish"})


@pytest.mark.parametrize("pool", ["map", "gap"])
def test_padding_and_patch_order_do_not_change_the_output(pool):
    """A patch set padded with garbage (mask=False) and shuffled pools to the same vector
    as the plain image. The 4x6 grid differs from the 4x4 posemb grid: the resize is used."""
    vit = tiny_siglip(pool=pool).image.eval()
    pixels = torch.randn(1, 3, 32, 48)
    ref, _ = vit(pixels)
    patches, coords = patchify(pixels, 8)  # (1, 24, 192), (1, 24, 2)
    perm = torch.randperm(24)
    pad = 5
    patches = torch.cat([patches[:, perm], 100 * torch.randn(1, pad, 192)], dim=1)
    coords = torch.cat([coords[:, perm], torch.full((1, pad, 2), 99)], dim=1)
    mask = torch.arange(24 + pad)[None] < 24
    got, out = vit.forward_patches(patches, coords, mask)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert out["encoded"].shape == (1, 24 + pad, 32)


def test_mixed_grid_batch_equals_images_one_by_one():
    """NaFlex-style batch: each image's position embedding is resized to its own grid."""
    vit = tiny_siglip().image.eval()
    wide, square = torch.randn(1, 3, 32, 48), torch.randn(1, 3, 32, 32)
    pw, cw = patchify(wide, 8)  # 24 patches
    ps, cs = patchify(square, 8)  # 16 patches
    ps = torch.cat([ps, torch.zeros(1, 8, 192)], dim=1)
    cs = torch.cat([cs, torch.zeros(1, 8, 2, dtype=torch.long)], dim=1)
    mask = torch.stack([torch.ones(24, dtype=torch.bool), torch.arange(24) < 16])
    got, _ = vit.forward_patches(torch.cat([pw, ps]), torch.cat([cw, cs]), mask)
    torch.testing.assert_close(got[0], vit(wide)[0][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1], vit(square)[0][0], atol=1e-5, rtol=1e-5)


def test_coords_outside_the_grid_are_an_error():
    vit = tiny_siglip().image
    patches, coords = patchify(torch.randn(1, 3, 32, 48), 8)
    with pytest.raises(ValueError, match="outside the 4x4 patch grid"):
        vit.forward_patches(patches, coords, grid_hw=(4, 4))


# ---------------------------------------------------------------- training


@pytest.mark.parametrize("pool,head_dim", [("map", None), ("gap", 32), ("none", 16)])
def test_vit_forward_backward(pool, head_dim):
    torch.manual_seed(0)
    vit = ViT(ViTConfig(**TINY_VIT, pool=pool, head_dim=head_dim))
    pixels = torch.randn(2, 3, 32, 24)
    x, out = vit(pixels)
    expected = (2, head_dim or 32) if pool != "none" else (2, 12, head_dim)
    assert x.shape == expected
    x.square().sum().backward()
    for name, p in vit.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_siglip_forward_loss_backward():
    model = tiny_siglip()
    zimg, ztxt, out = model(torch.randn(3, 3, 32, 32), torch.randint(0, 50, (3, 8)))
    assert zimg.shape == ztxt.shape == (3, 32)
    torch.testing.assert_close(zimg.norm(dim=-1), torch.ones(3))
    assert out["t"].item() == pytest.approx(np.log(10)) and out["b"].item() == -10.0
    loss = sigmoid_loss(zimg, ztxt, out["t"], out["b"])
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_encode_paths_agree():
    model = tiny_siglip().eval()
    pixels = torch.randn(2, 3, 32, 32)
    patches, coords = patchify(pixels, 8)
    z = model.encode_image(pixels)
    torch.testing.assert_close(model.encode_image_patches(patches, coords), z)
    raw = model.encode_image(pixels, normalize=False)
    torch.testing.assert_close(raw / raw.norm(dim=-1, keepdim=True), z)


def test_lock_image_tower():
    model = tiny_siglip()
    model.lock_image_tower()
    zimg, ztxt, out = model(torch.randn(2, 3, 32, 32), torch.randint(0, 50, (2, 8)))
    sigmoid_loss(zimg, ztxt, out["t"], out["b"]).backward()
    assert all(p.grad is None for p in model.image.parameters())
    assert all(p.grad is not None for p in model.text.parameters())


def test_embed_dim_mismatch_is_explained():
    with pytest.raises(ValueError, match="image tower outputs 32-dim embeddings but embed_dim is 64"):
        SigLIPConfig(ViTConfig(**TINY_VIT), TextConfig(**{**TINY_TEXT, "head_dim": 64}), embed_dim=64)


def test_text_length_is_checked():
    with pytest.raises(ValueError, match="the model expects 8"):
        tiny_siglip().encode_text(torch.zeros(1, 5, dtype=torch.long))


# ---------------------------------------------------------------- configs and registry


def test_config_round_trip_through_json():
    cfg = SigLIPConfig(ViTConfig(**TINY_VIT, pool="gap", head_dim=32), TextConfig(**TINY_TEXT), embed_dim=32)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["family"] == "siglip"
    assert SigLIPConfig.from_dict(d) == cfg
    model = build_model(d)
    assert isinstance(model, SigLIP) and model.config == cfg
    assert ViTConfig.from_dict(cfg.image.to_dict()) == cfg.image
    assert TextConfig.from_dict(cfg.text.to_dict()) == cfg.text
    with pytest.raises(ValueError, match="unknown ViTConfig fields"):
        ViTConfig.from_dict({"widht": 3})


def test_text_pool_gap_is_the_mean_of_every_position():
    torch.manual_seed(0)
    last = TextTransformer(TextConfig(**TINY_TEXT)).eval()
    gap = TextTransformer(TextConfig(**TINY_TEXT, pool="gap")).eval()
    gap.load_state_dict(last.state_dict())  # the pool has no weights: the same tower, read differently
    ids = torch.randint(0, 50, (3, 8))
    with torch.no_grad():
        x, out = gap(ids)
        _, out_last = last(ids)
        torch.testing.assert_close(out["encoded"], out_last["encoded"])
        torch.testing.assert_close(out["pre_logits"], out["encoded"].mean(dim=1))
        torch.testing.assert_close(out_last["pre_logits"], out_last["encoded"][:, -1])
        torch.testing.assert_close(x, gap.head(out["encoded"].mean(dim=1)))
    assert TextConfig.from_dict(TextConfig(**TINY_TEXT).to_dict()).pool == "last"  # the default: SigLIP's
    with pytest.raises(ValueError, match="text pool must be"):
        TextConfig(**TINY_TEXT, pool="first")


def test_registry():
    assert "siglip" in MODELS
    with pytest.raises(ValueError, match="already registered"):
        register("siglip", lambda d: None)
    with pytest.raises(ValueError, match="known families"):
        build_model({"family": "nope"})


# ---------------------------------------------------------------- parity with transformers


def test_matches_transformers_siglip():
    """transformers' SiglipModel weights in our SigLIP (through the checkpoint converter,
    training/convert/hf_siglip.py) give the same embeddings and logits."""
    from transformers import SiglipConfig, SiglipModel

    from vistas.training.convert.hf_siglip import check_state, convert_state

    size = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    torch.manual_seed(0)
    ref = SiglipModel(SiglipConfig(
        vision_config=dict(**size, image_size=32, patch_size=8),
        text_config=dict(**size, vocab_size=50, max_position_embeddings=8, projection_size=32,
                         bos_token_id=None, eos_token_id=None, pad_token_id=0),
    )).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model = tiny_siglip().eval()
    state = convert_state(ref.state_dict(), model.config)
    check_state(state, model, "SiglipModel")
    model.load_state_dict(state)

    pixels, ids = torch.randn(2, 3, 32, 32), torch.randint(0, 50, (3, 8))
    with torch.no_grad():
        zimg, ztxt, out = model(pixels, ids)
        r = ref(input_ids=ids, pixel_values=pixels)
    torch.testing.assert_close(zimg, r.image_embeds, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ztxt, r.text_embeds, atol=1e-5, rtol=1e-4)
    logits = zimg @ ztxt.T * out["logit_scale"] + out["b"]
    torch.testing.assert_close(logits, r.logits_per_image, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- ONNX export


class _Pooled(torch.nn.Module):
    """Export wrapper: the tower's first output only (the `out` dict is for training)."""

    def __init__(self, tower):
        super().__init__()
        self.tower = tower

    def forward(self, x):
        return self.tower(x)[0]


def _export_and_check(tower, example, inputs, path):
    import onnxruntime as ort

    wrapper = _Pooled(tower).eval()
    batch = torch.export.Dim("batch")
    torch.onnx.export(wrapper, (example,), str(path), dynamo=True, input_names=["x"], output_names=["y"],
                      dynamic_shapes=({0: batch},))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for x in inputs:
        (got,) = session.run(None, {"x": x.numpy()})
        with torch.no_grad():
            want = wrapper(x).numpy()
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_onnx_export_image_tower(tmp_path):
    # Traced on a NON-square 32x48 input (a square one may let the exporter merge H and W)
    # and a 4x6 grid unlike the 4x4 posemb grid, so the resize is exported too.
    vit = tiny_siglip().image
    example = torch.randn(2, 3, 32, 48)
    _export_and_check(vit, example, [torch.randn(1, 3, 32, 48), torch.randn(3, 3, 32, 48)], tmp_path / "img.onnx")


def test_onnx_export_text_tower(tmp_path):
    text = tiny_siglip().text
    example = torch.randint(0, 50, (2, 8))
    inputs = [torch.randint(0, 50, (1, 8)), torch.randint(0, 50, (3, 8))]
    _export_and_check(text, example, inputs, tmp_path / "txt.onnx")
