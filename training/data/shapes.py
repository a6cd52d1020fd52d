"""The "shapes" data set: procedural colored shapes with attribute captions (this project's own).

Every example is a pure function of (seed, split, index), so runs are reproducible without
storing a single image, and a resumed run sees the same data.

An image holds 1-3 objects, each a color x shape x size at a random position, on a light or
dark low-saturation background (optionally with subtle noise). Backgrounds are grey-ish and
object colors saturated, so "which color is the object" never depends on the background.

Compositional generalisation is the point of the held-out split: `HELDOUT_PAIRS` names one
color x shape pair per color and per shape (a Latin-square diagonal), so every color and
every shape is still seen in training, but those combinations never appear in a training
image or caption. `test_unseen` asks the model to recognise them zero-shot, among ALL pairs.

    ds = ShapesDataset("train", size=10_000)
    ds[0].image, ds[0].caption  # (64x64 RGB PIL image, "a photo of a small red circle")
"""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
from PIL import Image, ImageDraw

from vistas.training.data.types import Example

# Saturated and far apart in hue (min pairwise RGB distance > 90), unlike any background.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 230),
    "yellow": (245, 220, 40),
    "purple": (150, 60, 200),
    "orange": (250, 125, 10),
}
SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
# Radius as a fraction of the image side; the ranges are 1.3x apart so "small" vs "large"
# is never ambiguous, and even a small shape spans about two 8-pixel patches at 48 px
# (smaller ones left a tiny ViT learning colour only).
SIZES: dict[str, tuple[float, float]] = {"small": (0.13, 0.16), "large": (0.21, 0.25)}
# Backgrounds: grey level range, tinted by at most +-10 per channel (low saturation).
BACKGROUNDS: dict[str, tuple[int, int]] = {"light": (195, 240), "dark": (20, 65)}

_COLOR_NAMES, _SIZE_NAMES, _BACKGROUND_NAMES = tuple(COLORS), tuple(SIZES), tuple(BACKGROUNDS)
# Color i is held out with shape i+2: each color and each shape exactly once, and the pairs
# used as examples in docs and prompts ("a red circle", "a blue square") stay seen.
HELDOUT_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (c, SHAPES[(i + 2) % len(SHAPES)]) for i, c in enumerate(_COLOR_NAMES)
)
ALL_PAIRS: tuple[tuple[str, str], ...] = tuple((c, s) for c in _COLOR_NAMES for s in SHAPES)
SEEN_PAIRS: tuple[tuple[str, str], ...] = tuple(p for p in ALL_PAIRS if p not in HELDOUT_PAIRS)
_LABEL = {p: i for i, p in enumerate(ALL_PAIRS)}

# Different seed streams per split: test_seen never replays a training image.
SPLITS = {"train": 0, "test_seen": 1, "test_unseen": 2}

# Vertices of each polygon for a unit "radius", y pointing down (image coordinates).
# Circles are drawn as ellipses. The diamond is taller than wide, so a slightly rotated
# square never looks like one.
_w, _l = 0.34, 1.05  # cross arm half-width and length
_POLYGONS: dict[str, np.ndarray] = {
    "square": np.array([(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)]),
    "triangle": np.array([(1.15 * math.cos(a), 1.15 * math.sin(a)) for a in np.radians([-90, 30, 150])]),
    "diamond": np.array([(0, -1.15), (0.72, 0), (0, 1.15), (-0.72, 0)]),
    "star": np.array([
        ((1.15 if k % 2 == 0 else 0.48) * math.cos(a), (1.15 if k % 2 == 0 else 0.48) * math.sin(a))
        for k, a in enumerate(np.radians(np.arange(-90, 270, 36)))
    ]),
    "cross": np.array([(-_w, -_l), (_w, -_l), (_w, -_w), (_l, -_w), (_l, _w), (_w, _w), (_w, _l), (-_w, _l),
                       (-_w, _w), (-_l, _w), (-_l, -_w), (-_w, -_w)]),
}
MAX_ROTATION_DEG = 12  # variety without turning a square into a diamond
# Objects sit at the centers of a grid of this many pixels: the default matches an 8-pixel ViT
# patch, so position varies by whole patches. A tiny ViT trained for minutes learns shape from
# whole-patch translations but hardly from sub-patch ones: supervised 6-way shape accuracy after
# 200 steps of 64 images was 80 % on the grid, 25-34 % with free placement (4-layer width-128
# ViT, 48 px, patch 8; `tests/training/test_data.py` keeps the layout honest). 0 = free placement.
POSITION_GRID = 8

