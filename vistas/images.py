"""Image decoding and preprocessing shared by training, export and serving.

Pure numpy + PIL so that serving runs without torch. Training feeds its models
with exactly these arrays, which is what keeps train/serve preprocessing equal.

Layout conventions (one place, used everywhere):
  * pixels:  float32 (3, H, W), channels first, already normalised.
  * patches: float32 (N, p*p*3), each patch flattened in (row, col, channel)
    order, the order SigLIP 2 / NaFlex uses (transformers Siglip2 `convert_image_to_patches`).
  * coords:  int64 (N, 2) = (patch row, patch column).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

# PIL's own bomb check warns at 89M pixels and raises at 2x that; ours is
# explicit and configurable, checked from the header before any pixel is decoded.
DEFAULT_MAX_PIXELS = 40_000_000
# Images up to this many pixels are decoded at full size, so their preprocessing is bit for bit
# that of training and of transformers (the 1e-4 parity of served embeddings); larger ones are
# reduced while decoding (see REDUCING_GAP), where memory and time matter more. 16 M pixels holds
# a 12 MP phone photo; 0 reduces every image that is 3x larger than needed.
DEFAULT_REDUCE_ABOVE_PIXELS = 16_000_000

RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


class ImageError(ValueError):
    """A user image that cannot be used. `code` is stable and machine-readable."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __reduce__(self):  # picklable (batch jobs ship failed items to worker processes)
        return type(self), (self.code, self.message)


def decode_image(
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    need: Need | None = None,
    reduce_above: int = DEFAULT_REDUCE_ABOVE_PIXELS,
) -> Image.Image:
    """Bytes -> the upright RGB PIL image, or ImageError (see `open_image`)."""
    return open_image(data, max_pixels, need, reduce_above).decode()


def open_image(
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    need: Need | None = None,
    reduce_above: int = DEFAULT_REDUCE_ABOVE_PIXELS,
) -> PendingImage:
    """Bytes -> a PendingImage: the header is read and checked, no pixel is decoded yet.

    need: (width, height) of the upright image -> the smallest (width, height) the caller will
    resize it to (`vistas.inputs.input_size` for a model). An image of more than `reduce_above`
    pixels is then reduced while it is decoded, never below REDUCING_GAP times that size on
    either axis. None, or a smaller image, decodes at full size.

    Codes: "empty_image", "invalid_image" (not an image / unknown format),
    "truncated_image", "image_too_large" (decompression bomb guard).
    """
    if not data:
        raise ImageError("empty_image", "The image is empty (0 bytes).")
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ImageError("image_too_large", str(e)) from None
    except Exception:
        raise ImageError(
            "invalid_image",
            "The data is not an image in a format we can read (JPEG, PNG, WebP, GIF, BMP, TIFF).",
        ) from None
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError(
            "image_too_large",
            f"The image is {w}x{h} = {w * h} pixels, over the limit of {max_pixels}; "
            "downscale it before sending.",
        )
    return PendingImage(img, need if w * h > reduce_above else None)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; transparent pixels are composited on white."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return img.convert("RGB")


# ---------------------------------------------------------------- decoding: orientation, reduction

Need = Callable[[int, int], tuple[int, int]]  # upright (width, height) -> the smallest size resized to

# A decoded image is reduced by whole factors (JPEG: DCT scaling on decode; others: Image.reduce)
# to no less than REDUCING_GAP x the size it will be resized to, then the resize finishes. That
# is Pillow's own two-step resize (`Image.resize(reducing_gap=...)`, `Image.thumbnail`), which
# with a gap of 3 is "indistinguishable from fair resampling in most cases" (Pillow docs).
REDUCING_GAP = 3.0

ORIENTATION_TAG = 0x0112  # EXIF Orientation: how to turn the stored pixels to view them upright
# Orientation -> the turn that makes the stored pixels upright (as Pillow's ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = {_UPRIGHT[5], _UPRIGHT[6], _UPRIGHT[7], _UPRIGHT[8]}  # stored W x H is viewed H x W
REDUCTION_KEY = "vistas.reduction"  # img.info key of a decoded image's Reduction


@dataclass(frozen=True)
class Reduction:
    """How a decoded image was reduced, kept in `img.info[REDUCTION_KEY]` for the model's resize.

    A side that is not a multiple of the factor leaves a last pixel holding less than a full
    block, so the source covers `box` (in the reduced image's pixels), not the whole image:
    resizing `box` maps the source exactly, as Pillow's two-step resize does. NaFlex picks its
    patch grid from `source_size`, so rounding sides up cannot change the grid.
    """

    source_size: tuple[int, int]  # (width, height) of the upright image before any reduction
    box: tuple[float, float, float, float]


def reduction(img: Image.Image) -> Reduction | None:
    """The image's Reduction, or None for an image decoded at full size (or not by us)."""
    r = img.info.get(REDUCTION_KEY)
    return r if isinstance(r, Reduction) else None  # a PNG text chunk of that name is a str


