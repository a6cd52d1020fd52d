"""Digits from two sources as a caption data set: real handwriting and typeset digits.

"sklearn": `sklearn.datasets.load_digits`, 1,797 real 8x8 scans (UCI optdigits), grey levels
0-16, about 180 per class, shipped inside scikit-learn, so it works offline. Each image becomes
an RGB PIL image upscaled to `image_size` (bilinear; in training a filter drawn at random),
drawn as dark ink on white paper (the raw data is light-on-dark): how handwriting looks in
photos, the domain the captions describe. The train/test split is stratified and seeded (per
class, a fixed fraction goes to test), so both splits have every digit in the data set's
proportions and never share an image.

"typeset": the digit in one of `TYPESET_FONTS` (STIX and Computer Modern, which matplotlib
ships, and Pillow's own default font), at a random size, place, weight (text stroke) and
ink/paper grey level. The DejaVu fonts, which matplotlib ships too, are never used: they are
kept for evaluation (training/evals/). A model trained on the 8x8 scans alone scored 17-20 %
on typeset digits (issue 13).

Training mixes the sources (`sources={"sklearn": 0.5, "typeset": 0.5}`) and augments them
with named ops (`augment="affine(...)|stroke(...)|invert(p=0.3)"`, see augment.py).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vistas.training.data.augment import FILTERS, parse, resize_random
from vistas.training.data.types import Example

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPLITS = ("train", "test")
SOURCES = ("sklearn", "typeset")
_TEMPLATES = {
    "sklearn": (
        "a photo of the digit {name}",
        "a handwritten {digit}",
        "the number {name}",
        "a handwritten digit {name}",
        "a picture of the number {digit}",
        "the digit {digit}",
    ),
    "typeset": (
        "a photo of the digit {name}",
        "a printed {digit}",
        "the number {name}",
        "a printed digit {name}",
        "a picture of the number {digit}",
        "the digit {digit}",
    ),
}
# The templates the sources share: captions that say nothing of how the digit was made.
_NEUTRAL_TEMPLATES = tuple(t for t in _TEMPLATES["sklearn"] if t in _TEMPLATES["typeset"])
# A caption with one of these words is true only of its source's images.
_STYLE_WORDS = {"handwritten": "sklearn", "printed": "typeset"}
_PROMPTS = ("a photo of the digit {name}", "a handwritten {digit}", "the number {name}")

# matplotlib's mpl-data/fonts/ttf files with all ten digits as ordinary figures (cmmi10's are
# old-style, a 0 like an "o"; cmsy10, cmex10 and STIXNonUni have none), and "pillow" for
# `ImageFont.load_default` (Aileron Regular). Never a DejaVu font: those are for evaluation.
TYPESET_FONTS = ("STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
                 "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf", "pillow")
_GLYPH_PX = 64  # glyphs are rasterised once at this font size and scaled per example
TYPESET_STROKES = (0, 0, 1, 2)  # text stroke width at _GLYPH_PX (0 twice: regular weight is common)
TYPESET_HEIGHT = (0.55, 0.9)  # digit height, fraction of the side
TYPESET_SHIFT = 0.08  # largest offset of a typeset digit from the centre, fraction of the side
# Upscaling filters for the 8x8 scans in training ("box" and "nearest" would show 8x8 blocks).
_TRAIN_FILTERS = ("bilinear", "bicubic", "lanczos", "hamming")


def class_names() -> list[str]:
    """["zero", ..., "nine"]: label i is digit i."""
    return list(NAMES)


def zero_shot_prompts(class_name: str) -> list[str]:
    """Prompts for one class, in the wording of the training captions (word and numeral)."""
    return [t.format(name=class_name, digit=NAMES.index(class_name)) for t in _PROMPTS]


_DIGIT_RE = re.compile(rf"\b({'|'.join(NAMES)}|\d)\b")


def caption_describes(caption: str, attrs: dict) -> bool:
    """Is a caption of this data set true of the image with these attrs? It names the image's
    digit, and if it says "handwritten" or "printed", the image comes from that source."""
    m = _DIGIT_RE.search(caption)
    if m is None:
        return False
    word = m.group(1)
    digit = int(word) if word.isdigit() else NAMES.index(word)
    return digit == attrs["digit"] and all(src == attrs["source"] for w, src in _STYLE_WORDS.items() if w in caption)


@functools.lru_cache(maxsize=1)
def load_raw() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits: images uint8 (N, 8, 8) in 0..255 as dark ink on white, labels int64 (N,)."""
    from sklearn.datasets import load_digits  # lazy: importing sklearn costs ~1 s

    d = load_digits()
    ink = d.images / 16.0  # (N, 8, 8) in [0, 1], 1 = full ink
    images = np.round(255 * (1 - ink)).astype(np.uint8)
    return images, d.target.astype(np.int64)


def split_indices(split: str, seed: int = 0, test_fraction: float = 0.2) -> np.ndarray:
    """Indices into `load_raw()` for a split: stratified, a function of (seed, test_fraction) only."""
    if split not in SPLITS:
        raise ValueError(f"unknown digits split {split!r}; expected one of {list(SPLITS)}")
    _, labels = load_raw()
    rng = np.random.default_rng(seed)
    out = []
    for c in range(len(NAMES)):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(test_fraction * len(idx)))
        out.append(idx[:n_test] if split == "test" else idx[n_test:])
    return np.sort(np.concatenate(out))


