"""Decoding user images (vistas.images): EXIF orientation, and reduce-on-decode that never changes
the model's input beyond Pillow's own two-step resize (issue 12, items 2 and 10)."""

from __future__ import annotations

import io
from functools import partial

import numpy as np
import pytest
from PIL import Image

from vistas.images import (
    _UPRIGHT,
    DEFAULT_REDUCE_ABOVE_PIXELS,
    REDUCING_GAP,
    ImageSpec,
    _turned_box,
    decode_image,
    open_image,
    preprocess,
    reduction,
)
from vistas.inputs import image_inputs, input_size
from vistas.naflex import naflex_image

ORIENTATION = 0x0112
# EXIF orientation -> how the stored pixels are turned from the upright photo (the inverse of
# what a viewer applies): 6 is the phone held upright, stored sideways, "rotate 90 CW to view".
STORED = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _photo(width: int, height: int) -> Image.Image:
    """A real photo (scikit-image's astronaut), resized to width x height."""
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BICUBIC)


def _encode(img: Image.Image, fmt: str, orientation: int | None = None, **kw) -> bytes:
    buf = io.BytesIO()
    if orientation is not None:
        exif = Image.Exif()
        exif[ORIENTATION] = orientation
        kw["exif"] = exif
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _stored(upright: Image.Image, orientation: int) -> Image.Image:
    method = STORED[orientation]
    return upright if method is None else upright.transpose(method)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_gives_the_upright_photo(orientation):
    upright = _photo(61, 37)  # odd sizes: a transposition that swaps the wrong axes shows
    data = _encode(_stored(upright, orientation), "PNG", orientation)
    got = decode_image(data)
    assert got.size == upright.size
    np.testing.assert_array_equal(np.asarray(got), np.asarray(upright))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_with_reduce_on_decode_equals_the_upright_photo(orientation):
    """Reduction happens after the turn, so a turned photo reduces exactly as its upright twin."""
    upright = _photo(1001, 613)
    spec = ImageSpec(height=48, width=64, patch_size=16)
    need = partial(input_size, spec)
    turned = decode_image(_encode(_stored(upright, orientation), "PNG", orientation), need=need, reduce_above=0)
    straight = decode_image(_encode(upright, "PNG"), need=need, reduce_above=0)
    assert turned.size == straight.size and turned.width < upright.width and turned.height < upright.height
    np.testing.assert_array_equal(preprocess(turned, spec), preprocess(straight, spec))


def test_exif_orientation_of_a_jpeg_also_with_draft():
    """A phone JPEG stored sideways: decoded upright, at full size and with DCT-domain reduction."""
    upright = _photo(800, 600)
    sideways = _stored(upright, 6)
    tagged, untagged = _encode(sideways, "JPEG", 6, quality=95), _encode(sideways, "JPEG", quality=95)
    full = decode_image(tagged)
    assert full.size == (800, 600)
    np.testing.assert_array_equal(np.asarray(full), np.asarray(decode_image(untagged).transpose(Image.Transpose.ROTATE_270)))
    spec = ImageSpec(height=32, width=32, patch_size=16)
    small = decode_image(tagged, need=partial(input_size, spec), reduce_above=0)
    assert reduction(small).source_size == (800, 600)
    assert min(small.size) >= REDUCING_GAP * 32 and small.width * small.height <= 800 * 600 / 16
    # DCT scaling (libjpeg's, as Image.thumbnail uses) is not bit-equal to a full decode and a box
    # filter: the model's input differs by a fraction of a grey level on average, a few at most;
    # a sideways image would differ by ~80 levels on average.
    levels = np.abs(preprocess(small, spec) - preprocess(full, spec)) * 127.5  # [-1, 1] -> 0..255
    assert levels.mean() < 1 and levels.max() <= 8


def test_bad_exif_orientation_values_are_ignored():
    img = _photo(30, 20)
    for value in (0, 9, 1000):
        np.testing.assert_array_equal(np.asarray(decode_image(_encode(img, "PNG", value))), np.asarray(img))


@pytest.mark.parametrize("size", [(3000, 2001), (2001, 3000), (997, 1009)])
@pytest.mark.parametrize("resample", ["bilinear", "bicubic"])
def test_reduce_on_decode_equals_pillows_two_step_resize(size, resample):
    """Where exactness holds: for a PNG (any lossless format), decode + the model's resize gives
    bit for bit what Pillow's `resize(..., reducing_gap=REDUCING_GAP)` of the full image gives."""
    upright = _photo(*size)
    spec = ImageSpec(height=48, width=40, patch_size=8, resample=resample)
    decoded = decode_image(_encode(upright, "PNG"), need=partial(input_size, spec), reduce_above=0)
    assert decoded.width >= REDUCING_GAP * 40 and decoded.height >= REDUCING_GAP * 48
    assert decoded.width * decoded.height < upright.width * upright.height / 4
    want = upright.resize((40, 48), getattr(Image.Resampling, resample.upper()), reducing_gap=REDUCING_GAP)
    np.testing.assert_array_equal(preprocess(decoded, spec), preprocess(want, spec))