class PendingImage:
    """An image whose header is read and checked; `decode()` decodes it (once).

    `size` is the upright size of the source; `pixels` is what decoding allocates at full
    resolution (for a JPEG after DCT scaling), the figure the pixel budgets count.
    """

    def __init__(self, img: Image.Image, need: Need | None):
        self._img, self._need = img, need
        # A PNG's EXIF may follow its pixels, and Pillow decodes them to look: read it after load.
        self._turn_known = img.format != "PNG" or "exif" in img.info
        self._turn = _UPRIGHT.get(_orientation(img)) if self._turn_known else None
        w, h = img.size
        self.size = (h, w) if self._turn in _SWAPS_AXES else (w, h)
        self._box = (0.0, 0.0, float(w), float(h))  # where the source lies in the decoded pixels
        if need is not None:
            nw, nh = need(*self.size)
            if self._turn in _SWAPS_AXES:
                nw, nh = nh, nw
            # JPEG (and MPO, phones' JPEG): DCT scaling by 1/2, 1/4 or 1/8, never below the size
            # asked; other formats have no draft mode and say so with None.
            drafted = img.draft(None, (math.ceil(nw * REDUCING_GAP), math.ceil(nh * REDUCING_GAP)))
            if drafted is not None:
                self._box = tuple(float(v) for v in drafted[1])
        self.pixels = img.width * img.height

    def decode(self) -> Image.Image:
        """The upright RGB image, reduced for `need`; ImageError for data that does not decode."""
        img, box, self._img = self._img, self._box, None  # decoded once; the caller holds the pixels
        try:
            img.load()
        except Image.DecompressionBombError as e:
            raise ImageError("image_too_large", str(e)) from None
        except Exception as e:
            raise ImageError("truncated_image", f"The image could not be decoded completely ({e}).") from None
        turn = self._turn if self._turn_known else _UPRIGHT.get(_orientation(img))
        if turn is not None:  # turned before reducing, so a turned photo reduces as its upright twin does
            box = _turned_box(box, img.size, turn)
            img = img.transpose(turn)
            if not self._turn_known:  # no draft without a known turn: the image is the source
                self.size = img.size
        if self._need is None:
            return to_rgb(img)
        if img.mode not in ("L", "RGB"):  # palette, CMYK, 16-bit, alpha: converted first, as before
            img = to_rgb(img)
        img, box = _reduce(img, box, self._need(*self.size))
        img = to_rgb(img)  # L -> RGB repeats the grey level: reducing first gives the same pixels
        if img.size != self.size:
            img.info[REDUCTION_KEY] = Reduction(self.size, box)
        return img


def larger_need(*needs: Need) -> Need:
    """One decoded image for several uses (a model and a thumbnail): the larger need on each axis."""

    def need(width: int, height: int) -> tuple[int, int]:
        sizes = [n(width, height) for n in needs]
        return max(s[0] for s in sizes), max(s[1] for s in sizes)

    return need


