"""Digits 0-9 typeset in held-out fonts: an eval set independent of the training digits.

The training digits are 8x8 handwriting scans upscaled, dark on white, filling the frame. Here a
digit is rendered with a TrueType font through PIL (`ImageFont.truetype`), black on white or white
on black, its ink 20-80 % of the image height (32-128 px at the default 160 px), anywhere in the
image, fully inside. The model's preprocessing resizes it, as it would a user's image.

HELD-OUT FONTS. `EVAL_FONTS` (matplotlib's bundled DejaVu Sans, DejaVu Serif, DejaVu Sans Bold)
must never be used by a training generator, nor any other DejaVu file (Oblique, Mono, Display are
near-copies of these): a model trained on them would be measured on its own training fonts.
Typeset training digits use other fonts (matplotlib's STIX and Computer Modern, Pillow's default).
tests/training/test_evals_independent.py checks that no module of training/data names them.
The fonts come from matplotlib's own data directory (a pinned dependency), never from system
paths, so the set draws the same pixels on every machine.

Every example is a pure function of (seed, index); digit i % 10, font (i // 10) % len(fonts), so
classes and fonts are balanced.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vistas.training.evals.example import Example

EVAL_FONTS = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSans-Bold.ttf")  # files in matplotlib's fonts/ttf
NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
GLYPH_HEIGHT_FRACTION = (0.2, 0.8)  # ink height / image side: 32-128 px at 160 px
_STREAM = 1302  # this set's seed stream (issue 13), distinct from the other eval sets'
_REFERENCE_SIZE = 100  # font size at which a glyph's ink height is measured to pick the real size

# Phrased like the training captions, without "handwritten" (these are typeset).
_PROMPTS = ("the number {name}", "the digit {digit}", "a photo of the digit {name}", "a picture of the number {digit}")


def font_path(name: str) -> str:
    """A font file bundled with matplotlib (fonts/ttf/<name>)."""
    import matplotlib  # lazy: only this set needs it

    path = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"font {name} is not in matplotlib's fonts ({path}); is matplotlib==3.11.2 installed?")
    return path


@functools.lru_cache(maxsize=1024)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(font_path(name), size)


def _ink_box(font: ImageFont.FreeTypeFont, text: str) -> tuple[int, int, int, int]:
    return font.getbbox(text, anchor="la")  # (x0, y0, x1, y1) of the ink relative to the drawing origin


def render_digit(digit: int, font: str, ink_height: float, image_size: int, rng: np.random.Generator,
                 white_on_black: bool) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """The digit with its ink about `ink_height` px tall at a random spot; returns the image and
    the ink box (x0, y0, x1, y1) in image pixels."""
    text = str(digit)
    ref = _ink_box(_font(font, _REFERENCE_SIZE), text)
    size = max(1, round(ink_height * _REFERENCE_SIZE / (ref[3] - ref[1])))
    f = _font(font, size)
    x0, y0, x1, y1 = _ink_box(f, text)
    w, h = x1 - x0, y1 - y0
    if w > image_size or h > image_size:
        raise ValueError(f"a {w}x{h} glyph does not fit a {image_size} px image; lower GLYPH_HEIGHT_FRACTION")
    left, top = (int(v) for v in rng.integers(0, [image_size - w + 1, image_size - h + 1]))
    ink, paper = (255, 0) if white_on_black else (0, 255)
    img = Image.new("L", (image_size, image_size), paper)
    ImageDraw.Draw(img).text((left - x0, top - y0), text, fill=ink, font=f, anchor="la")
    return img.convert("RGB"), (left, top, left + w, top + h)


class TypesetDigitsDataset:
    """`size` images of typeset digits; label = the digit, class names "zero" ... "nine"."""

    def __init__(self, size: int = 1000, image_size: int = 160, fonts: Sequence[str] = EVAL_FONTS, seed: int = 0):
        if not fonts:
            raise ValueError(f"fonts is empty; use some of {EVAL_FONTS}")
        for name in fonts:
            font_path(name)  # fail at construction, naming the missing file
        if image_size < 32:
            raise ValueError(f"image_size {image_size} is too small for a legible digit; use >= 32")
        self.size, self.image_size, self.fonts, self.seed = int(size), int(image_size), tuple(fonts), seed

    def class_names(self) -> list[str]:
        return list(NAMES)

    def zero_shot_prompts(self, class_name: str) -> list[str]:
        return [t.format(name=class_name, digit=NAMES.index(class_name)) for t in _PROMPTS]

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        return (self[i] for i in range(self.size))

    def __getitem__(self, index: int) -> Example:
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} examples")
        digit = index % len(NAMES)
        font = self.fonts[(index // len(NAMES)) % len(self.fonts)]
        rng = np.random.default_rng([self.seed, _STREAM, index])
        ink_height = rng.uniform(*GLYPH_HEIGHT_FRACTION) * self.image_size
        white_on_black = bool(rng.random() < 0.5)
        img, box = render_digit(digit, font, ink_height, self.image_size, rng, white_on_black)
        attrs = {"digit": digit, "font": font, "ink_box": box, "white_on_black": white_on_black}
        return Example(img, f"the number {NAMES[digit]}", digit, attrs)
