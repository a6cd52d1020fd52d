"""The hybrid stem (training/models/hybrid_stem.py): convolutions to a stride-2 map, then an
overlapping patch embedding of it whose kernel PI-resizes (FlexiViT). Its patch sizes, its windows
restated by hand, PI-resize's identity on a window, the ViT around it at every patch size, FLOPs,
and ONNX parity at several sizes."""

import numpy as np
import pytest
import torch

from vistas.training.models.flexi import patch_flops, resize_matrix
from vistas.training.models.hybrid_stem import HybridStem, hybrid_stem_flops, window
from vistas.training.models.siglip import SigLIP, SigLIPConfig
from vistas.training.models.text import TextConfig
from vistas.training.models.vit import ViT, ViTConfig

torch.set_num_threads(1)

VIT = dict(width=32, depth=2, mlp_dim=64, heads=4, patch_size=8, posemb_grid=(6, 6), stem="hybrid")


def _stem() -> HybridStem:
    torch.manual_seed(0)
    stem = HybridStem(32, 8, channels=16)
    stem.train()(torch.randn(4, 3, 48, 48))  # BatchNorm statistics off their init
    return stem.eval()


def test_patch_sizes_must_be_even():
    with pytest.raises(ValueError, match="multiple of 2"):
        ViTConfig(**{**VIT, "patch_size": 7})
    stem = _stem()
    with pytest.raises(ValueError, match="multiple of 2"):
        stem(torch.randn(1, 3, 48, 48), patch_size=3)


