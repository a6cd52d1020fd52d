"""Losses. Each cites the paper it implements."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sigmoid_loss(
    zimg: torch.Tensor, ztxt: torch.Tensor, t: torch.Tensor, b: torch.Tensor, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """Pairwise sigmoid loss of SigLIP, Algorithm 1 of arXiv 2303.15343 (Zhai et al., 2023).

    zimg, ztxt: (n, D) L2-normalised embeddings, row i of each is a matching pair.
    t: log temperature (scalar tensor), b: bias (scalar tensor).
    Every (image, text) pair is an independent binary problem: +1 on the diagonal,
    -1 elsewhere. The sum over all n^2 pairs is divided by n, not n^2, as in the paper.

    labels: optional (n, n) +1/-1 matrix replacing 2*I - 1, for batches where one caption
    truly describes several images (see `vistas.training.batches`); None is exactly Algorithm 1.
    """
    if zimg.ndim != 2 or zimg.shape != ztxt.shape:
        raise ValueError(
            f"zimg and ztxt must both be (n, D) with matching rows, got {tuple(zimg.shape)} and {tuple(ztxt.shape)}"
        )
    n = zimg.shape[0]
    logits = zimg @ ztxt.T * t.exp() + b  # (n, n)
    if labels is None:
        labels = 2 * torch.eye(n, device=logits.device, dtype=logits.dtype) - 1  # (n, n): +1 diag, -1 off
    elif labels.shape != logits.shape:
        raise ValueError(f"labels must be ({n}, {n}) +1/-1, got {tuple(labels.shape)}")
    return -F.logsigmoid(labels * logits).sum() / n