def test_images_up_to_reduce_above_are_decoded_at_full_size_for_parity_with_transformers():
    """Served embeddings match transformers (which resizes the full image) to 1e-4: an image of
    up to DEFAULT_REDUCE_ABOVE_PIXELS pixels is decoded and preprocessed exactly as before."""
    upright = _photo(4000, 3000)  # a 12 MP phone photo, 60x the 50 px model input
    spec = ImageSpec(height=50, width=50, patch_size=10)
    need = partial(input_size, spec)
    data = _encode(upright, "JPEG", quality=90)
    assert 4000 * 3000 <= DEFAULT_REDUCE_ABOVE_PIXELS
    decoded = decode_image(data, need=need)
    assert decoded.size == (4000, 3000) and reduction(decoded) is None
    np.testing.assert_array_equal(preprocess(decoded, spec), preprocess(decode_image(data), spec))
    # One pixel over the threshold: DCT scaling by 1/8 to 500 x 375, then reduced by 3 and 2 (>= 150).
    assert decode_image(data, need=need, reduce_above=4000 * 3000 - 1).size == (167, 188)


def test_small_images_are_not_reduced_and_preprocess_as_before():
    upright = _photo(140, 100)  # under REDUCING_GAP x the 48 px input on both axes
    spec = ImageSpec(height=48, width=48, patch_size=16)
    decoded = decode_image(_encode(upright, "PNG"), need=partial(input_size, spec), reduce_above=0)
    assert decoded.size == (140, 100) and reduction(decoded) is None
    np.testing.assert_array_equal(preprocess(decoded, spec), preprocess(upright, spec))


def test_grayscale_is_reduced_before_conversion_with_the_same_result():
    from skimage import data

    gray = Image.fromarray(data.camera()).resize((3000, 2000), Image.Resampling.NEAREST)
    spec = ImageSpec(height=32, width=32, patch_size=16)
    need = partial(input_size, spec)
    as_gray = decode_image(_encode(gray, "PNG"), need=need, reduce_above=0)
    as_rgb = decode_image(_encode(gray.convert("RGB"), "PNG"), need=need, reduce_above=0)
    assert as_gray.mode == "RGB" and as_gray.size == as_rgb.size
    np.testing.assert_array_equal(preprocess(as_gray, spec), preprocess(as_rgb, spec))


def test_alpha_is_composited_on_white_as_before_when_reduced():
    rgba = Image.new("RGBA", (2000, 1000), (255, 0, 0, 0))  # transparent red
    rgba.paste((0, 0, 255, 255), (0, 0, 1000, 1000))  # opaque blue left half
    decoded = decode_image(_encode(rgba, "PNG"), need=lambda w, h: (16, 16), reduce_above=0)
    assert decoded.size < rgba.size
    assert decoded.getpixel((0, 0)) == (0, 0, 255)
    assert decoded.getpixel((decoded.width - 1, decoded.height - 1)) == (255, 255, 255)


@pytest.mark.parametrize("size", [(5000, 300), (300, 5000), (2048, 2048), (37, 30001)])
def test_naflex_picks_the_same_patch_grid_after_reduction(size):
    """The NaFlex grid depends on the aspect ratio; it is chosen from the source size, so a
    reduction (which rounds sides up) cannot change it."""
    spec = ImageSpec(height=64, width=64, patch_size=16, mode="naflex", max_num_patches=64)
    upright = _photo(*size)
    decoded = decode_image(_encode(upright, "PNG"), need=partial(input_size, spec), reduce_above=0)
    assert decoded.width * decoded.height < size[0] * size[1] / 2
    _, grid = naflex_image(decoded, spec)
    _, want = naflex_image(upright, spec)
    assert grid == want
    inputs = image_inputs([decoded], spec)
    assert tuple(inputs["spatial_shapes"][0]) == want


def test_open_image_reads_only_the_header_and_counts_decode_pixels():
    """The request budget is checked before any pixel is decoded; a JPEG counts at its draft size."""
    huge = Image.new("L", (6000, 6000), 128)
    png = open_image(_encode(huge, "PNG"))
    assert png.size == (6000, 6000) and png.pixels == 36_000_000
    jpeg = open_image(_encode(huge.convert("RGB"), "JPEG"), need=lambda w, h: (100, 100))
    assert jpeg.size == (6000, 6000) and jpeg.pixels == 750 * 750  # DCT scaling by 1/8 before decoding
    # ... and Image.reduce finishes: 750 // (3 x 100) = 2, to 375 >= 300 px.
    assert decode_image(_encode(huge.convert("RGB"), "JPEG"), need=lambda w, h: (100, 100)).size == (375, 375)


@pytest.mark.parametrize("orientation", range(2, 9))
def test_the_source_box_of_a_drafted_jpeg_turns_with_the_photo(orientation):
    """DCT scaling leaves the source short of the last pixel row/column when a side is not a
    multiple of the scale; after the turn that edge may be on any side. The box follows it."""
    w, h, box = 13, 7, (2, 1, 9, 5)
    marked = Image.new("L", (w, h), 0)
    marked.paste(255, box)
    turned = marked.transpose(_UPRIGHT[orientation])
    assert turned.getbbox() == _turned_box(box, (w, h), _UPRIGHT[orientation])


def test_sources_used_for_training_yield_upright_photos(tmp_path):
    from vistas.sources import decode_items, iter_source

    upright = _photo(61, 37)
    (tmp_path / "sideways.png").write_bytes(_encode(_stored(upright, 6), "PNG", 6))
    ((_, got),) = list(decode_items(iter_source(tmp_path)))
    np.testing.assert_array_equal(np.asarray(got), np.asarray(upright))