_SINGLE_TEMPLATES = ("{o}", "a photo of {o}", "an image of {o}", "a picture of {o}", "{o} on a {bg} background",
                     "a photo of {o} on a {bg} background")
_MULTI_TEMPLATES = ("{o}", "a photo of {o}", "an image with {o}", "{o} on a {bg} background")
_PROMPTS = ("{o}", "a photo of {o}", "an image of {o}")


def with_article(phrase: str) -> str:
    """'orange circle' -> 'an orange circle'."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def class_names() -> list[str]:
    """All color x shape labels ("red circle", ...), seen and held-out; index = Example.label."""
    return [f"{c} {s}" for c, s in ALL_PAIRS]


def zero_shot_prompts(class_name: str) -> list[str]:
    """Prompt templates for zero-shot evaluation, phrased like the training captions."""
    return [t.format(o=with_article(class_name)) for t in _PROMPTS]


def object_count_probs(max_objects: int) -> np.ndarray:
    """P(k objects) proportional to 0.6**(k-1): for 3, about 0.51 / 0.31 / 0.18."""
    w = 0.6 ** np.arange(max_objects)
    return w / w.sum()


def _draw(draw: ImageDraw.ImageDraw, shape: str, center: np.ndarray, radius: float, angle: float, fill) -> None:
    if shape == "circle":
        x, y = center
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill)
        return
    c, s = math.cos(angle), math.sin(angle)
    pts = _POLYGONS[shape] @ np.array([[c, s], [-s, c]]) * radius + center  # (V, 2) rotated, placed
    draw.polygon([tuple(p) for p in pts], fill=fill)


def _place(rng: np.random.Generator, radii: list[float], size: int, grid: int = 0,
           tries: int = 30) -> list[np.ndarray | None]:
    """Centers inside the image with centers at least 0.9*(r_i + r_j) apart (touching, not
    stacked); None for an object that found no room (it is then left out of image and caption).

    grid > 0 puts centers on the centers of a grid of `grid`-pixel cells (see POSITION_GRID)."""
    placed: list[tuple[np.ndarray, float]] = []
    out = []
    for r in radii:
        lo, hi = 1.2 * r, size - 1.2 * r  # polygons reach 1.15 r
        if grid:
            cells = np.arange(grid / 2, size, grid)
            cells = cells[(cells >= lo) & (cells <= hi)]
            if not len(cells):  # too big for any cell center: the image center is the only spot
                cells = np.array([size / 2])
        for _ in range(tries):
            c = cells[rng.integers(len(cells), size=2)] if grid else rng.uniform(lo, hi, size=2)
            if all(np.hypot(*(c - pc)) >= 0.9 * (r + pr) for pc, pr in placed):
                placed.append((c, r))
                out.append(c)
                break
        else:
            out.append(None)
    return out


def _object_phrase(obj: dict, rng: np.random.Generator, color: bool = True) -> str:
    words = ([obj["size"]] if rng.random() < 0.5 else []) + ([obj["color"]] if color else []) + [obj["shape"]]
    return with_article(" ".join(words))


def _caption(objects: list[dict], background: str, rng: np.random.Generator, shape_only: float = 0.0) -> str:
    color = not (shape_only and rng.random() < shape_only)
    phrases = [_object_phrase(o, rng, color) for o in objects]
    listing = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    templates = _SINGLE_TEMPLATES if len(objects) == 1 else _MULTI_TEMPLATES
    return templates[rng.integers(len(templates))].format(o=listing, bg=background)


_OBJECT_RE = re.compile(
    rf"\b(?:(small|large) )?(?:({'|'.join(COLORS)}) )?({'|'.join(SHAPES)})\b"
)
_BACKGROUND_RE = re.compile(rf"on an? ({'|'.join(BACKGROUNDS)}) background")


def parse_caption(caption: str) -> tuple[list[tuple[str | None, str | None, str]], str | None]:
    """A caption of this data set -> ([(size or None, color or None, shape), ...], background or None)."""
    bg = _BACKGROUND_RE.search(caption)
    return [m.groups() for m in _OBJECT_RE.finditer(caption)], bg.group(1) if bg else None


def caption_describes(parsed: tuple[list, str | None], attrs: dict) -> bool:
    """Is a (parsed) caption true of the image with these attrs?

    True when it names exactly the image's objects (shape, and color and size where it says
    them) and its background where it names one. Contrastive training uses this so that
    "a red circle" counts as a positive for every red circle in the batch, not only the one
    it was written for: with 36 color x shape pairs, a batch holds several of each.
    """
    objects, background = parsed
    if background is not None and background != attrs["background"]:
        return False
    present = [(o["size"], o["color"], o["shape"]) for o in attrs["objects"]]
    if len(objects) != len(present):
        return False
    # A phrase that leaves out size or color fits several objects, so a greedy match can fail
    # where another assignment succeeds ("a star and a small star"): try them all (<= 3! ways).
    return any(
        all(color in (None, c) and shape == sh and size in (None, sz)
            for (size, color, shape), (sz, c, sh) in zip(objects, order))
        for order in itertools.permutations(present)
    )


def render(objects: list[dict], background: str, noise: bool, image_size: int, rng: np.random.Generator) -> Image.Image:
    """Objects (with color, shape, center, radius, angle) on a background -> RGB PIL image."""
    lo, hi = BACKGROUNDS[background]
    base = rng.integers(lo, hi + 1) + rng.integers(-10, 11, size=3, dtype=np.int16)  # (3,) tinted grey
    if noise:  # subtle grey noise (uniform, std ~6) on the background only: object colors stay exact
        pixels = base + rng.integers(-10, 11, size=(image_size, image_size, 1), dtype=np.int16)  # (S, S, 3)
        img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    else:
        img = Image.new("RGB", (image_size, image_size), tuple(int(v) for v in base.clip(0, 255)))
    draw = ImageDraw.Draw(img)
    for o in objects:
        _draw(draw, o["shape"], np.asarray(o["center"]), o["radius"], o["angle"], COLORS[o["color"]])
    return img


class ShapesDataset:
    """`size` examples of one split; example i is a pure function of (seed, split, i).

    train:       1..max_objects objects per image, pairs from SEEN_PAIRS only; label is the
                 class index for single-object images, else None. A `shape_only` fraction of
                 captions leave the colors out ("a photo of a star and a small circle").
    test_seen:   one object, seen pairs, cycling through them so classes are balanced.
    test_unseen: one object, HELDOUT_PAIRS, cycling likewise.
    """

    class_names = staticmethod(class_names)
    zero_shot_prompts = staticmethod(zero_shot_prompts)

    def __init__(self, split: str, size: int, image_size: int = 64, seed: int = 0, max_objects: int = 3,
                 position_grid: int = POSITION_GRID, shape_only: float = 0.0):
        if split not in SPLITS:
            raise ValueError(f"unknown shapes split {split!r}; expected one of {list(SPLITS)}")
        if not 1 <= max_objects <= len(SHAPES):
            raise ValueError(f"max_objects must be in 1..{len(SHAPES)}, got {max_objects}")
        if image_size < 16:
            raise ValueError(f"image_size {image_size} is too small to draw shapes; use >= 16")
        self.split, self.size, self.image_size, self.seed = split, int(size), image_size, seed
        if not 0 <= shape_only <= 1:
            raise ValueError(f"shape_only is a fraction of captions, in [0, 1]; got {shape_only}")
        self.position_grid = position_grid
        # Color is the easy signal: with colors always named, a contrastive model matches captions
        # by color within minutes and learns shape slowly (55 % zero-shot on seen pairs after 1,500
        # steps), because shape only separates the few same-color negatives of a batch. Captions
        # that name shapes alone make shape the only signal for their pairs. At 0.5, the bundled
        # recipe (configs/siglip_shapes_digits.py) reaches 99.7 % where it had 55.6 %, and a
        # 600-step probe of it 69 % where it had 23 % (0.3: 43 %).
        self.shape_only = shape_only
        self.max_objects = max_objects if split == "train" else 1
        self._count_cdf = np.cumsum(object_count_probs(self.max_objects))[:-1]  # inverse-CDF sampling

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        return (self[i] for i in range(self.size))

    def __getitem__(self, index: int) -> Example:
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} examples")
        rng = np.random.default_rng([self.seed, SPLITS[self.split], index])
        if self.split == "train":
            n = 1 + int(np.searchsorted(self._count_cdf, rng.random(), side="right"))
            pairs = [SEEN_PAIRS[j] for j in rng.choice(len(SEEN_PAIRS), size=n, replace=False)]
        else:
            pool = SEEN_PAIRS if self.split == "test_seen" else HELDOUT_PAIRS
            pairs = [pool[index % len(pool)]]
        sizes = [_SIZE_NAMES[rng.integers(len(_SIZE_NAMES))] for _ in pairs]
        radii = [rng.uniform(*SIZES[s]) * self.image_size for s in sizes]
        centers = _place(rng, radii, self.image_size, self.position_grid)
        objects = [
            {"color": c, "shape": sh, "size": sz, "center": (float(ctr[0]), float(ctr[1])), "radius": float(r),
             "angle": float(np.radians(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)))}
            for (c, sh), sz, r, ctr in zip(pairs, sizes, radii, centers)
            if ctr is not None
        ]
        assert objects, "the first object always fits in an empty image"
        background = _BACKGROUND_NAMES[rng.integers(len(_BACKGROUND_NAMES))]
        noise = bool(rng.random() < 0.5)
        # Background tint and noise come from their own seed, so `twin` can redraw the scene exactly.
        attrs = {"objects": objects, "background": background, "noise": noise,
                 "render_seed": int(rng.integers(2**32))}
        return self._example(attrs, rng)

    def _example(self, attrs: dict, rng: np.random.Generator) -> Example:
        objects, background = attrs["objects"], attrs["background"]
        image = render(objects, background, attrs["noise"], self.image_size, np.random.default_rng(attrs["render_seed"]))
        caption = _caption(objects, background, rng, self.shape_only)
        label = _LABEL[(objects[0]["color"], objects[0]["shape"])] if len(objects) == 1 else None
        return Example(image, caption, label, attrs)

    def twin(self, example: Example, rng: np.random.Generator) -> Example | None:
        """The same scene with one object's shape swapped for another of the split's pairs: a
        minimal pair that only shape tells apart (a contrast set, Gardner et al. 2020, arXiv
        2004.02709). Same positions, sizes, background and noise; a fresh caption. None when no
        object can change shape without leaving the split's pairs or repeating a pair."""
        pool = set(SEEN_PAIRS if self.split != "test_unseen" else HELDOUT_PAIRS)
        objects = example.attrs["objects"]
        taken = {(o["color"], o["shape"]) for o in objects}
        for k in rng.permutation(len(objects)):
            color = objects[k]["color"]
            shapes = [sh for sh in SHAPES if (color, sh) in pool and (color, sh) not in taken]
            if shapes:
                swapped = [dict(o) for o in objects]
                swapped[k]["shape"] = shapes[rng.integers(len(shapes))]
                return self._example({**example.attrs, "objects": swapped}, rng)
        return None
