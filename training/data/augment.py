"""Named augmentation ops, composed from a spec: big_vision's preprocessing ops, for PIL images.

A spec is ops joined by "|", each `name` or `name(args)` with Python literals as arguments
(parsed with `ast`, never `eval`); or a dict {"op": name, **kwargs}; or a list of either:

    pipeline = parse("affine(rotate=15, translate=0.08)|blur(sigma=(0.3, 1.0), p=0.3)|invert(p=0.3)")
    img = pipeline(img, rng)

Every op also takes `p`, the probability that it applies (default 1). An op draws all its
randomness from the `rng` it is handed, so an augmented example stays a pure function of the
generator's seed (a data set hands each example its own rng). A range is (low, high),
sampled uniformly; a single number x where a symmetric range is meant stands for (-x, x).
Ops act on the image as they get it: data sets apply them after resizing to `image_size`, so
pixel arguments (sigma, stroke width) are pixels of the model's input.

Adding an op: a function that takes the op's arguments, checks them, and returns
`(img, rng) -> img`, decorated with `@register("name")`.
"""

from __future__ import annotations

import ast
import inspect
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter, ImageOps

OpFn = Callable[[Image.Image, np.random.Generator], Image.Image]
OPS: dict[str, Callable[..., OpFn]] = {}

# Resize filters by name; "nearest" is the aliased one, the others antialias when shrinking.
FILTERS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def register(name: str) -> Callable[[Callable[..., OpFn]], Callable[..., OpFn]]:
    """Decorator: add an op factory under `name`; a name is registered once."""

    def add(factory: Callable[..., OpFn]) -> Callable[..., OpFn]:
        if name in OPS:
            raise ValueError(f"augmentation op {name!r} is already registered ({OPS[name]!r})")
        OPS[name] = factory
        return factory

    return add


def _range(op: str, arg: str, value, symmetric: bool = False, lo: float = -math.inf,
           hi: float = math.inf) -> tuple[float, float]:
    """A (low, high) argument, checked: `x` means (-x, x) for symmetric ranges, (x, x) otherwise."""
    if isinstance(value, (int, float)):
        value = (-abs(value), abs(value)) if symmetric else (value, value)
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)):
        raise ValueError(f"{op}({arg}=...) takes a number or a (low, high) pair, got {value!r}")
    a, b = float(value[0]), float(value[1])
    if not lo <= a <= b <= hi:
        raise ValueError(f"{op}({arg}={value!r}) needs {lo} <= low <= high <= {hi}")
    return a, b


def _filters(op: str, names: Sequence[str]) -> list[Image.Resampling]:
    unknown = [n for n in names if n not in FILTERS]
    if not names or unknown:
        raise ValueError(f"{op}: unknown resize filters {unknown or names!r}; known: {list(FILTERS)}")
    return [FILTERS[n] for n in names]


def resize_random(img: Image.Image, size: tuple[int, int], rng: np.random.Generator,
                  filters: Sequence[Image.Resampling]) -> Image.Image:
    """Resize with a filter drawn from `filters` (one rng draw even when the size is unchanged)."""
    f = filters[rng.integers(len(filters))]
    return img if img.size == tuple(size) else img.resize(size, f)


def paper_color(img: Image.Image) -> tuple[int, ...]:
    """The median colour of the image border: the background that pixels moved in should show."""
    a = np.asarray(img)
    border = np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]])  # (2W + 2H - 4, C) or (N,)
    med = np.median(border, axis=0)
    return tuple(int(v) for v in np.atleast_1d(med)) if a.ndim == 3 else int(med)


# ---------------------------------------------------------------- ops


@register("affine")
def affine(rotate=0.0, scale=(1.0, 1.0), shear=0.0, translate=0.0) -> OpFn:
    """Rotate by up to `rotate` degrees, scale in `scale`, shear by up to `shear` degrees (x),
    shift by up to `translate` x the side, about the centre; uncovered pixels take the border's
    median colour (the paper)."""
    rot = _range("affine", "rotate", rotate, symmetric=True, lo=-180, hi=180)
    sc = _range("affine", "scale", scale, lo=0.1, hi=10)
    sh = _range("affine", "shear", shear, symmetric=True, lo=-60, hi=60)
    tr = _range("affine", "translate", translate, symmetric=True, lo=-0.5, hi=0.5)

    def apply(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        a, s = math.radians(rng.uniform(*rot)), rng.uniform(*sc)
        k = math.tan(math.radians(rng.uniform(*sh)))
        dx, dy = rng.uniform(*tr, size=2) * np.array(img.size)
        # forward map about the centre: p' = R S H (p - c) + c + t; PIL wants the inverse
        m = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) @ np.array([[s, s * k], [0, s]])
        inv = np.linalg.inv(m)
        c = np.array(img.size) / 2
        offset = c - inv @ (c + np.array([dx, dy]))
        data = (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1])
        return img.transform(img.size, Image.Transform.AFFINE, data, Image.Resampling.BILINEAR,
                             fillcolor=paper_color(img))

    return apply


