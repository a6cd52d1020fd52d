"""Coloured shapes drawn the way an outsider would, with plain PIL: an eval set that shares no
code, constant or layout with the training generator (vistas.training.data.shapes).

What differs from training on purpose (issue 13: a model that only knows its own renderer's
shapes has learned that renderer, not "a red circle"):
* geometry: an axis-aligned square, an isosceles triangle apex up filling its box, a circle, a
  regular 5-point star (inner radius half the outer), a plus sign of two bars, a rhombus 0.7 as
  wide as tall; no rotation;
* colours: plain RGB values, not the training palette;
* place and size: the centre is uniform and continuous (no grid), the radius (half the side of
  the shape's box) 20-33 % of the image side, always fully inside;
* background: flat mid-grey (128), or with `background="random"` any grey level 0-255;
* drawn at 128 px, so the model's own preprocessing resizes it (bilinear, antialiased).

Every example is a pure function of (seed, index); labels cycle through the classes, so any
`size` is balanced to within one example per class.

    ds = PilShapesDataset(colours=("red", "green", "blue"), shapes=("circle", "square", "triangle"))
    ds[0].image, ds[0].caption, ds.class_names()[ds[0].label]  # (128x128 image, "a red circle", "red circle")
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from vistas.training.evals.example import Example

# The model's colour and shape words (its class names are "<colour> <shape>"), restated here
# rather than imported: this module must not depend on the training generator.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 200, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "purple": (128, 0, 128),
    "orange": (255, 128, 0),
}
SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
RGB_COLOURS = ("red", "green", "blue")
BASIC_SHAPES = ("circle", "square", "triangle")

RADIUS_FRACTION = (0.20, 0.33)  # half the side of the shape's box, as a fraction of the image side
MARGIN_PX = 1  # the box never touches the border: "fully inside" is checkable on the border pixels
MID_GREY = 128
BACKGROUNDS = ("grey", "random")
STAR_INNER = 0.5  # inner / outer radius of the star (a regular pentagram's is 0.382)
CROSS_HALF_WIDTH = 0.28  # half-thickness of each bar of the plus sign, in radii
DIAMOND_HALF_WIDTH = 0.7  # rhombus half-width, in radii (its half-height is 1)
_STREAM = 1301  # this set's seed stream (issue 13), distinct from the other eval sets'

_PROMPTS = ("{o}", "a photo of {o}", "an image of {o}")


def with_article(phrase: str) -> str:
    """'orange circle' -> 'an orange circle'."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def outline(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    """Polygon vertices (image coordinates, y down) of a shape in the box of half-side r about
    (cx, cy); None for the circle and the square, which PIL draws from the box itself."""
    if shape in ("circle", "square"):
        return None
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "diamond":
        w = DIAMOND_HALF_WIDTH * r
        return [(cx, cy - r), (cx + w, cy), (cx, cy + r), (cx - w, cy)]
    if shape == "star":  # ten vertices from the top point, alternating outer and inner radius
        radii = [r if k % 2 == 0 else STAR_INNER * r for k in range(10)]
        return [(cx + rk * math.sin(k * math.pi / 5), cy - rk * math.cos(k * math.pi / 5)) for k, rk in enumerate(radii)]
    if shape == "cross":  # the outline of a horizontal and a vertical bar of half-thickness t
        t = CROSS_HALF_WIDTH * r
        return [(cx - t, cy - r), (cx + t, cy - r), (cx + t, cy - t), (cx + r, cy - t), (cx + r, cy + t),
                (cx + t, cy + t), (cx + t, cy + r), (cx - t, cy + r), (cx - t, cy + t), (cx - r, cy + t),
                (cx - r, cy - t), (cx - t, cy - t)]
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def draw_shape(img: Image.Image, shape: str, colour: tuple[int, int, int], cx: float, cy: float, r: float) -> None:
    draw = ImageDraw.Draw(img)
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon(outline(shape, cx, cy, r), fill=colour)


class PilShapesDataset:
    """`size` single-shape images over the classes colours x shapes ("red circle", ...)."""

    def __init__(self, colours: Sequence[str] = tuple(COLOURS), shapes: Sequence[str] = SHAPES, size: int = 720,
                 image_size: int = 128, background: str = "grey", seed: int = 0):
        unknown = [c for c in colours if c not in COLOURS] + [s for s in shapes if s not in SHAPES]
        if unknown:
            raise ValueError(f"unknown colour or shape {unknown}; colours: {list(COLOURS)}, shapes: {list(SHAPES)}")
        if background not in BACKGROUNDS:
            raise ValueError(f"unknown background {background!r}; expected one of {BACKGROUNDS}")
        if image_size < 32:
            raise ValueError(f"image_size {image_size} is too small to draw a recognisable shape; use >= 32")
        self.pairs = [(c, s) for c in colours for s in shapes]
        self.size, self.image_size, self.background, self.seed = int(size), int(image_size), background, seed

    def class_names(self) -> list[str]:
        """"<colour> <shape>", the model's own label strings; index = Example.label."""
        return [f"{c} {s}" for c, s in self.pairs]

    def zero_shot_prompts(self, class_name: str) -> list[str]:
        return [t.format(o=with_article(class_name)) for t in _PROMPTS]

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        return (self[i] for i in range(self.size))

    def __getitem__(self, index: int) -> Example:
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} examples")
        label = index % len(self.pairs)
        colour, shape = self.pairs[label]
        rng = np.random.default_rng([self.seed, _STREAM, index])
        s = self.image_size
        r = float(rng.uniform(*RADIUS_FRACTION) * s)
        cx, cy = (float(v) for v in rng.uniform(r + MARGIN_PX, s - MARGIN_PX - r, size=2))
        level = MID_GREY if self.background == "grey" else int(rng.integers(0, 256))
        img = Image.new("RGB", (s, s), (level,) * 3)
        draw_shape(img, shape, COLOURS[colour], cx, cy, r)
        attrs = {"colour": colour, "shape": shape, "center": (cx, cy), "radius": r, "background": level}
        return Example(img, with_article(f"{colour} {shape}"), label, attrs)


def pil_shapes_rgb9(size: int = 900, **kwargs) -> PilShapesDataset:
    """9 labels: red / green / blue x circle / square / triangle (chance 11 %)."""
    return PilShapesDataset(RGB_COLOURS, BASIC_SHAPES, size=size, **kwargs)


def pil_shapes_36(size: int = 720, **kwargs) -> PilShapesDataset:
    """All 36 colour x shape labels of the model's vocabulary (chance 2.8 %)."""
    return PilShapesDataset(tuple(COLOURS), SHAPES, size=size, **kwargs)
