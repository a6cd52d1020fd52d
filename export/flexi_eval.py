"""A FlexiViT bundle's zero-shot accuracy at each of its patch sizes, written into bundle.json.

    vistas export runs/flexivit/final build/flexi --patch-sizes 4,6,8,12,16 --eval-config flexivit_shapes_digits

The exported graphs are measured (onnxruntime, as serving runs them), not the torch model, so
the figures a deployment reads in bundle.json are the ones its requests get.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from vistas.bundle import load_bundle_spec, save_bundle_spec
from vistas.inference.model import load_model
from vistas.permissions import publish_tree


def measure_patch_sizes(bundle_dir: str | Path, eval_config: str, threads: int | None = None) -> dict[int, dict]:
    """Run the recipe's eval suites at every patch size of the bundle; store and return them."""
    from vistas.training.batches import BatchMaker
    from vistas.training.config import load_config
    from vistas.training.evaluate import run_suites

    bundle_dir = Path(bundle_dir)
    spec = load_bundle_spec(bundle_dir)
    if not spec.patch_sizes:
        raise ValueError(f"{bundle_dir} is not a FlexiViT bundle (no patch_sizes); export it with --patch-sizes")
    model = load_model(str(bundle_dir), threads=threads, providers=["CPUExecutionProvider"])
    suites = BatchMaker(load_config(eval_config), spec.preprocess.image).eval_suites()
    out = {}
    for p in sorted(spec.patch_sizes):
        metrics = run_suites(lambda ims, p=p: model.embed_images(ims, patch_size=p), model.embed_texts, suites)
        out[p] = {**spec.patch_sizes[p], "eval": {k: round(v, 4) for k, v in metrics.items()}}
    model.close()
    save_bundle_spec(dataclasses.replace(spec, patch_sizes=out), bundle_dir)
    publish_tree(bundle_dir)
    return out


def cross_patch_retrieval(bundle_dir: str | Path, threads: int | None = None) -> dict[int, float]:
    """One embedding space across patch sizes, measured: the sklearn digits test split indexed at
    the bundle's default patch size, each image queried at every patch size; the share of queries
    whose nearest *other* image is the same digit (1-NN accuracy, the query's own image excluded).

        python -m vistas.export.flexi_eval models/flexivit-shapes-digits/bundle
    """
    import numpy as np

    from vistas.training.data import get_dataset

    model = load_model(str(bundle_dir), threads=threads, providers=["CPUExecutionProvider"])
    spec = model.spec
    examples = list(get_dataset("digits", split="test", image_size=spec.preprocess.image.height))
    images, labels = [e.image for e in examples], np.array([e.label for e in examples])
    gallery = model.embed_images(images)  # (N, D) at the default patch size
    out = {}
    for p in model.patch_sizes:
        sims = model.embed_images(images, patch_size=p) @ gallery.T  # (N, N)
        np.fill_diagonal(sims, -np.inf)
        out[p] = float((labels[sims.argmax(axis=1)] == labels).mean())
    model.close()
    return out


if __name__ == "__main__":  # pragma: no cover - a measurement script
    import sys

    for path in sys.argv[1:]:
        res = cross_patch_retrieval(path)
        print(path, "  ".join(f"p{p}: {v:.3f}" for p, v in res.items()))
