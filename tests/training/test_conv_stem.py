"""The ViT's convolutional stem (Xiao et al., arXiv 2106.14881; training/models/conv_stem.py):
its stride and grid, translation equivariance, what it refuses, BatchNorm statistics through a
checkpoint, and ONNX parity."""

import numpy as np
import pytest
import torch

from vistas.training.models import build_model
from vistas.training.models.conv_stem import ConvStem, conv_stem_channels
from vistas.training.models.siglip import SigLIP, SigLIPConfig
from vistas.training.models.text import TextConfig
from vistas.training.models.vit import ViT, ViTConfig

torch.set_num_threads(1)

VIT = dict(width=32, depth=2, mlp_dim=64, heads=4, patch_size=8, posemb_grid=(6, 6), stem="conv")


def test_channels_double_up_to_the_width():
    assert conv_stem_channels(128, 8) == [32, 64, 128]
    assert conv_stem_channels(768, 16) == [96, 192, 384, 768]
    with pytest.raises(ValueError, match="power-of-two patch size"):
        conv_stem_channels(128, 14)
    with pytest.raises(ValueError, match="power-of-two"):
        ViTConfig(**{**VIT, "patch_size": 6})
    with pytest.raises(ValueError, match="stem must be"):
        ViTConfig(**{**VIT, "stem": "cnn"})


def test_stem_has_the_patch_stride_and_is_translation_equivariant():
    torch.manual_seed(0)
    stem = ConvStem(32, 8).eval()
    x = torch.randn(2, 3, 48, 64)
    tokens = stem(x).reshape(2, 6, 8, 32)  # (B, H/8, W/8, D)
    # Shift the image 8 px (one token) right, zeros (the convolutions' padding value) coming in.
    shifted = torch.zeros_like(x)
    shifted[..., 8:] = x[..., :-8]
    moved = stem(shifted).reshape(2, 6, 8, 32)
    # Tokens whose receptive field lies inside the image on both sides move by one column, unchanged.
    torch.testing.assert_close(moved[:, :, 2:7], tokens[:, :, 1:6], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(moved[:, :, 1], tokens[:, :, 1], atol=1e-3)  # and the stem is not trivially constant


def test_conv_stem_vit_takes_pixels_only():
    vit = ViT(ViTConfig(**VIT)).eval()
    x, out = vit(torch.randn(3, 3, 48, 40))
    assert x.shape == (3, 32) and out["stem"].shape == (3, 30, 32)
    assert not hasattr(vit, "patch_embed")
    with pytest.raises(ValueError, match="own patch size"):
        vit(torch.randn(1, 3, 48, 48), patch_size=4)
    patches = torch.randn(1, 36, 192)
    coords = torch.zeros(1, 36, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="conv stem, which sees whole images"):
        vit.forward_patches(patches, coords)


def _siglip() -> SigLIP:
    torch.manual_seed(0)
    text = TextConfig(vocab_size=50, length=8, width=32, depth=1, mlp_dim=64, heads=4, head_dim=32)
    return SigLIP(SigLIPConfig(ViTConfig(**VIT), text, embed_dim=32))


def test_batchnorm_statistics_travel_with_the_weights():
    model = _siglip().train()
    for _ in range(3):  # training-mode passes move the running statistics off their init
        model.encode_image(torch.randn(8, 3, 48, 48) * 2 + 0.5)
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert any("running_mean" in k for k in state)
    again = build_model(model.config.to_dict())  # as load_checkpoint rebuilds it
    missing, unexpected = again.load_state_dict(state, strict=False)
    assert not missing and not unexpected
    again.eval()
    x = torch.randn(4, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(again.encode_image(x), model.encode_image(x), atol=0, rtol=0)
        fresh = build_model(model.config.to_dict()).eval()
        fresh.load_state_dict({k: v for k, v in state.items() if "running" not in k}, strict=False)
        assert not torch.allclose(fresh.encode_image(x), model.encode_image(x), atol=1e-3)  # the stats matter


def test_onnx_export_matches_torch(tmp_path):
    import onnxruntime as ort

    model = _siglip().eval()
    for _ in range(2):
        model.train().encode_image(torch.randn(4, 3, 48, 48))
    model.eval()

    class Tower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model.encode_image(x)

    tower = Tower().eval()
    path = tmp_path / "img.onnx"
    torch.onnx.export(tower, (torch.randn(2, 3, 48, 40),), str(path), dynamo=True, input_names=["x"],
                      output_names=["y"], dynamic_shapes=({0: torch.export.Dim("batch")},))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [d for d in session.get_inputs()[0].shape[1:]] == [3, 48, 40]  # H and W kept apart
    for n in (1, 5):
        x = torch.randn(n, 3, 48, 40)
        (got,) = session.run(None, {"x": x.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(got, tower(x).numpy(), atol=1e-5, rtol=1e-5)
