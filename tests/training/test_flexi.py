"""FlexiViT (arXiv 2212.08013): PI-resize of the patch embedding and the model at any patch size."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vistas.training.models.flexi import (
    check_patch_size,
    patch_flops,
    pi_resize_kernel,
    pi_resize_matrix,
    resize_matrix,
)
from vistas.training.models.vit import ViT, ViTConfig, patchify


def tf_bilinear_1d(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of tf.image.resize(method="bilinear") along one axis, restated from
    TensorFlow's half-pixel-centre kernel (resize_bilinear_op: in = (out + 0.5) * scale - 0.5,
    lower = max(floor(in), 0), upper = min(ceil(in), n_in - 1), lerp = in - floor(in)); no antialias."""
    scale = n_in / n_out
    m = np.zeros((n_out, n_in))
    for o in range(n_out):
        x = (o + 0.5) * scale - 0.5
        lo, hi = max(math.floor(x), 0), min(math.ceil(x), n_in - 1)
        lerp = x - math.floor(x)
        m[o, lo] += 1 - lerp
        m[o, hi] += lerp
    return m


def big_vision_resize_matrix(old: int, new: int) -> np.ndarray:
    """big_vision's get_resize_mat: each basis patch resized, flattened, stacked, transposed."""
    rows, cols = tf_bilinear_1d(old, new), tf_bilinear_1d(old, new)
    mat = []
    for i in range(old * old):
        basis = np.zeros((old, old))
        basis[np.unravel_index(i, (old, old))] = 1.0
        mat.append((rows @ basis @ cols.T).reshape(-1))
    return np.stack(mat).T


@pytest.mark.parametrize("old,new", [(8, 12), (8, 16), (16, 24), (16, 8), (8, 6), (8, 4), (6, 9)])
def test_resize_matrix_is_big_vision_construction(old, new):
    ours = resize_matrix(old, new)
    assert ours.shape == (new * new, old * old)
    np.testing.assert_allclose(ours, big_vision_resize_matrix(old, new), atol=1e-12)


def test_resize_matrix_is_not_antialiased_when_downsampling():
    # An antialiased resize agrees with the reference only when upsampling (issue 14).
    basis = torch.eye(256, dtype=torch.float64).reshape(256, 1, 16, 16)
    aa = F.interpolate(basis, size=(8, 8), mode="bilinear", align_corners=False, antialias=True).reshape(256, -1).T
    assert np.abs(aa.numpy() - resize_matrix(16, 8)).max() > 0.1


@pytest.mark.parametrize("old,new", [(8, 12), (8, 16), (16, 24)])
def test_upsampling_preserves_tokens(old, new):
    """<B x, PI(w)> = <x, w> for every patch x: the token is unchanged by resizing the patch.

    In fp32 at a model's scales (pixels normalised to [-1, 1], a kernel at big_vision's init,
    normal(1/sqrt(width)) for width 128) to 1e-5, and exactly (1e-10) in float64 for any scale."""
    gen = torch.Generator().manual_seed(old * 100 + new)
    x = torch.rand(64, old * old, generator=gen) * 2 - 1  # 64 patches, one channel, in [-1, 1]
    w = torch.randn(old * old, 5, generator=gen) / math.sqrt(128)  # 5 output features
    b = torch.from_numpy(resize_matrix(old, new)).float()
    w_new = torch.from_numpy(pi_resize_matrix(old, new)).float() @ w  # (new*new, 5)
    torch.testing.assert_close((x @ b.T) @ w_new, x @ w, atol=1e-5, rtol=0)
    x64, w64 = torch.randn(64, old * old, dtype=torch.float64) * 10, torch.randn(old * old, 5, dtype=torch.float64)
    b64 = torch.from_numpy(resize_matrix(old, new))
    got = (x64 @ b64.T) @ (torch.from_numpy(pi_resize_matrix(old, new)) @ w64)
    torch.testing.assert_close(got, x64 @ w64, atol=1e-10, rtol=0)


