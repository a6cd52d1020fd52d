"""The SigLIP sigmoid loss against Algorithm 1 of arXiv 2303.15343, written out element by element."""

import math

import pytest
import torch
import torch.nn.functional as F

from vistas.training.losses import sigmoid_loss


def _embeddings(n: int, d: int, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    zimg = F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=-1)
    ztxt = F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=-1)
    return zimg, ztxt


def _loop_loss(zimg, ztxt, t: float, b: float) -> float:
    """-1/n sum_ij log sigmoid(z_ij (exp(t) <x_i, y_j> + b)), z_ij = 1 if i == j else -1."""
    n = len(zimg)
    total = 0.0
    for i in range(n):
        for j in range(n):
            logit = math.exp(t) * float(zimg[i] @ ztxt[j]) + b
            label = 1.0 if i == j else -1.0
            total += -math.log(1.0 / (1.0 + math.exp(-label * logit)))
    return total / n


@pytest.mark.parametrize("n,t,b", [(1, math.log(10), -10.0), (5, math.log(10), -10.0), (7, 1.3, 2.5)])
def test_matches_elementwise_loop(n, t, b):
    zimg, ztxt = _embeddings(n, 16, seed=n)
    got = sigmoid_loss(zimg, ztxt, torch.tensor(t, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
    assert got.item() == pytest.approx(_loop_loss(zimg, ztxt, t, b), rel=1e-12)


def test_closed_form_at_init():
    # Perfectly aligned orthonormal pairs at t = log 10, b = -10: positives have logit 0,
    # negatives logit -10, so loss = (n log 2 + n (n-1) log(1 + e^-10)) / n.
    n = 4
    z = torch.eye(n, dtype=torch.float64)
    got = sigmoid_loss(z, z, torch.tensor(math.log(10), dtype=torch.float64), torch.tensor(-10.0, dtype=torch.float64))
    assert got.item() == pytest.approx(math.log(2) + (n - 1) * math.log1p(math.exp(-10)), rel=1e-12)


def test_gradients_finite_even_for_saturated_logits():
    zimg, ztxt = _embeddings(6, 8, dtype=torch.float32)
    zimg.requires_grad_(True)
    ztxt.requires_grad_(True)
    t = torch.tensor(math.log(1000.0), requires_grad=True)  # logits up to +-1000: log_sigmoid stays finite
    b = torch.tensor(-10.0, requires_grad=True)
    loss = sigmoid_loss(zimg, ztxt, t, b)
    loss.backward()
    assert torch.isfinite(loss)
    for g in (zimg.grad, ztxt.grad, t.grad, b.grad):
        assert torch.isfinite(g).all()
    assert b.grad.abs() > 0 and t.grad.abs() > 0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="matching rows"):
        sigmoid_loss(torch.randn(3, 4), torch.randn(2, 4), torch.tensor(0.0), torch.tensor(0.0))