def _orientation(img: Image.Image) -> int:
    try:
        value = int(img.getexif().get(ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - a malformed EXIF block is no reason to refuse the photo
        return 1
    return value if value in _UPRIGHT else 1


def _turned_box(box: tuple[float, ...], size: tuple[int, int], turn: Image.Transpose) -> tuple[float, ...]:
    """A box of a W x H image -> the same region after `turn` (Pillow's Transpose semantics)."""
    w, h = size
    x0, y0, x1, y1 = box
    mapped = {
        Image.Transpose.FLIP_LEFT_RIGHT: (w - x1, y0, w - x0, y1),
        Image.Transpose.FLIP_TOP_BOTTOM: (x0, h - y1, x1, h - y0),
        Image.Transpose.ROTATE_180: (w - x1, h - y1, w - x0, h - y0),
        Image.Transpose.ROTATE_90: (y0, w - x1, y1, w - x0),  # counter-clockwise: (x, y) -> (y, w - x)
        Image.Transpose.ROTATE_270: (h - y1, x0, h - y0, x1),  # clockwise: (x, y) -> (h - y, x)
        Image.Transpose.TRANSPOSE: (y0, x0, y1, x1),
        Image.Transpose.TRANSVERSE: (h - y1, w - x1, h - y0, w - x0),
    }
    return mapped[turn]


def _reduce(img: Image.Image, box: tuple[float, ...], need: tuple[int, int]) -> tuple[Image.Image, tuple[float, ...]]:
    """Reduce by whole factors per axis, keeping at least REDUCING_GAP x `need` of the source.

    The factors are those of Pillow's `Image.resize(size, reducing_gap=REDUCING_GAP)`."""
    fx = max(1, int((box[2] - box[0]) / need[0] / REDUCING_GAP))
    fy = max(1, int((box[3] - box[1]) / need[1] / REDUCING_GAP))
    if (fx, fy) == (1, 1):
        return img, box
    return img.reduce((fx, fy)), (box[0] / fx, box[1] / fy, box[2] / fx, box[3] / fy)


IMAGE_MODES = ("fixed", "naflex")


@dataclass(frozen=True)
class ImageSpec:
    """How an image becomes the tower's input. Travels with the weights.

    SigLIP defaults: value range [-1, 1] = (x/255 - 0.5) / 0.5 (big_vision
    `value_range(-1, 1)`, HF SiglipImageProcessor mean=std=0.5).

    mode "fixed": every image is resized to height x width (the exported graph takes
    `pixel_values` (B, 3, H, W)). A size that is not a multiple of the patch size is
    allowed: the tower drops the last partial patch row/column, as the reference conv
    stem does (So400m/14 at 384 px).
    mode "naflex" (SigLIP 2, arXiv 2502.14786): every image keeps its aspect ratio and is
    resized to at most `max_num_patches` patches (`vistas.naflex`); height x width is then
    only the nominal size of the learned position-embedding grid.
    """

    height: int
    width: int
    patch_size: int
    resample: str = "bilinear"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    mode: str = "fixed"
    max_num_patches: int | None = None  # naflex only: the patch budget N every image is padded to

    def __post_init__(self):
        if self.resample not in RESAMPLE:
            raise ValueError(f"resample must be one of {sorted(RESAMPLE)}, got {self.resample!r}")
        if min(self.height, self.width) < self.patch_size or self.patch_size < 1:
            raise ValueError(
                f"image size {self.height}x{self.width} is smaller than one patch of size {self.patch_size}"
            )
        if self.mode not in IMAGE_MODES:
            raise ValueError(f"image mode must be one of {IMAGE_MODES}, got {self.mode!r}")
        if (self.mode == "naflex") != (self.max_num_patches is not None):
            raise ValueError("max_num_patches must be set for mode 'naflex' (the patch budget), and only then")
        if self.max_num_patches is not None and self.max_num_patches < 1:
            raise ValueError(f"max_num_patches must be >= 1, got {self.max_num_patches}")

    @property
    def format_version(self) -> int:
        """The oldest bundle format that can hold this spec (NaFlex came with format 2)."""
        return 1 if self.mode == "fixed" else 2

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        if self.mode == "fixed":  # written as format 1 wrote it: old readers load it, space ids stay
            del d["mode"], d["max_num_patches"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ImageSpec":
        d = dict(d)
        d["mean"], d["std"] = tuple(d.get("mean", (0.5,) * 3)), tuple(d.get("std", (0.5,) * 3))
        return cls(**d)


def to_unit_range(x: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1], rounded as transformers' image processors round
    (the product in float64, then float32), so NaFlex patches equal theirs bit for bit."""
    return (x.astype(np.float64) * (1 / 255)).astype(np.float32)


def preprocess(img: Image.Image, spec: ImageSpec) -> np.ndarray:
    """RGB PIL image -> float32 (3, H, W) normalised pixels."""
    return normalize(resized_rgb(img, spec), spec)  # (3, H, W)


def resized_rgb(img: Image.Image, spec: ImageSpec) -> np.ndarray:
    """PIL image -> uint8 (H, W, 3) at the spec's size."""
    reduced = reduction(img)
    img = to_rgb(img)
    if img.size != (spec.width, spec.height) or reduced is not None:
        box = reduced.box if reduced is not None else None  # the source's extent in a reduced image
        img = img.resize((spec.width, spec.height), RESAMPLE[spec.resample], box=box)
    return np.asarray(img)


def normalize(rgb: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """uint8 (..., H, W, 3) -> float32 (..., 3, H, W) in the spec's value range."""
    x = to_unit_range(rgb)  # (..., H, W, 3)
    x = (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))  # (..., 3, H, W)


def preprocess_batch(images: list[Image.Image], spec: ImageSpec) -> np.ndarray:
    """List of PIL images -> float32 (B, 3, H, W); normalised in one pass over the batch."""
    if not images:
        return np.zeros((0, 3, spec.height, spec.width), np.float32)
    return normalize(np.stack([resized_rgb(im, spec) for im in images]), spec)


def patchify(pixels: np.ndarray, patch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(3, H, W) pixels -> patches (N, p*p*3) in (row, col, channel) order, coords (N, 2)."""
    c, h, w = pixels.shape
    p = patch_size
    assert h % p == 0 and w % p == 0, f"{h}x{w} is not a multiple of patch size {p}"
    gh, gw = h // p, w // p
    x = pixels.reshape(c, gh, p, gw, p).transpose(1, 3, 2, 4, 0)  # (gh, gw, p, p, c)
    patches = np.ascontiguousarray(x.reshape(gh * gw, p * p * c))
    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    coords = np.stack([rows.ravel(), cols.ravel()], axis=-1).astype(np.int64)
    return patches, coords


@dataclass
class DecodeStats:
    """Counts of user-data decode failures: reported, never fatal."""

    ok: int = 0
    failed: int = 0
    by_code: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)  # first few "where: message"

    def add_failure(self, where: str, err: Exception) -> None:
        code = getattr(err, "code", type(err).__name__)
        self.failed += 1
        self.by_code[code] = self.by_code.get(code, 0) + 1
        if len(self.examples) < 20:
            self.examples.append(f"{where}: {err}")

    def summary(self) -> str:
        if not self.failed:
            return f"{self.ok} images decoded, none failed"
        codes = ", ".join(f"{k}={v}" for k, v in sorted(self.by_code.items()))
        return f"{self.ok} images decoded, {self.failed} skipped ({codes})"
