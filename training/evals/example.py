"""The example type the independent eval sets yield.

Its own class, field for field the training data's `Example`, so this package imports nothing
from vistas.training.data (evaluators only read `.image`, `.caption` and `.label`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image


@dataclass
class Example:
    """image, caption, label (index into the set's `class_names()`), attrs (how it was drawn)."""

    image: Image.Image
    caption: str
    label: int | None = None
    attrs: dict = field(default_factory=dict)