def font_path(font: str) -> Path | None:
    """The file of a TYPESET_FONTS entry (None for Pillow's built-in default)."""
    if "dejavu" in font.lower():
        raise ValueError(f"{font}: DejaVu fonts are held out for evaluation, never used in training")
    if font == "pillow":
        return None
    import matplotlib  # lazy, and only for typeset digits: the fonts ship inside it

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / font
    if not path.is_file():
        raise FileNotFoundError(f"typeset digit font {path} is missing; TYPESET_FONTS names matplotlib's own")
    return path


@functools.lru_cache(maxsize=None)
def glyph(font: str, digit: int, stroke: int) -> np.ndarray:
    """The digit's ink coverage, cropped to its box: float32 (h, w) in [0, 1]."""
    path = font_path(font)
    face = ImageFont.load_default(size=_GLYPH_PX) if path is None else ImageFont.truetype(str(path), _GLYPH_PX)
    side = 2 * _GLYPH_PX
    img = Image.new("L", (side, side), 0)
    ImageDraw.Draw(img).text((side / 2, side / 2), str(digit), font=face, fill=255, anchor="mm",
                             stroke_width=stroke, stroke_fill=255)
    box = img.getbbox()
    assert box is not None, f"{font} drew nothing for {digit}"
    return np.asarray(img.crop(box), np.float32) / 255


def render_typeset(digit: int, font: str, image_size: int, rng: np.random.Generator) -> Image.Image:
    """One typeset digit, grey ink on grey paper, at a random height and place: "L" image."""
    ink = glyph(font, digit, TYPESET_STROKES[rng.integers(len(TYPESET_STROKES))])
    h = max(4, round(rng.uniform(*TYPESET_HEIGHT) * image_size))
    w = min(image_size - 2, max(1, round(ink.shape[1] * h / ink.shape[0])))
    mask = np.asarray(Image.fromarray(ink).resize((w, h), Image.Resampling.BILINEAR))  # (h, w) in [0, 1]
    # near the centre, like the scans (which fill their frame): small and off-centre digits slow a
    # tiny ViT down a lot (see TYPESET_HEIGHT); the affine op moves them further
    dx, dy = rng.uniform(-TYPESET_SHIFT, TYPESET_SHIFT, size=2) * image_size
    x = int(np.clip(round((image_size - w) / 2 + dx), 1, image_size - w - 1))  # whole, with a pixel of paper
    y = int(np.clip(round((image_size - h) / 2 + dy), 1, image_size - h - 1))
    paper, tone = rng.uniform(180, 255), rng.uniform(0, 80)  # at least 100 levels of contrast
    pixels = np.full((image_size, image_size), paper, np.float32)
    pixels[y : y + h, x : x + w] += (tone - paper) * np.clip(mask, 0, 1)
    return Image.fromarray(np.round(pixels).astype(np.uint8))


class DigitsDataset:
    """One split of the digits, as `Example(image, caption, label=digit, attrs)`.

    size: None for the whole sklearn split; otherwise example i is split item i % n of the
        scans (a train set larger than the split cycles through it, with different
        augmentations and captions per cycle), or a typeset digit.
    sources: {"sklearn": weight, "typeset": weight}; example i's source is drawn by weight.
        Default sklearn only, so the test split is exactly the held-out scans.
    augment: an augmentation spec (augment.parse) applied after the resize to `image_size`.
    style_words: False leaves "handwritten" and "printed" out of the captions (the templates
        both sources share).
        In the train split the scans are also upscaled with a filter drawn at random.
    """

    class_names = staticmethod(class_names)
    zero_shot_prompts = staticmethod(zero_shot_prompts)

    def __init__(self, split: str, size: int | None = None, image_size: int = 64, seed: int = 0,
                 test_fraction: float = 0.2, sources: dict[str, float] | None = None, augment=None,
                 style_words: bool = True):
        self.split, self.image_size, self.seed = split, image_size, seed
        self.style_words = style_words
        self.indices = split_indices(split, seed, test_fraction)
        self.size = len(self.indices) if size is None else int(size)
        sources = sources or {"sklearn": 1.0}
        unknown = set(sources) - set(SOURCES)
        if unknown or any(w < 0 for w in sources.values()) or sum(sources.values()) <= 0:
            raise ValueError(f"digits sources {sources!r}: weights >= 0 (not all 0) for names in {SOURCES}")
        self.sources = list(sources)
        w = np.asarray(list(sources.values()), np.float64)
        self._source_p = w / w.sum()
        self.augment = parse(augment)
        if "typeset" in self.sources:
            for font in TYPESET_FONTS:
                font_path(font)  # fail now, not mid-run, when matplotlib's fonts are missing
        self._filters = [FILTERS[f] for f in (_TRAIN_FILTERS if split == "train" else ("bilinear",))]

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        return (self[i] for i in range(self.size))

    def __getitem__(self, index: int) -> Example:
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} examples")
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), index])
        k = 0 if len(self.sources) == 1 else rng.choice(len(self.sources), p=self._source_p)
        source = self.sources[k]
        if source == "sklearn":
            images, labels = load_raw()
            j = int(self.indices[index % len(self.indices)])
            digit = int(labels[j])
            img = resize_random(Image.fromarray(images[j]), (self.image_size, self.image_size), rng, self._filters)
            attrs = {"digit": digit, "source": source, "index": j}
        else:
            digit = int(rng.integers(len(NAMES)))
            font = TYPESET_FONTS[rng.integers(len(TYPESET_FONTS))]
            img = render_typeset(digit, font, self.image_size, rng)
            attrs = {"digit": digit, "source": source, "font": font}
        templates = _TEMPLATES[source] if self.style_words else _NEUTRAL_TEMPLATES
        caption = templates[rng.integers(len(templates))].format(name=NAMES[digit], digit=digit)
        img = self.augment(img.convert("RGB"), rng)
        return Example(img, caption, digit, attrs)