@pytest.mark.parametrize("old,new", [(16, 8), (8, 6), (8, 4)])
def test_downsampling_is_least_squares(old, new):
    """For p < p0, B^T w' = w has no exact solution; w' = pinv(B^T) w is the least-squares one:
    the residual is orthogonal to the range of B^T (normal equations B (B^T w' - w) = 0)."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(old * old, 3))
    b = resize_matrix(old, new)
    w_new = pi_resize_matrix(old, new) @ w
    resid = b.T @ w_new - w
    assert np.abs(resid).max() > 1e-3  # not exact: information is lost
    np.testing.assert_allclose(b @ resid, 0, atol=1e-10)
    # and no other kernel does better (a random perturbation is worse)
    other = w_new + 1e-3 * rng.normal(size=w_new.shape)
    assert np.linalg.norm(b.T @ other - w) > np.linalg.norm(resid)


def test_pi_resize_kernel_layout_matches_per_channel_resize():
    """vistas' (D, p*p*C) row/col/channel layout: resizing per channel and per output feature."""
    gen = torch.Generator().manual_seed(1)
    k = torch.randn(7, 8 * 8 * 3, generator=gen, dtype=torch.float64)
    got = pi_resize_kernel(k, 8, 12)  # (7, 12*12*3)
    pi = torch.from_numpy(pi_resize_matrix(8, 12))
    for c in range(3):
        want = k.reshape(7, 64, 3)[:, :, c] @ pi.T  # (7, 144)
        torch.testing.assert_close(got.reshape(7, 144, 3)[:, :, c], want)
    assert pi_resize_kernel(k, 8, 8) is k
    with pytest.raises(ValueError, match="expected 6\\*6\\*3"):
        pi_resize_kernel(k, 6, 12)


def _model(seed=0):
    torch.manual_seed(seed)
    return ViT(ViTConfig(width=32, depth=2, mlp_dim=64, heads=2, patch_size=8, posemb_grid=(6, 5))).eval()


def test_underlying_patch_size_is_bit_identical():
    model = _model()
    pixels = torch.randn(3, 3, 48, 40)
    a, _ = model(pixels)
    b, _ = model(pixels, patch_size=8)
    assert torch.equal(a, b)


def test_each_patch_upsampled_then_run_at_16_equals_8():
    """The model-level statement of PI-resize: blow every 8x8 patch up to 16x16 on its own and run
    the model at p=16 on the 2x image -> the same tokens, the same position grid, the same output."""
    model = _model()
    pixels = torch.randn(2, 3, 48, 40)  # non-square: a 6x5 grid
    patches, _ = patchify(pixels, 8)  # (B, 30, 8*8*3), (row, col, channel)
    b, n, _ = patches.shape
    tiles = patches.reshape(b * n, 8, 8, 3).permute(0, 3, 1, 2)  # (B*N, 3, 8, 8)
    big = F.interpolate(tiles, size=(16, 16), mode="bilinear", align_corners=False, antialias=False)
    big = big.reshape(b, 6, 5, 3, 16, 16).permute(0, 3, 1, 4, 2, 5).reshape(b, 3, 96, 80)  # (B, 3, 96, 80)
    want, _ = model(pixels)
    got, out = model(big, patch_size=16)
    assert out["stem"].shape == (2, 30, 32)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_other_patch_sizes_resize_the_position_grid():
    model = _model()
    pixels = torch.randn(1, 3, 48, 40)
    for p, grid in [(4, (12, 10)), (16, (3, 2)), (6, (8, 6))]:
        x, out = model(pixels, patch_size=p)
        assert x.shape == (1, 32) and out["stem"].shape[1] == grid[0] * grid[1]
        assert torch.isfinite(x).all()
    with pytest.raises(ValueError, match="smaller than one"):
        model(pixels, patch_size=64)


def test_training_through_pi_resize_reaches_the_kernel():
    model = _model().train()
    x, _ = model(torch.randn(2, 3, 48, 40), patch_size=12)
    x.sum().backward()
    assert model.patch_embed.weight.grad is not None and model.patch_embed.weight.grad.abs().sum() > 0


def test_check_patch_size_and_flops():
    check_patch_size((48, 48), 12)
    with pytest.raises(ValueError, match="patch sizes that do: .*16"):
        check_patch_size((48, 48), 10)
    f8, f16 = patch_flops((48, 48), 8, 128, 4, 512), patch_flops((48, 48), 16, 128, 4, 512)
    assert f8 > 3.5 * f16  # 36 tokens vs 9
    # B/16 at 240 px vs p=30: the ~3.6x FLOP ratio the issue quotes
    b16 = patch_flops((240, 240), 16, 768, 12, 3072)
    b30 = patch_flops((240, 240), 30, 768, 12, 3072)
    assert 3.3 < b16 / b30 < 4.0
