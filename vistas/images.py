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
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

# PIL's own bomb check warns at 89M pixels and raises at 2x that; ours is
# explicit and configurable, checked from the header before any pixel is decoded.
DEFAULT_MAX_PIXELS = 40_000_000

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


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Bytes -> fully decoded RGB PIL image, or ImageError.

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
    try:
        img.load()
    except Image.DecompressionBombError as e:
        raise ImageError("image_too_large", str(e)) from None
    except Exception as e:
        raise ImageError("truncated_image", f"The image could not be decoded completely ({e}).") from None
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; transparent pixels are composited on white."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return img.convert("RGB")


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
    img = to_rgb(img)
    if img.size != (spec.width, spec.height):
        img = img.resize((spec.width, spec.height), RESAMPLE[spec.resample])
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
