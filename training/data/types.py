"""The example type every training data set yields (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image


@dataclass
class Example:
    """One image with its caption.

    label: class index into the data set's `class_names()` for classification evals, None
        when the example has no single class (a multi-object scene, user data).
    attrs: what generated the example (objects, background, source id, metadata), for
        tests and error analysis; never fed to the model.
    """

    image: Image.Image
    caption: str
    label: int | None = None
    attrs: dict = field(default_factory=dict)
