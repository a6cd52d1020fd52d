"""scikit-learn's handwritten digits as a real-image caption data set.

`sklearn.datasets.load_digits`: 1,797 real 8x8 scans (UCI optdigits), grey levels 0-16, about
180 per class, shipped inside scikit-learn, so it works offline. Each image becomes an RGB PIL
image upscaled bilinearly to `image_size`, drawn as dark ink on white paper (the raw data is
light-on-dark): that is how handwriting looks in photos, the domain the captions describe.

The train/test split is stratified and seeded (per class, a fixed fraction goes to test), so
both splits have every digit in the data set's proportions and never share an image.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from vistas.training.data.types import Example

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPLITS = ("train", "test")
_TEMPLATES = (
    "a photo of the digit {name}",
    "a handwritten {digit}",
    "the number {name}",
    "a handwritten digit {name}",
    "a picture of the number {digit}",
    "the digit {digit}",
)
_PROMPTS = ("a photo of the digit {name}", "a handwritten {digit}", "the number {name}")


def class_names() -> list[str]:
    """["zero", ..., "nine"]: label i is digit i."""
    return list(NAMES)


def zero_shot_prompts(class_name: str) -> list[str]:
    """Prompts for one class, in the wording of the training captions (word and numeral)."""
    return [t.format(name=class_name, digit=NAMES.index(class_name)) for t in _PROMPTS]


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


class DigitsDataset:
    """One split of the digits, as `Example(image, caption, label=digit, attrs)`.

    size: None for the whole split; otherwise example i is split item i % n, so a train set
        larger than the split cycles through it (different shifts and captions per cycle
        when `shift` is on).
    shift: maximum random translation in pixels of the upscaled image, train split only
        (off by default); uncovered pixels are paper-white.
    """

    class_names = staticmethod(class_names)
    zero_shot_prompts = staticmethod(zero_shot_prompts)

    def __init__(self, split: str, size: int | None = None, image_size: int = 64, seed: int = 0,
                 shift: int = 0, test_fraction: float = 0.2):
        self.split, self.image_size, self.seed = split, image_size, seed
        self.indices = split_indices(split, seed, test_fraction)
        self.size = len(self.indices) if size is None else int(size)
        self.shift = shift if split == "train" else 0  # test images stay exactly as scanned

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        return (self[i] for i in range(self.size))

    def __getitem__(self, index: int) -> Example:
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} examples")
        images, labels = load_raw()
        j = int(self.indices[index % len(self.indices)])
        digit = int(labels[j])
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), index])
        img = Image.fromarray(images[j], "L").resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
        dx = dy = 0
        if self.shift:
            dx, dy = (int(v) for v in rng.integers(-self.shift, self.shift + 1, size=2))
            canvas = Image.new("L", img.size, 255)
            canvas.paste(img, (dx, dy))
            img = canvas
        caption = _TEMPLATES[rng.integers(len(_TEMPLATES))].format(name=NAMES[digit], digit=digit)
        return Example(img.convert("RGB"), caption, digit, {"digit": digit, "index": j, "shift": (dx, dy)})
