"""Augmentation ops (training/data/augment.py): each does what it says on a small image; specs
parse from strings, dicts and lists, and refuse what they cannot mean."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vistas.training.data import augment
from vistas.training.data.augment import OPS, Pipeline, build, parse, register


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def ink_on_paper(size: int = 32, box=(10, 8, 16, 24), ink: int = 0, paper: int = 255) -> Image.Image:
    """A bar of ink (x0, y0, x1, y1, exclusive) on paper, RGB."""
    a = np.full((size, size, 3), paper, np.uint8)
    x0, y0, x1, y1 = box
    a[y0:y1, x0:x1] = ink
    return Image.fromarray(a)


def ink(img: Image.Image, dark: bool = True) -> np.ndarray:
    g = np.asarray(img.convert("L"), int)
    return g < 128 if dark else g >= 128


# ---------------------------------------------------------------- specs


def test_spec_forms_agree_and_print_canonically():
    text = parse("affine(rotate=15, translate=0.1)|blur(sigma=(0.5, 1.0), p=0.3)|invert")
    as_dicts = parse([{"op": "affine", "rotate": 15, "translate": 0.1}, {"op": "blur", "sigma": (0.5, 1.0), "p": 0.3},
                      "invert"])
    assert [op.name for op in text.ops] == ["affine", "blur", "invert"]
    assert text.spec == as_dicts.spec == "affine(rotate=15, translate=0.1)|blur(sigma=(0.5, 1.0), p=0.3)|invert()"
    assert parse(text.spec).spec == text.spec  # the printed form parses back to itself
    assert parse(None).ops == parse("").ops == () and parse(text) is text
    img = ink_on_paper()
    assert np.array_equal(np.asarray(text(img, rng(5))), np.asarray(as_dicts(img, rng(5))))


@pytest.mark.parametrize("spec,error,match", [
    ("sharpen(2)", KeyError, "unknown augmentation op 'sharpen'; known"),
    ("blur(sigma=(2, 1))", ValueError, r"blur\(sigma="),
    ("blur(radius=2)", ValueError, r"blur\(sigma="),  # the message shows the op's signature
    ("blur(p=1.5)", ValueError, "probability"),
    ("blur(sigma=__import__('os').getcwd())", ValueError, "literals"),  # parsed, never evaluated
    ("blur(**{'sigma': 1})", ValueError, "name"),
    ("blur(", ValueError, "name"),
    ("stroke(width=(0.5, 1))", ValueError, "whole pixels"),
    ("downup(filters=('sinc',))", ValueError, "known"),
    ({"sigma": 1}, ValueError, "'op' key"),
])
def test_bad_specs_say_what_is_wrong(spec, error, match):
    with pytest.raises(error, match=match):
        parse(spec)


def test_registry_refuses_a_second_op_of_one_name():
    with pytest.raises(ValueError, match="already registered"):
        register("blur")(lambda: (lambda img, r: img))
    assert {"affine", "stroke", "blur", "invert", "downup", "noise", "jpeg", "contrast"} <= set(OPS)


def test_p_is_the_probability_an_op_applies():
    img = ink_on_paper()
    never, always, half = build("invert", p=0.0), build("invert"), build("invert", p=0.5)
    r = rng()
    assert all(never(img, r) is img for _ in range(50))
    assert all(np.asarray(always(img, r))[0, 0, 0] == 0 for _ in range(50))
    applied = sum(np.asarray(half(img, r))[0, 0, 0] == 0 for _ in range(400))
    assert 160 < applied < 240


def test_a_pipeline_is_a_function_of_its_rng():
    pipe = parse("affine(rotate=20, scale=(0.8, 1.2), shear=10, translate=0.1)|stroke|blur(p=0.5)|noise|jpeg|downup")
    img = ink_on_paper()
    outs = [np.asarray(pipe(img, rng(s))) for s in (1, 1, 2)]
    assert np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])
    assert Pipeline()(img, rng()) is img


# ---------------------------------------------------------------- ops


def test_affine_translate_moves_the_ink_and_fills_with_paper():
    img = ink_on_paper(paper=200)
    out = build("affine", translate=(0.25, 0.25))(img, rng())  # exactly +8 px right and down
    ys, xs = np.nonzero(ink(out))
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (18, 23, 16, 31)
    assert (np.asarray(out)[:8, :, 0] == 200).all()  # uncovered rows show the paper, not black


def test_affine_rotate_scale_and_shear():
    img = ink_on_paper(box=(14, 4, 18, 28))  # a vertical bar through the centre
    turned = build("affine", rotate=(90, 90))(img, rng())
    ys, xs = np.nonzero(ink(turned))
    assert xs.max() - xs.min() > 20 and ys.max() - ys.min() < 6  # now horizontal
    half = build("affine", scale=(0.5, 0.5))(img, rng())
    assert 0.15 < ink(half).sum() / ink(img).sum() < 0.35  # area scales by 0.5^2
    sheared = build("affine", shear=(30, 30))(img, rng())
    ys, xs = np.nonzero(ink(sheared))
    # x' = x + tan(30 deg) y about the centre (y down): the bar's ends, 24 rows apart, move 14 px apart
    assert abs(xs[ys == ys.max()].mean() - xs[ys == ys.min()].mean() - np.tan(np.radians(30)) * 24) < 2


def test_stroke_thickens_and_thins_ink_of_either_polarity():
    for dark, img in ((True, ink_on_paper()), (False, ink_on_paper(ink=255, paper=0))):
        area = ink(img, dark).sum()  # 6 x 16 = 96
        thick = ink(build("stroke", width=(1, 1))(img, rng()), dark).sum()
        thin = ink(build("stroke", width=(-1, -1))(img, rng()), dark).sum()
        assert (thick, area, thin) == (8 * 18, 96, 4 * 14), dark


def test_blur_spreads_edges_and_keeps_the_mean():
    img = ink_on_paper()
    out = np.asarray(build("blur", sigma=(1.5, 1.5))(img, rng()), float)
    a = np.asarray(img, float)
    assert np.abs(np.diff(out, axis=1)).max() < 0.6 * np.abs(np.diff(a, axis=1)).max()
    assert abs(out.mean() - a.mean()) < 1


def test_invert_makes_white_on_black():
    img = ink_on_paper()
    assert np.array_equal(np.asarray(build("invert")(img, rng())), 255 - np.asarray(img))


def test_downup_keeps_the_size_and_loses_fine_detail():
    checker = Image.fromarray(((np.indices((32, 32)).sum(0) % 2) * 255).astype(np.uint8)).convert("RGB")
    out = build("downup", scale=(0.5, 0.5), filters=("box",))(checker, rng())
    assert out.size == checker.size and out.mode == "RGB"
    assert np.asarray(out).std() < 5  # a one-pixel checkerboard averages to grey at half size


def test_noise_is_grey_with_its_sigma():
    img = Image.new("RGB", (64, 64), (120, 60, 180))
    out = np.asarray(build("noise", sigma=(6, 6))(img, rng()), float)
    assert 5 < (out - np.asarray(img)).std() < 7
    hue = out - out.mean(-1, keepdims=True)  # the same noise in each channel: hues keep
    assert np.allclose(hue, hue[0, 0], atol=1.0)


def test_jpeg_and_contrast():
    img = ink_on_paper(paper=220)
    jpg = build("jpeg", quality=(20, 20))(img, rng())
    diff = np.abs(np.asarray(jpg, int) - np.asarray(img, int))
    assert jpg.size == img.size and jpg.mode == "RGB" and 0 < diff.mean() < 10
    faded = np.asarray(build("contrast", factor=(0.5, 0.5))(img, rng()), float)
    a = np.asarray(img, float)
    assert abs(faded.std() - 0.5 * a.std()) < 1 and abs(faded.mean() - a.mean()) < 1


def test_resize_random_draws_its_filter_from_the_list():
    img = ink_on_paper(size=16)
    sizes = {augment.resize_random(img, (48, 48), rng(s), [Image.Resampling.NEAREST]).size for s in range(3)}
    assert sizes == {(48, 48)}
    near = np.asarray(augment.resize_random(img, (48, 48), rng(), [Image.Resampling.NEAREST]))
    assert len(np.unique(near[..., 0])) == 2  # nearest keeps hard edges; smooth filters blend them
    smooth = np.asarray(augment.resize_random(img, (48, 48), rng(), [Image.Resampling.BICUBIC]))
    assert len(np.unique(smooth[..., 0])) > 2