@register("stroke")
def stroke(width=(-1, 1)) -> OpFn:
    """Thicken (width > 0) or thin (< 0) the ink by an integer number of pixels per side, drawn
    from `width`: a min/max filter. The ink is whatever is farther from the border's colour, so
    dark-on-light and light-on-dark both work."""
    lo, hi = _range("stroke", "width", width, lo=-4, hi=4)
    if lo != int(lo) or hi != int(hi):
        raise ValueError(f"stroke(width={width!r}) takes whole pixels")

    def apply(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        k = int(rng.integers(int(lo), int(hi) + 1))
        if k == 0:
            return img
        dark_ink = np.mean(paper_color(img)) >= np.asarray(img).mean()
        thicken = ImageFilter.MinFilter if dark_ink else ImageFilter.MaxFilter
        thin = ImageFilter.MaxFilter if dark_ink else ImageFilter.MinFilter
        return img.filter((thicken if k > 0 else thin)(2 * abs(k) + 1))

    return apply


@register("blur")
def blur(sigma=(0.3, 1.2)) -> OpFn:
    """Gaussian blur with a standard deviation (pixels) drawn from `sigma`."""
    lo, hi = _range("blur", "sigma", sigma, lo=0, hi=20)
    return lambda img, rng: img.filter(ImageFilter.GaussianBlur(rng.uniform(lo, hi)))


@register("invert")
def invert() -> OpFn:
    """Negative image: dark ink on white becomes white ink on black."""
    return lambda img, rng: ImageOps.invert(img)


@register("downup")
def downup(scale=(0.3, 0.8), filters=("nearest", "box", "bilinear", "bicubic")) -> OpFn:
    """Lose resolution: shrink to `scale` x the side and enlarge back, each with a filter drawn
    from `filters` (a low-resolution photo, upscaled)."""
    lo, hi = _range("downup", "scale", scale, lo=0.05, hi=1)
    fs = _filters("downup", filters)

    def apply(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        s = rng.uniform(lo, hi)
        small = resize_random(img, (max(1, round(img.width * s)), max(1, round(img.height * s))), rng, fs)
        return resize_random(small, img.size, rng, fs)

    return apply


@register("noise")
def noise(sigma=(2.0, 8.0)) -> OpFn:
    """Grey Gaussian pixel noise (the same in every channel, so hues keep), std drawn from `sigma`."""
    lo, hi = _range("noise", "sigma", sigma, lo=0, hi=128)

    def apply(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        a = np.asarray(img, np.float32)
        grain = rng.normal(0, rng.uniform(lo, hi), size=a.shape[:2])  # (H, W)
        a = a + (grain[..., None] if a.ndim == 3 else grain)
        return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), img.mode)

    return apply


@register("jpeg")
def jpeg(quality=(30, 90)) -> OpFn:
    """JPEG round trip at a quality drawn from `quality`: block artefacts and colour bleeding."""
    lo, hi = _range("jpeg", "quality", quality, lo=1, hi=100)

    def apply(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(rng.integers(int(lo), int(hi) + 1)))
        return Image.open(io.BytesIO(buf.getvalue())).convert(img.mode)

    return apply


@register("contrast")
def contrast(factor=(0.5, 1.0)) -> OpFn:
    """Scale every pixel's distance from the mean grey by a factor drawn from `factor` (< 1: faded
    ink on grey paper)."""
    lo, hi = _range("contrast", "factor", factor, lo=0, hi=4)

    def apply(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        a = np.asarray(img, np.float32)
        a = a.mean() + rng.uniform(lo, hi) * (a - a.mean())
        return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), img.mode)

    return apply


# ---------------------------------------------------------------- pipelines


@dataclass(frozen=True)
class Op:
    name: str
    fn: OpFn
    p: float
    spec: str

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        if self.p < 1 and rng.random() >= self.p:
            return img
        return self.fn(img, rng)


@dataclass(frozen=True)
class Pipeline:
    """Ops applied in order; `spec` is the canonical "a(...)|b(...)" form, for logs and configs."""

    ops: tuple[Op, ...] = ()

    @property
    def spec(self) -> str:
        return "|".join(op.spec for op in self.ops)

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        for op in self.ops:
            img = op(img, rng)
        return img


def build(name: str, *args, **kwargs) -> Op:
    """One op by name, with its arguments and `p`; errors name the op and its signature."""
    if name not in OPS:
        raise KeyError(f"unknown augmentation op {name!r}; known: {sorted(OPS)}")
    p = kwargs.pop("p", 1.0)
    if not (isinstance(p, (int, float)) and 0 <= p <= 1):
        raise ValueError(f"{name}(p={p!r}): p is a probability in [0, 1]")
    factory = OPS[name]
    try:
        inspect.signature(factory).bind(*args, **kwargs)
    except TypeError as e:
        raise ValueError(f"{name}{inspect.signature(factory)} (plus p=...): {e}") from None
    shown = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()] + ([f"p={p!r}"] if p != 1 else [])
    return Op(name, factory(*args, **kwargs), float(p), f"{name}({', '.join(shown)})")


def _parse_call(text: str) -> Op:
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as e:
        raise ValueError(f"augmentation op {text!r} is not `name` or `name(args)`: {e.msg}") from None
    if isinstance(node, ast.Name):
        return build(node.id)
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and all(k.arg for k in node.keywords)):
        raise ValueError(f"augmentation op {text!r} is not `name` or `name(args)`")
    try:
        args = [ast.literal_eval(a) for a in node.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
    except ValueError:
        raise ValueError(f"augmentation op {text!r}: arguments must be Python literals") from None
    return build(node.func.id, *args, **kwargs)


def parse(spec: str | dict | Sequence[str | dict] | Pipeline | None) -> Pipeline:
    """A pipeline from "a(...)|b(...)", {"op": "a", ...}, a list of those, or None/"" (no ops)."""
    if isinstance(spec, Pipeline):
        return spec
    if not spec:
        return Pipeline()
    if isinstance(spec, dict):
        if "op" not in spec:
            raise ValueError(f"an augmentation op as a dict needs an 'op' key naming it, got {spec!r}")
        kwargs = dict(spec)
        return Pipeline((build(kwargs.pop("op"), **kwargs),))
    if isinstance(spec, str):
        return Pipeline(tuple(_parse_call(part) for part in spec.split("|") if part.strip()))
    return Pipeline(tuple(op for part in spec for op in parse(part).ops))
