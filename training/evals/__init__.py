"""Eval sets drawn by code independent of the training generator (issue 13).

The recipe's shapes and digits evals come from the same generator as training: a test split of
it measures whether the model learned that generator's pictures. These sets are drawn by their
own code (own rasteriser, geometry, colours, positions, sizes, backgrounds, fonts) and import
nothing from vistas.training.data (tests/training/test_evals_independent.py parses them to check),
so they measure whether it recognises "a red circle" or "the number seven" drawn by anyone else.

They are eval-only: `get_eval_dataset` is a registry of its own, which a recipe's `evals` entries
reach and its `data` entries (`vistas.training.data.get_dataset`) cannot.

    get_eval_dataset("pil_shapes_rgb9", size=900)  # 9 labels: red/green/blue x circle/square/triangle
    get_eval_dataset("pil_shapes_36", background="random")
    get_eval_dataset("typeset_digits")  # held-out DejaVu fonts, see typeset_digits.EVAL_FONTS
"""

from __future__ import annotations

from collections.abc import Callable

from vistas.training.evals.example import Example
from vistas.training.evals.gallery import precision_at_k, shape_queries
from vistas.training.evals.pil_shapes import PilShapesDataset, pil_shapes_36, pil_shapes_rgb9
from vistas.training.evals.typeset_digits import EVAL_FONTS, TypesetDigitsDataset

EVAL_DATASETS: dict[str, Callable] = {
    "pil_shapes_rgb9": pil_shapes_rgb9,
    "pil_shapes_36": pil_shapes_36,
    "typeset_digits": TypesetDigitsDataset,
}


def get_eval_dataset(name: str, **kwargs):
    """The named independent eval set, constructed with `kwargs`."""
    if name not in EVAL_DATASETS:
        raise KeyError(f"unknown eval set {name!r}; known: {sorted(EVAL_DATASETS)}")
    return EVAL_DATASETS[name](**kwargs)


__all__ = ["EVAL_DATASETS", "EVAL_FONTS", "Example", "PilShapesDataset", "TypesetDigitsDataset", "get_eval_dataset",
           "pil_shapes_36", "pil_shapes_rgb9", "precision_at_k", "shape_queries"]
