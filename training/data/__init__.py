"""Training data sets by name. All torch-free: they yield `Example(PIL image, caption, label, attrs)`
and training applies `vistas.images.preprocess` itself, exactly as serving does.

    get_dataset("shapes", split="train", size=10_000)
    get_dataset("digits", split="test")
    get_dataset("user", source="data/train.csv")

Augmentations are named ops composed from a spec (`augment.py`), passed as a data set's
`augment` argument: get_dataset("digits", split="train", augment="affine(rotate=15)|invert(p=0.3)").
"""

from __future__ import annotations

from collections.abc import Callable

from vistas.training.data.digits import DigitsDataset
from vistas.training.data.shapes import ShapesDataset
from vistas.training.data.types import Example
from vistas.training.data.user import UserDataset

DATASETS: dict[str, Callable] = {}


def register(name: str, constructor: Callable) -> None:
    """Add a data set; a name is registered once (a second one would silently shadow it)."""
    if name in DATASETS:
        raise ValueError(f"data set {name!r} is already registered ({DATASETS[name]!r})")
    DATASETS[name] = constructor


def get_dataset(name: str, **kwargs):
    """The named data set, constructed with `kwargs`."""
    if name not in DATASETS:
        raise KeyError(f"unknown data set {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[name](**kwargs)


register("shapes", ShapesDataset)
register("digits", DigitsDataset)
register("user", UserDataset)

__all__ = ["DATASETS", "DigitsDataset", "Example", "ShapesDataset", "UserDataset", "get_dataset", "register"]
