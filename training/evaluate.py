"""Zero-shot classification and image<->text retrieval metrics.

Evaluators take two encoders, `images(list[PIL]) -> (N, D)` and `texts(list[str]) -> (M, D)`
(L2-normalised numpy), so the same code measures a torch model during training and an
exported ONNX bundle afterwards (`vistas eval BUNDLE`): the README's figures come from the
artefact users actually serve.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

ImageEncoder = Callable[[list[Image.Image]], np.ndarray]
TextEncoder = Callable[[list[str]], np.ndarray]


def class_embeddings(texts: TextEncoder, class_names: Sequence[str], prompts: Callable[[str], list[str]]) -> np.ndarray:
    """Prompt ensembling (CLIP, arXiv 2103.00020 Sec. 3.1.4): mean of the prompt embeddings, renormalised."""
    out = []
    for name in class_names:
        z = texts(prompts(name)).mean(axis=0)
        out.append(z / np.linalg.norm(z))
    return np.stack(out)  # (C, D)


def embed_in_batches(images: ImageEncoder, pil_images: Sequence[Image.Image], batch_size: int = 256) -> np.ndarray:
    return np.concatenate([images(list(pil_images[i : i + batch_size])) for i in range(0, len(pil_images), batch_size)])


def zero_shot_accuracy(
    images: ImageEncoder,
    texts: TextEncoder,
    examples: Sequence,  # objects with .image and .label (index into class_names)
    class_names: Sequence[str],
    prompts: Callable[[str], list[str]],
) -> float:
    zc = class_embeddings(texts, class_names, prompts)  # (C, D)
    zi = embed_in_batches(images, [e.image for e in examples])  # (N, D)
    pred = (zi @ zc.T).argmax(axis=1)
    labels = np.asarray([e.label for e in examples])
    return float((pred == labels).mean())


@dataclass
class RetrievalMetrics:
    i2t_r1: float
    i2t_r5: float
    t2i_r1: float
    t2i_r5: float


def retrieval_recall(images: ImageEncoder, texts: TextEncoder, examples: Sequence) -> RetrievalMetrics:
    """Recall@1/5 over paired (image, caption) examples.

    Procedural captions repeat ("a red circle" describes many images), so a hit is any
    retrieved item whose caption equals the query's own caption, not only its exact partner.
    """
    captions = [e.caption for e in examples]
    zi = embed_in_batches(images, [e.image for e in examples])  # (N, D)
    zt = np.concatenate([texts(captions[i : i + 256]) for i in range(0, len(captions), 256)])  # (N, D)
    sim = zi @ zt.T  # (N images, N texts)
    same = np.asarray(captions)[:, None] == np.asarray(captions)[None, :]  # (N, N) caption equality

    def recall(s: np.ndarray, k: int) -> float:
        topk = np.argsort(-s, axis=1)[:, :k]
        return float(np.take_along_axis(same, topk, axis=1).any(axis=1).mean())

    return RetrievalMetrics(recall(sim, 1), recall(sim, 5), recall(sim.T, 1), recall(sim.T, 5))


def run_suites(images: ImageEncoder, texts: TextEncoder, suites: Sequence) -> dict[str, float]:
    """suites: `vistas.training.batches.EvalSuite`s -> {"<suite>/accuracy" | "<suite>/i2t_r1" ...: value}."""
    out: dict[str, float] = {}
    for suite in suites:
        if suite.kind == "zero_shot":
            out[f"{suite.name}/accuracy"] = zero_shot_accuracy(images, texts, suite.examples, suite.class_names, suite.prompts)
        elif suite.kind == "retrieval":
            out.update({f"{suite.name}/{k}": v for k, v in vars(retrieval_recall(images, texts, suite.examples)).items()})
        else:
            raise ValueError(f"unknown eval kind {suite.kind!r} in suite {suite.name!r} (zero_shot | retrieval)")
    return out
