"""The "shapes" data set: procedural colored shapes with attribute captions (this project's own).

Every example is a pure function of (seed, split, index), so runs are reproducible without
storing a single image, and a resumed run sees the same data.

An image holds 1-3 objects, each a color x shape at a continuous size, position and (where the
shape allows) rotation, on a background of any grey level and a low-contrast texture. The
drawing varies so that a model learns the concepts rather than one generator (issue 13: a model
trained on objects snapped to the 8-pixel patch grid, in two size bands, one rasteriser and
two background levels scored 99.7 % on its own test images and ~20-25 % on shapes drawn with
plain PIL): each image is drawn on a canvas of 32-160 pixels and resized to `image_size` with
a filter drawn at random (drawn large and shrunk = antialiased, drawn small or with "nearest"
= aliased), objects are filled or outlined with a varied stroke, colors are jittered around
each name (`PALETTES`), and shapes vary in proportion (`FORMS`). `Style` holds these ranges.

Compositional generalisation is the point of the held-out split: `HELDOUT_PAIRS` names one
color x shape pair per color and per shape (a Latin-square diagonal), so every color and
every shape is still seen in training, but those combinations never appear in a training
image or caption. `test_unseen` asks the model to recognise them zero-shot, among ALL pairs.

    ds = ShapesDataset("train", size=10_000)
    ds[0].image, ds[0].caption  # (64x64 RGB PIL image, "a photo of a small red circle")
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from vistas.training.data.augment import FILTERS, Pipeline, parse, resize_random
from vistas.training.data.types import Example

# The color each name stands for: saturated and far apart in hue (min pairwise RGB distance
# > 90), unlike any background. Objects are drawn in jittered versions of these (`PALETTES`).
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 230),
    "yellow": (245, 220, 40),
    "purple": (150, 60, 200),
    "orange": (250, 125, 10),
}
# Where each name's jittered colors come from: (hue degrees, saturation, value) ranges in HSV.
# They include what other programs call these names (PIL/CSS "green" is (0, 128, 0), "purple"
# (128, 0, 128), "orange" (255, 165, 0)); a sample is kept only if it is nearer its own name than
# any other in CIELAB (by COLOR_MARGIN) and in RGB, so a jittered "orange" never reads as yellow.
COLOR_BOXES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "red": ((-12, 8), (0.6, 1.0), (0.55, 1.0)),
    "green": ((95, 150), (0.55, 1.0), (0.4, 0.9)),
    "blue": ((205, 245), (0.55, 1.0), (0.5, 1.0)),
    "yellow": ((47, 62), (0.65, 1.0), (0.8, 1.0)),
    "purple": ((265, 305), (0.5, 1.0), (0.4, 0.85)),
    "orange": ((20, 40), (0.75, 1.0), (0.85, 1.0)),
}
COLOR_MARGIN = 5.0  # CIELAB delta E (CIE76); about two just-noticeable differences
PALETTE_SIZE = 512
SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
# Radius as a fraction of the image side. Sizes are continuous; a caption says "small" or
# "large" only for a radius inside these bands, which are 1.375x apart, so the words keep
# their meaning and in-between objects go without one.
SIZES: dict[str, tuple[float, float]] = {"small": (0.10, 0.16), "large": (0.22, 0.36)}
# Background grey level (0-255) bands a caption may name; levels in the gaps go unnamed.
# Textures are low contrast (gradient +-30 levels, stripes +-15, checker +-12, noise std <= 10),
# so the name holds across the image.
BACKGROUNDS: dict[str, tuple[int, int]] = {"dark": (0, 70), "grey": (100, 155), "light": (185, 255)}
TEXTURES = ("flat", "gradient", "noise", "stripes", "checker")

_COLOR_NAMES = tuple(COLORS)
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

# The proportion each shape varies in, as a range sampled per object (None: it has none):
# triangle: half-base / height (isosceles: 0.58 is equilateral, 0.5 PIL's (x-r, y+r),
# (x, y-r), (x+r, y+r)); star: inner / outer radius of its 5 points; cross: arm half-width;
# diamond: width / height (1.0 is a square standing on a corner).
FORMS: dict[str, tuple[float, float] | None] = {
    "circle": None, "square": None, "triangle": (0.42, 0.8), "star": (0.36, 0.55),
    "cross": (0.24, 0.42), "diamond": (0.55, 1.0),
}
# Rotation, degrees either way. The rule that keeps the classes apart: a square's sides stay
# within 15 deg of the axes, and a diamond (width/height <= 1, turned at most 8 deg) has its
# sides at least atan(0.55) - 8 = 20.8 deg from both axes, so no square looks like a diamond
# nor the reverse. A cross stays upright ("+", not "x"). Triangles and stars have no other
# class to turn into; a circle's rotation is invisible.
MAX_ROTATION_DEG: dict[str, float] = {
    "circle": 0, "square": 15, "diamond": 8, "cross": 20, "triangle": 180, "star": 180,
}
REACH = 1.21  # no vertex is farther than this x radius from the center (square: 0.85 sqrt 2 = 1.202)
MIN_RADIUS_PX = 5  # on the canvas: a smaller star or cross is a blob, whatever its caption says
TEXTURE_SIDE = 96  # twice the bundled model's input: texture finer than that would average away

_SINGLE_TEMPLATES = ("{o}", "a photo of {o}", "an image of {o}", "a picture of {o}")
_MULTI_TEMPLATES = ("{o}", "a photo of {o}", "an image with {o}")
_BACKGROUND_TEMPLATES = ("{o} on a {bg} background", "a photo of {o} on a {bg} background")
_PROMPTS = ("{o}", "a photo of {o}", "an image of {o}")


@dataclass(frozen=True)
class Style:
    """How the shapes are drawn; every range is sampled per image or per object.

    radius: object radius range, fraction of the side (a multi-object image caps it at
        0.42 / sqrt(n), so n objects fit).
    draw_size: canvas side range in pixels (log-uniform), before the resize to `image_size`;
        raised per image so the smallest object spans MIN_RADIUS_PX.
    filters: resize filters (augment.FILTERS names), one drawn per image.
    outline: probability that an object is outlined rather than filled.
    stroke: outline width range, fraction of the radius (never under 1.5 output pixels).
    textures: background textures, one drawn per image (TEXTURES).
    position_grid: 0 places centers anywhere; g > 0 on the centers of g-pixel cells, as the
        generator before issue 13 did (g = 8, the patch size).
    rotation: scales every shape's MAX_ROTATION_DEG (0: upright).
    forms: False draws every shape at the middle of its FORMS range (one proportion per shape).
    levels: background grey level range (0-255).
    jitter: False draws objects in the COLORS prototypes instead of the jittered PALETTES.
    The last four exist to find which variation slows learning (ablations); the defaults vary all.
    """

    radius: tuple[float, float] = (0.10, 0.36)
    draw_size: tuple[int, int] = (32, 160)
    filters: tuple[str, ...] = tuple(FILTERS)
    outline: float = 0.3
    stroke: tuple[float, float] = (0.12, 0.35)
    textures: tuple[str, ...] = TEXTURES
    position_grid: int = 0
    rotation: float = 1.0
    forms: bool = True
    levels: tuple[float, float] = (0, 255)
    jitter: bool = True

    def __post_init__(self):
        if not 0 < self.radius[0] <= self.radius[1] <= 0.4:
            raise ValueError(f"Style.radius {self.radius} must be 0 < low <= high <= 0.4 (fractions of the side)")
        if not 8 <= self.draw_size[0] <= self.draw_size[1]:
            raise ValueError(f"Style.draw_size {self.draw_size} must be 8 <= low <= high pixels")
        bad = [t for t in self.textures if t not in TEXTURES] + [f for f in self.filters if f not in FILTERS]
        if bad or not self.textures or not self.filters:
            raise ValueError(f"Style: unknown or missing textures/filters {bad}; known: {TEXTURES}, {tuple(FILTERS)}")
        if not 0 <= self.outline <= 1:
            raise ValueError(f"Style.outline is a probability, got {self.outline}")
        if not 0 <= self.rotation <= 1:
            raise ValueError(f"Style.rotation scales MAX_ROTATION_DEG, in [0, 1]; got {self.rotation}")
        if not 0 <= self.levels[0] <= self.levels[1] <= 255:
            raise ValueError(f"Style.levels {self.levels} must be 0 <= low <= high <= 255")


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) sRGB 0-255 -> (..., 3) CIELAB (D65)."""
    c = np.asarray(rgb, np.float64) / 255
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = c @ m.T / np.array([0.9505, 1.0, 1.089])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Degrees, [0, 1], [0, 1] -> (N, 3) in [0, 1]."""
    h = (h % 360) / 60
    i, f = np.floor(h).astype(int) % 6, h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return np.stack([np.choose(i, [v, q, p, p, t, v]), np.choose(i, [t, v, v, q, p, p]),
                     np.choose(i, [p, p, t, v, v, q])], -1)


def _palettes() -> dict[str, np.ndarray]:
    """PALETTE_SIZE jittered colors per name, each nearer its own name (see COLOR_BOXES)."""
    rng = np.random.default_rng(13)  # fixed: the palettes are constants, not data
    protos = np.array(list(COLORS.values()), float)  # (C, 3)
    lab = srgb_to_lab(protos)
    out = {}
    for k, (name, (hue, sat, val)) in enumerate(COLOR_BOXES.items()):
        n = 8 * PALETTE_SIZE
        rgb = np.round(255 * _hsv_to_rgb(rng.uniform(*hue, n), rng.uniform(*sat, n), rng.uniform(*val, n)))
        d_lab = np.linalg.norm(srgb_to_lab(rgb)[:, None] - lab[None], axis=-1)  # (n, C)
        d_rgb = np.linalg.norm(rgb[:, None] - protos[None], axis=-1)
        keep = (np.delete(d_lab, k, 1).min(1) - d_lab[:, k] >= COLOR_MARGIN) & (d_rgb.argmin(1) == k)
        assert keep.sum() >= PALETTE_SIZE, f"COLOR_BOXES[{name!r}] is mostly nearer other names"
        out[name] = rgb[keep][:PALETTE_SIZE].astype(np.uint8)
    return out


PALETTES: dict[str, np.ndarray] = _palettes()


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


def _band(value: float, bands: dict) -> str | None:
    return next((name for name, (lo, hi) in bands.items() if lo <= value <= hi), None)


def size_word(radius_fraction: float) -> str | None:
    """"small", "large" or None (in between: no word fits clearly)."""
    return _band(radius_fraction, SIZES)


def background_word(level: float) -> str | None:
    """"dark", "grey", "light" or None for a background grey level."""
    return _band(level, BACKGROUNDS)


def polygon(shape: str, form: float | None, angle: float) -> np.ndarray:
    """(V, 2) vertices for unit radius, rotated by `angle` radians, y pointing down."""
    if shape == "square":
        pts = np.array([(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)])
    elif shape == "diamond":
        pts = np.array([(0, -1.15), (1.15 * form, 0), (0, 1.15), (-1.15 * form, 0)])
    elif shape == "triangle":  # isosceles, apex up, base corners on the circle of radius 1.15
        h = 1.15 / math.hypot(form, 0.5)
        pts = np.array([(0, -h / 2), (form * h, h / 2), (-form * h, h / 2)])
    elif shape == "star":
        a = np.radians(np.arange(-90, 270, 36))  # (10,) outer and inner points alternate
        r = np.where(np.arange(10) % 2 == 0, 1.15, 1.15 * form)
        pts = np.stack([r * np.cos(a), r * np.sin(a)], -1)
    elif shape == "cross":
        w, e = form, 1.05
        pts = np.array([(-w, -e), (w, -e), (w, -w), (e, -w), (e, w), (w, w), (w, e), (-w, e),
                        (-w, w), (-e, w), (-e, -w), (-w, -w)])
    else:
        raise ValueError(f"{shape!r} has no polygon; shapes: {SHAPES}")
    c, s = math.cos(angle), math.sin(angle)
    return pts @ np.array([[c, s], [-s, c]])


def _geometry(shape: str, rng: np.random.Generator, style: Style | None = None) -> tuple[float, float | None]:
    """(angle in radians, form) for one object of `shape`."""
    style = style or Style()
    angle = math.radians(rng.uniform(-1, 1) * MAX_ROTATION_DEG[shape] * style.rotation)
    form = FORMS[shape]
    if not form:
        return angle, None
    drawn = float(rng.uniform(*form))  # drawn either way: the other draws stay where they were
    return angle, (drawn if style.forms else (form[0] + form[1]) / 2)


def _place(rng: np.random.Generator, radii: list[float], size: int, grid: int = 0,
           tries: int = 30) -> list[np.ndarray | None]:
    """Centers inside the image, objects touching at most, never covering another's middle;
    None for an object that found no room (it is then left out of image and caption).

    grid > 0 puts centers on the centers of a grid of `grid`-pixel cells."""
    placed: list[tuple[np.ndarray, float]] = []
    out = []
    for r in radii:
        lo, hi = REACH * r, size - REACH * r
        if grid:
            cells = np.arange(grid / 2, size, grid)
            cells = cells[(cells >= lo) & (cells <= hi)]
            if not len(cells):  # too big for any cell center: the image center is the only spot
                cells = np.array([size / 2])
        for _ in range(tries):
            c = cells[rng.integers(len(cells), size=2)] if grid else rng.uniform(lo, hi, size=2)
            # 0.9 (r + pr): touching, not stacked; the second term keeps a big object's corners
            # off a small one's middle (sizes vary 3.6x).
            if all(np.hypot(*(c - pc)) >= max(0.9 * (r + pr), REACH * max(r, pr) + 0.5 * min(r, pr))
                   for pc, pr in placed):
                placed.append((c, r))
                out.append(c)
                break
        else:
            out.append(None)
    return out


def _object_phrase(obj: dict, rng: np.random.Generator, color: bool = True) -> str:
    sized = obj["size"] is not None and rng.random() < 0.5
    words = ([obj["size"]] if sized else []) + ([obj["color"]] if color else []) + [obj["shape"]]
    return with_article(" ".join(words))


def _caption(objects: list[dict], background: str | None, rng: np.random.Generator, shape_only: float = 0.0) -> str:
    color = not (shape_only and rng.random() < shape_only)
    phrases = [_object_phrase(o, rng, color) for o in objects]
    listing = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    templates = _SINGLE_TEMPLATES if len(objects) == 1 else _MULTI_TEMPLATES
    if background is not None:
        templates += _BACKGROUND_TEMPLATES
    return templates[rng.integers(len(templates))].format(o=listing, bg=background)


_OBJECT_RE = re.compile(
    rf"\b(?:({'|'.join(SIZES)}) )?(?:({'|'.join(COLORS)}) )?({'|'.join(SHAPES)})\b"
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
    it was written for: with 36 color x shape pairs, a batch holds several of each. An object
    of in-between size (size None) fits no size word; an unnamed background fits no name.
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


def _background(level: float, kind: str, side: int, rng: np.random.Generator) -> Image.Image:
    """A (side, side) RGB background around grey `level`, tinted by at most +-10 per channel
    (low saturation, so it never reads as an object color), with a low-contrast texture `kind`.
    Textures are computed at most TEXTURE_SIDE pixels across and enlarged (half the cost)."""
    base = level + rng.integers(-10, 11, size=3)  # (3,)
    if kind == "flat":
        return Image.new("RGB", (side, side), tuple(int(v) for v in np.clip(np.round(base), 0, 255)))
    full, side = side, min(side, TEXTURE_SIDE)
    if kind == "noise":  # grain from pixel-sized to a few pixels across
        grains = int(rng.integers(max(2, side // 6), side + 1))
        coarse = rng.normal(0, rng.uniform(3, 10), size=(grains, grains)).astype(np.float32)
        field = np.asarray(Image.fromarray(coarse).resize((side, side), Image.Resampling.BILINEAR))
    else:
        theta = rng.uniform(0, 2 * math.pi)
        c, s = math.cos(theta), math.sin(theta)
        x = np.arange(side, dtype=np.float32)
        if kind == "checker":
            cell = rng.uniform(3, 16)
            parity = (x[None, :] // cell + x[:, None] // cell) % 2  # (S, S)
            field = rng.uniform(4, 12) * (2 * parity - 1)
        else:
            along = x[None, :] * c + x[:, None] * s  # (S, S) pixels along theta
            if kind == "gradient":  # along spans side (|c| + |s|), centred on side (c + s) / 2
                field = rng.uniform(8, 30) * (2 * along / side - (c + s)) / (abs(c) + abs(s))
            else:
                field = rng.uniform(4, 15) * np.sign(np.sin(2 * math.pi * along / rng.uniform(3, 16)))
    # The field is well within +-127 levels: store it around 128 in one byte per pixel, and let a lookup
    # table move it to each channel's base (three times cheaper than float RGB).
    grey = np.clip(field + 128.5, 0, 255).astype(np.uint8)  # (S, S)
    lut = np.clip(np.round(np.arange(256)[:, None] - 128 + base[None, :]), 0, 255).astype(np.uint8)  # (256, 3)
    img = Image.fromarray(lut[grey])  # (S, S, 3)
    return img if side == full else img.resize((full, full), Image.Resampling.BILINEAR)


def render(attrs: dict, image_size: int, style: Style, augment: Pipeline, rng: np.random.Generator) -> Image.Image:
    """A scene's attrs -> (image_size, image_size) RGB PIL image: background and objects on a
    `draw_size` canvas, resized with a random filter, then the augmentation ops."""
    side = attrs["draw_size"]
    scale = side / image_size
    img = _background(attrs["level"], attrs["texture"], side, rng)
    draw = ImageDraw.Draw(img)
    for o in attrs["objects"]:
        color = tuple(int(v) for v in o["rgb"])
        center, radius = np.asarray(o["center"]) * scale, o["radius"] * scale
        width = max(1, round(o["outline"] * radius)) if o["outline"] else 0
        fill, outline = (None, color) if width else (color, None)
        if o["shape"] == "circle":
            x, y = center
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill, outline=outline, width=width)
        else:
            pts = polygon(o["shape"], o["form"], o["angle"]) * radius + center  # (V, 2) placed
            draw.polygon([tuple(p) for p in pts], fill=fill, outline=outline, width=width)
    filters = [FILTERS[f] for f in style.filters]
    return augment(resize_random(img, (image_size, image_size), rng, filters), rng)


class ShapesDataset:
    """`size` examples of one split; example i is a pure function of (seed, split, i).

    train:       1..max_objects objects per image, pairs from SEEN_PAIRS only; label is the
                 class index for single-object images, else None. A `shape_only` fraction of
                 captions leave the colors out ("a photo of a star and a small circle").
    test_seen:   one object, seen pairs, cycling through them so classes are balanced.
    test_unseen: one object, HELDOUT_PAIRS, cycling likewise.

    style: a `Style` or a dict of its fields (how the scenes are drawn); augment: an
    augmentation spec (`augment.parse`) run on every image after the resize.
    size_words / background_words: False keeps "small"/"large" / "on a dark background" out of
    the captions (the attrs still hold size and background).
    """

    class_names = staticmethod(class_names)
    zero_shot_prompts = staticmethod(zero_shot_prompts)

    def __init__(self, split: str, size: int, image_size: int = 64, seed: int = 0, max_objects: int = 3,
                 shape_only: float = 0.0, style: Style | dict | None = None, augment=None,
                 size_words: bool = True, background_words: bool = True):
        if split not in SPLITS:
            raise ValueError(f"unknown shapes split {split!r}; expected one of {list(SPLITS)}")
        if not 1 <= max_objects <= len(SHAPES):
            raise ValueError(f"max_objects must be in 1..{len(SHAPES)}, got {max_objects}")
        if image_size < 16:
            raise ValueError(f"image_size {image_size} is too small to draw shapes; use >= 16")
        if not 0 <= shape_only <= 1:
            raise ValueError(f"shape_only is a fraction of captions, in [0, 1]; got {shape_only}")
        self.split, self.size, self.image_size, self.seed = split, int(size), image_size, seed
        if isinstance(style, dict):
            known = [f.name for f in dataclasses.fields(Style)]
            if set(style) - set(known):
                raise ValueError(f"unknown Style fields {sorted(set(style) - set(known))}; known: {known}")
            style = Style(**{k: tuple(v) if isinstance(v, list) else v for k, v in style.items()})
        self.style = style or Style()
        self.augment = parse(augment)
        # Color is the easy signal: with colors always named, a contrastive model matches captions
        # by color within minutes and learns shape slowly (55 % zero-shot on seen pairs after 1,500
        # steps), because shape only separates the few same-color negatives of a batch. Captions
        # that name shapes alone make shape the only signal for their pairs. At 0.5, the bundled
        # recipe (configs/siglip_shapes_digits.py) reached 99.7 % where it had 55.6 %, and a
        # 600-step probe of it 69 % where it had 23 % (0.3: 43 %).
        self.shape_only = shape_only
        # Words for attributes a caption may name besides color and shape. A caption that names a
        # size or background is false of the same shape at another size or on another background,
        # so early in training, before the model sees sizes and backgrounds, those negatives pull
        # against the shape (the digits' "handwritten"/"printed" did the same; see the recipe).
        self.size_words, self.background_words = size_words, background_words
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
        st, s = self.style, self.image_size
        fractions = rng.uniform(st.radius[0], min(st.radius[1], max(st.radius[0], 0.42 / math.sqrt(len(pairs)))),
                                size=len(pairs))
        centers = _place(rng, list(fractions * s), s, st.position_grid)
        objects = []
        for (color, shape), frac, ctr in zip(pairs, fractions, centers):
            angle, form = _geometry(shape, rng, st)
            pick = rng.integers(PALETTE_SIZE)  # drawn either way: the other draws stay where they were
            rgb = PALETTES[color][pick] if st.jitter else COLORS[color]
            outline = float(max(rng.uniform(*st.stroke), 1.5 / (frac * s))) if rng.random() < st.outline else 0.0
            if ctr is not None:
                objects.append({"color": color, "shape": shape, "size": size_word(frac), "radius": float(frac * s),
                                "center": (float(ctr[0]), float(ctr[1])), "angle": angle, "form": form,
                                "rgb": tuple(int(v) for v in rgb), "outline": outline})
        assert objects, "the first object always fits in an empty image"
        side = math.exp(rng.uniform(math.log(st.draw_size[0]), math.log(st.draw_size[1])))
        side = max(side, MIN_RADIUS_PX * s / min(o["radius"] for o in objects))
        level = float(rng.uniform(*st.levels))
        # The texture's pixels, the resize filter and the augmentation come from their own seed,
        # so `twin` can redraw the scene exactly.
        attrs = {"objects": objects, "background": background_word(level), "level": level,
                 "texture": st.textures[rng.integers(len(st.textures))], "draw_size": int(round(side)),
                 "render_seed": int(rng.integers(2**32))}
        return self._example(attrs, rng)

    def _example(self, attrs: dict, rng: np.random.Generator) -> Example:
        objects = attrs["objects"]
        image = render(attrs, self.image_size, self.style, self.augment, np.random.default_rng(attrs["render_seed"]))
        said = objects if self.size_words else [{**o, "size": None} for o in objects]
        caption = _caption(said, attrs["background"] if self.background_words else None, rng, self.shape_only)
        label = _LABEL[(objects[0]["color"], objects[0]["shape"])] if len(objects) == 1 else None
        return Example(image, caption, label, attrs)

    def twin(self, example: Example, rng: np.random.Generator) -> Example | None:
        """The same scene with one object's shape swapped for another of the split's pairs: a
        minimal pair that only shape tells apart (a contrast set, Gardner et al. 2020, arXiv
        2004.02709). Same positions, sizes, colors, strokes, background, filter and
        augmentation; the new shape gets its own rotation and proportion (their ranges differ
        per shape); a fresh caption. None when no object can change shape without leaving the
        split's pairs or repeating a pair."""
        pool = set(SEEN_PAIRS if self.split != "test_unseen" else HELDOUT_PAIRS)
        objects = example.attrs["objects"]
        taken = {(o["color"], o["shape"]) for o in objects}
        for k in rng.permutation(len(objects)):
            color = objects[k]["color"]
            shapes = [sh for sh in SHAPES if (color, sh) in pool and (color, sh) not in taken]
            if shapes:
                swapped = [dict(o) for o in objects]
                shape = shapes[rng.integers(len(shapes))]
                angle, form = _geometry(shape, rng, self.style)
                swapped[k].update(shape=shape, angle=angle, form=form)
                return self._example({**example.attrs, "objects": swapped}, rng)
        return None
