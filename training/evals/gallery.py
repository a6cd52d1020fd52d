"""Text -> image retrieval quality on a gallery: precision@k of colour x shape queries.

A user searching the demo gallery types "a red circle" and looks at the first results; this is
the fraction of those that hold a red circle. An image counts as relevant when it contains the
queried colour x shape, whatever its size and whatever else it holds.

Numpy in and out, like the evaluators of vistas.training.evaluate: the caller embeds the gallery
once (`image_embeddings`, L2-normalised) and passes a text encoder and each image's contents.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

import numpy as np

from vistas.training.evals.pil_shapes import COLOURS, SHAPES, with_article

TextEncoder = Callable[[list[str]], np.ndarray]


def shape_queries() -> dict[str, str]:
    """The 36 colour x shape queries, label -> text: {"red circle": "a red circle", ...}."""
    return {f"{c} {s}": with_article(f"{c} {s}") for c in COLOURS for s in SHAPES}


def precision_at_k(texts: TextEncoder, image_embeddings: np.ndarray, contents: Sequence[Collection[str]],
                   queries: Mapping[str, str] | None = None, k: int = 5) -> dict[str, float]:
    """{"precision@k/<label>": ..., "precision@k": mean over queries, "precision@k_ceiling": ...}.

    image_embeddings: (N, D), L2-normalised. contents[i]: the labels ("red circle", ...) image i
    contains. queries: label -> query text (default: `shape_queries()`). The ceiling is the best
    mean precision the gallery allows: a label with fewer than k relevant images cannot fill k.
    Ties in similarity rank by gallery order (a stable sort), so the figure is deterministic.
    """
    queries = shape_queries() if queries is None else dict(queries)
    n = len(image_embeddings)
    if n != len(contents):
        raise ValueError(f"{n} image embeddings but {len(contents)} content sets: one per gallery image")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..{n} (the gallery size), got {k}")
    labels = list(queries)
    zt = texts([queries[q] for q in labels])  # (Q, D)
    sim = zt @ np.asarray(image_embeddings).T  # (Q, N)
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]  # (Q, k) gallery indices, best first
    out: dict[str, float] = {}
    ceiling = []
    for q, label in enumerate(labels):
        relevant = np.asarray([label in c for c in contents])  # (N,)
        out[f"precision@{k}/{label}"] = float(relevant[top[q]].mean())
        ceiling.append(min(k, int(relevant.sum())) / k)
    out[f"precision@{k}"] = float(np.mean([out[f"precision@{k}/{q}"] for q in labels]))
    out[f"precision@{k}_ceiling"] = float(np.mean(ceiling))
    return out