def _tokens_by_hand(fmap: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor, k: int) -> torch.Tensor:
    """Token (i, j) = <the 2k x 2k window starting k/2 (floor) map pixels before (i*k, j*k), zeros
    outside the map, kernel> + bias; row-major tokens."""
    b, c, h, w = fmap.shape
    padded = torch.zeros(b, c, h + 2 * k, w + 2 * k, dtype=fmap.dtype)
    padded[:, :, k : k + h, k : k + w] = fmap
    rows = []
    for i in range(h // k):
        for j in range(w // k):
            top, left = k + i * k - k // 2, k + j * k - k // 2
            win = padded[:, :, top : top + 2 * k, left : left + 2 * k]  # (B, C, 2k, 2k)
            rows.append(torch.einsum("bcyx,dcyx->bd", win, kernel) + bias)
    return torch.stack(rows, dim=1)  # (B, N, D)


@pytest.mark.parametrize("p", [8, 6, 12])
def test_windows_restated_by_hand(p):
    stem = _stem().double()
    x = torch.randn(2, 3, 48, 72, dtype=torch.float64)
    with torch.no_grad():
        fmap = stem.convs(x)  # (2, 16, 24, 36)
        want = _tokens_by_hand(fmap, stem.kernel(p), stem.patch_embed.bias, p // 2)
        torch.testing.assert_close(stem(x, patch_size=p), want, atol=1e-10, rtol=1e-10)
    assert want.shape == (2, (48 // p) * (72 // p), 32)
    # At the underlying size the kernel is the parameter itself, laid out (row, col, channel) as the
    # linear stem's: no resize, the same bits as a model without FlexiViT.
    torch.testing.assert_close(stem.kernel(8).permute(0, 2, 3, 1).reshape(32, -1), stem.patch_embed.weight,
                               atol=0, rtol=0)


@pytest.mark.parametrize("new", [10, 12, 16])
def test_pi_resize_identity_on_a_window(new):
    """A window of the map resized on its own to the larger patch size's window and embedded with
    the resized kernel gives the token it had at the underlying size: <Bx, PI(w)> = <x, w>."""
    stem = _stem().double()
    old_w, new_w = window(8), window(new)
    torch.manual_seed(1)
    x = torch.randn(5, 16, old_w, old_w, dtype=torch.float64)  # five windows of a 16-channel map
    resize = torch.from_numpy(resize_matrix(old_w, new_w))  # (new_w^2, old_w^2), row-major
    up = (x.reshape(5, 16, -1) @ resize.T).reshape(5, 16, new_w, new_w)
    with torch.no_grad():
        before = torch.einsum("bcyx,dcyx->bd", x, stem.kernel(8))
        after = torch.einsum("bcyx,dcyx->bd", up, stem.kernel(new))
    torch.testing.assert_close(after, before, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("p", [4, 6, 8, 12, 16])
def test_vit_runs_at_every_even_patch_size_that_tiles_the_image(p):
    torch.manual_seed(0)
    vit = ViT(ViTConfig(**VIT)).eval()
    with torch.no_grad():
        x, out = vit(torch.randn(3, 3, 48, 48), patch_size=p)
    assert x.shape == (3, 32) and out["stem"].shape == (3, (48 // p) ** 2, 32)
    assert not hasattr(vit, "patch_embed")  # the kernel lives in the stem
    with pytest.raises(ValueError, match="hybrid stem, which sees whole images"):
        vit.forward_patches(torch.randn(1, 36, 192), torch.zeros(1, 36, 2, dtype=torch.long))


def test_flops_count_the_convolutions_and_the_windows():
    # Counted by hand: 24x24 outputs x 9 taps x (3*16 + 16*16) channel pairs; 36 tokens x an 8x8
    # window x 16 channels x 32.
    assert hybrid_stem_flops((48, 48), 8, 32, channels=16) == 2 * (24 * 24 * 9 * (3 * 16 + 16 * 16) + 36 * 64 * 16 * 32)
    # A coarser patch costs the same: a quarter of the tokens, each with a window four times larger.
    assert hybrid_stem_flops((48, 48), 16, 32, channels=16) == hybrid_stem_flops((48, 48), 8, 32, channels=16)
    linear = patch_flops((48, 48), 8, 32, 2, 64)
    hybrid = patch_flops((48, 48), 8, 32, 2, 64, stem_flops=hybrid_stem_flops((48, 48), 8, 32, channels=16))
    assert hybrid - linear == hybrid_stem_flops((48, 48), 8, 32, channels=16) - 2 * 36 * 192 * 32


def test_onnx_matches_torch_at_every_patch_size(tmp_path):
    import onnxruntime as ort

    torch.manual_seed(0)
    text = TextConfig(vocab_size=50, length=8, width=32, depth=1, mlp_dim=64, heads=4, head_dim=32)
    model = SigLIP(SigLIPConfig(ViTConfig(**VIT), text, embed_dim=32))
    for _ in range(2):
        model.train().encode_image(torch.randn(4, 3, 48, 48), patch_size=8)
    model.eval()

    class Tower(torch.nn.Module):
        def __init__(self, p):
            super().__init__()
            self.model, self.p = model, p

        def forward(self, x):
            return self.model.encode_image(x, patch_size=self.p)

    x = torch.randn(5, 3, 48, 72)  # non-square: the exporter must keep H and W apart
    answers = {}
    for p in (4, 8, 12):
        tower = Tower(p).eval()
        path = tmp_path / f"img{p}.onnx"
        torch.onnx.export(tower, (torch.randn(2, 3, 48, 72),), str(path), dynamo=True, input_names=["x"],
                          output_names=["y"], dynamic_shapes=({0: torch.export.Dim("batch")},))
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert list(session.get_inputs()[0].shape[1:]) == [3, 48, 72]
        (got,) = session.run(None, {"x": x.numpy()})
        with torch.no_grad():
            want = tower(x).numpy()
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
        answers[p] = got
    assert not np.allclose(answers[4], answers[12], atol=1e-3)  # the patch size reaches the graph


def test_pi_resized_kernel_is_differentiable():
    """FlexiViT trains the underlying kernel through the resize."""
    stem = _stem().train()
    loss = stem(torch.randn(2, 3, 48, 48), patch_size=12).square().mean()
    loss.backward()
    assert stem.patch_embed.weight.grad is not None and stem.patch_embed.weight.grad.abs().sum() > 0
