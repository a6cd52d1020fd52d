"""Training data sets: determinism, the held-out split's guarantees, drawing that varies like
real pictures do (issue 13), real and typeset digits, the registry."""

from __future__ import annotations

import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageColor, ImageFont

from vistas.training.data import DATASETS, digits, get_dataset, register, shapes
from vistas.training.data.augment import parse
from vistas.training.data.shapes import (
    ALL_PAIRS,
    COLOR_MARGIN,
    COLORS,
    FORMS,
    HELDOUT_PAIRS,
    MAX_ROTATION_DEG,
    MIN_RADIUS_PX,
    PALETTES,
    REACH,
    SEEN_PAIRS,
    SHAPES,
    SIZES,
    TEXTURES,
    ShapesDataset,
    caption_describes,
    parse_caption,
    polygon,
    srgb_to_lab,
)

ROOT = Path(__file__).resolve().parents[2]


def pixels(example) -> np.ndarray:
    return np.asarray(example.image)


def train_objects(n: int = 400, **kwargs) -> list[dict]:
    ds = ShapesDataset("train", n, image_size=48, **kwargs)
    return [o for ex in ds for o in ex.attrs["objects"]]


# ---------------------------------------------------------------- shapes: contract


def test_shapes_deterministic_per_seed_split_index():
    aug = "noise(sigma=4, p=0.5)|jpeg(p=0.5)"  # augmentation too is a function of the index
    a, b = ShapesDataset("train", 50, seed=3, augment=aug), ShapesDataset("train", 50, seed=3, augment=aug)
    for i in (0, 7, 49):
        assert np.array_equal(pixels(a[i]), pixels(b[i]))
        assert a[i].caption == b[i].caption and a[i].attrs == b[i].attrs
    other = ShapesDataset("train", 50, seed=4)
    assert not all(np.array_equal(pixels(a[i]), pixels(other[i])) for i in range(5))
    # Random access order does not matter: example i is a function of i alone.
    assert np.array_equal(pixels(a[49]), pixels(ShapesDataset("train", 50, seed=3, augment=aug)[-1]))


def test_shapes_image_format_and_options():
    ex = ShapesDataset("train", 1, image_size=96)[0]
    assert ex.image.mode == "RGB" and ex.image.size == (96, 96)
    single = ShapesDataset("train", 200, max_objects=1)
    assert all(len(single[i].attrs["objects"]) == 1 for i in range(200))
    with pytest.raises(IndexError):
        single[200]
    with pytest.raises(ValueError, match="split"):
        ShapesDataset("validation", 1)
    with pytest.raises(ValueError, match="unknown Style fields"):
        ShapesDataset("train", 1, style={"radius": (0.1, 0.2), "spin": 45})
    with pytest.raises(ValueError, match="textures"):
        ShapesDataset("train", 1, style={"textures": ("plaid",)})


def test_shapes_palette_is_diverse_and_separated():
    assert {"red", "green", "blue"} <= set(COLORS) and len(COLORS) >= 6
    assert {"circle", "square", "triangle"} <= set(SHAPES) and len(SHAPES) >= 5
    rgb = np.array(list(COLORS.values()), float)
    dists = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1)
    assert dists[~np.eye(len(rgb), dtype=bool)].min() > 90
    # Backgrounds are near-grey; objects saturated: a background never reads as an object color.
    assert (rgb.max(1) - rgb.min(1)).min() > 100


def test_heldout_pairs_cover_every_color_and_shape_once():
    assert {c for c, _ in HELDOUT_PAIRS} == set(COLORS)
    assert {s for _, s in HELDOUT_PAIRS} == set(SHAPES)


def test_train_never_shows_heldout_pairs_but_every_color_and_shape():
    ds = ShapesDataset("train", 3000, seed=0)
    heldout_names = [f"{c} {s}" for c, s in HELDOUT_PAIRS]
    colors, shape_names, n_objects = Counter(), Counter(), Counter()
    for i in range(len(ds)):
        ex = ds[i]
        objs = ex.attrs["objects"]
        n_objects[len(objs)] += 1
        for o in objs:
            assert (o["color"], o["shape"]) not in HELDOUT_PAIRS, (i, o)
            colors[o["color"]] += 1
            shape_names[o["shape"]] += 1
        for name in heldout_names:
            assert name not in ex.caption, (i, ex.caption)
        for o in objs:  # the caption names every object in the image
            assert f"{o['color']} {o['shape']}" in ex.caption, (i, ex.caption)
        assert caption_describes(parse_caption(ex.caption), ex.attrs), (i, ex.caption)
    assert set(colors) == set(COLORS) and set(shape_names) == set(SHAPES)
    assert n_objects[1] > n_objects[2] > n_objects[3] > 0  # one object is the most common


@pytest.mark.parametrize("split,pool", [("test_seen", "seen"), ("test_unseen", "heldout")])
def test_test_splits_are_single_object_with_matching_labels(split, pool):
    names = shapes.class_names()
    assert len(names) == len(ALL_PAIRS) and len(set(names)) == len(names)
    ds = ShapesDataset(split, 120)
    labels = Counter()
    for i in range(len(ds)):
        ex = ds[i]
        (obj,) = ex.attrs["objects"]
        pair = (obj["color"], obj["shape"])
        assert (pair in HELDOUT_PAIRS) == (pool == "heldout")
        assert names[ex.label] == f"{obj['color']} {obj['shape']}"
        assert names[ex.label] in ex.caption
        labels[ex.label] += 1
    assert len(set(labels.values())) == 1  # balanced: the split cycles through its pairs


def test_test_seen_uses_its_own_seed_stream():
    train, seen = ShapesDataset("train", 20), ShapesDataset("test_seen", 20)
    assert not any(np.array_equal(pixels(train[i]), pixels(seen[i])) for i in range(20))


def test_zero_shot_prompts_use_articles():
    assert "a photo of a red circle" in shapes.zero_shot_prompts("red circle")
    assert "an orange square" in shapes.zero_shot_prompts("orange square")


# ---------------------------------------------------------------- shapes: drawing varies like pictures do


def test_filled_objects_show_their_color_at_the_center_and_outlined_ones_the_background():
    """Circles, squares and diamonds (the shapes whose middle is far from every edge) at a size
    where resizing cannot blur the middle; ~half outlined."""
    ds = ShapesDataset("test_seen", 300, image_size=48, style=dict(radius=(0.25, 0.36), outline=0.5))
    filled = outlined = 0
    for ex in ds:
        (o,) = ex.attrs["objects"]
        if o["shape"] not in ("circle", "square", "diamond"):
            continue
        x, y = (int(v) for v in o["center"])
        gap = np.abs(pixels(ex)[y, x].astype(int) - o["rgb"]).max()
        if o["outline"]:
            assert gap > 30, o  # the inside is background (grey), not the object's saturated color
            outlined += 1
        else:
            assert gap <= 4, o
            filled += 1
    assert filled > 20 and outlined > 20


def test_placement_is_continuous_not_on_the_patch_grid():
    centers = np.array([o["center"] for o in train_objects(400)])  # (N, 2) output pixels
    offsets = centers % 8  # where in its 8-pixel patch a center falls
    assert np.mean(np.isclose(offsets, 4)) < 0.01, "centers sit on patch centers"
    quarter = np.bincount((offsets // 2).astype(int).ravel(), minlength=4) / offsets.size
    assert quarter.min() > 0.18, quarter  # every part of a patch is used about equally
    assert centers.min() < 12 and centers.max() > 36  # and the whole image
    gridded = train_objects(100, style=dict(position_grid=8, radius=(0.10, 0.25)))  # the generator before issue 13
    assert all((c - 4) % 8 == 0 for o in gridded for c in o["center"])


def test_objects_stay_inside_and_never_cover_each_others_middle():
    for ex in ShapesDataset("train", 400, image_size=48):
        objs = ex.attrs["objects"]
        for o in objs:
            assert all(REACH * o["radius"] <= c <= 48 - REACH * o["radius"] + 1e-9 for c in o["center"]), o
        for a in objs:
            for b in objs:
                if a is not b:
                    gap = math.dist(a["center"], b["center"])
                    assert gap >= REACH * b["radius"] + 0.5 * a["radius"] - 1e-9, (a, b)


def test_sizes_are_continuous_and_size_words_are_only_said_when_clear():
    ds = ShapesDataset("train", 1500, image_size=48, max_objects=1)
    fractions, in_between = [], 0
    for ex in ds:
        (o,) = ex.attrs["objects"]
        frac = o["radius"] / 48
        fractions.append(frac)
        band = next((w for w, (lo, hi) in SIZES.items() if lo <= frac <= hi), None)
        assert o["size"] == band, o
        ((said, _, _),), _ = parse_caption(ex.caption)
        assert said in (None, band), (ex.caption, frac)  # never "small" for a large one, nor any word in between
        in_between += band is None
    fractions = np.array(fractions)
    assert fractions.min() < 0.11 and fractions.max() > 0.34  # covers 10-35 % of the side
    assert np.histogram(fractions, bins=10, range=(0.10, 0.36))[0].min() > 50  # continuous, not bands
    assert 0.1 < in_between / len(ds) < 0.4
    lo_small, hi_small = SIZES["small"]
    assert SIZES["large"][0] / hi_small >= 1.3 and lo_small <= 0.10  # the words stay far apart


def test_rotations_keep_squares_unlike_diamonds():
    """A square's sides stay within 15 deg of the axes; a diamond's are at least 20 deg from both
    (a square turned 45 deg is a diamond); a circle is never turned, a cross stays upright."""

    def side_angles(pts: np.ndarray) -> np.ndarray:  # each side's angle to the nearest axis, degrees
        d = np.roll(pts, -1, axis=0) - pts
        a = np.degrees(np.arctan2(d[:, 1], d[:, 0])) % 90
        return np.minimum(a, 90 - a)

    objs = train_objects(2000) + [o for ex in ShapesDataset("test_unseen", 600) for o in ex.attrs["objects"]]
    by_shape = {sh: [o for o in objs if o["shape"] == sh] for sh in SHAPES}
    assert all(len(v) > 50 for v in by_shape.values()), {k: len(v) for k, v in by_shape.items()}
    for o in objs:
        assert abs(math.degrees(o["angle"])) <= MAX_ROTATION_DEG[o["shape"]] + 1e-9, o
        form = FORMS[o["shape"]]
        assert (o["form"] is None) if form is None else form[0] <= o["form"] <= form[1], o
    assert all(o["angle"] == 0 for o in by_shape["circle"])
    squares = np.concatenate([side_angles(polygon("square", o["form"], o["angle"])) for o in by_shape["square"]])
    diamonds = np.concatenate([side_angles(polygon("diamond", o["form"], o["angle"])) for o in by_shape["diamond"]])
    assert squares.max() <= 15 + 1e-6 and diamonds.min() >= 20, (squares.max(), diamonds.min())
    assert squares.max() > 10 and diamonds.max() > 40  # both do turn, and some diamonds are square-ish
    crosses = np.concatenate([side_angles(polygon("cross", o["form"], o["angle"])) for o in by_shape["cross"]])
    assert crosses.max() <= 20 + 1e-6  # a "+", never an "x"
    angles = [abs(math.degrees(o["angle"])) for o in by_shape["triangle"] + by_shape["star"]]
    assert max(angles) > 150  # triangles and stars point any way


def test_color_jitter_stays_nearest_its_own_name():
    """Every palette color is nearer its own name's color than any other's, in CIELAB by
    COLOR_MARGIN and in RGB; what PIL/CSS call these names is in the palettes; and objects use them."""
    names = list(COLORS)
    protos = np.array([COLORS[n] for n in names], float)
    for k, name in enumerate(names):
        pal = PALETTES[name].astype(float)  # (P, 3)
        assert len(np.unique(pal, axis=0)) > 400, name  # jittered, not one color
        d_lab = np.linalg.norm(srgb_to_lab(pal)[:, None] - srgb_to_lab(protos)[None], axis=-1)  # (P, C)
        assert (np.delete(d_lab, k, 1).min(1) - d_lab[:, k]).min() >= COLOR_MARGIN, name
        assert (np.linalg.norm(pal[:, None] - protos[None], axis=-1).argmin(1) == k).all(), name
        for rgb in (ImageColor.getrgb(name), COLORS[name]):  # PIL's/CSS's and ours
            assert np.linalg.norm(srgb_to_lab(pal) - srgb_to_lab(np.array(rgb, float)), axis=1).min() < 4, (name, rgb)
    objs = train_objects(400)
    for o in objs:
        assert (PALETTES[o["color"]] == o["rgb"]).all(1).any(), o
    assert len({o["rgb"] for o in objs if o["color"] == "red"}) > 30


def test_backgrounds_take_any_grey_level_and_texture_at_low_contrast():
    ds = ShapesDataset("train", 600, image_size=48)
    levels, textures = [], Counter()
    for ex in ds:
        level, texture = ex.attrs["level"], ex.attrs["texture"]
        levels.append(level)
        textures[texture] += 1
        assert ex.attrs["background"] == shapes.background_word(level)
        # the same background without its objects (the texture's pixels come from render_seed)
        empty = {**ex.attrs, "objects": []}
        bg = np.asarray(shapes.render(empty, 48, ds.style, parse(""), np.random.default_rng(ex.attrs["render_seed"])),
                        float).reshape(-1, 3)
        assert abs(bg.mean() - np.clip(level, 10, 245)) < 12, (level, texture, bg.mean())
        assert np.abs(bg.mean(1) - level).max() < 60, (level, texture)  # low contrast
        assert (bg.max(1) - bg.min(1)).max() <= 21, texture  # a tint of at most +-10: grey, never a color
        assert (bg.std(0).max() < 0.5) == (texture == "flat"), (texture, bg.std(0))
    assert set(textures) == set(TEXTURES)
    hist = np.histogram(levels, bins=8, range=(0, 256))[0]
    assert hist.min() > 40, hist  # any level, mid-grey included
    assert {ex.attrs["background"] for ex in ds} == {None, "dark", "grey", "light"}


def test_canvas_sizes_vary_and_keep_small_objects_drawable():
    ds = ShapesDataset("train", 500, image_size=48)
    sizes = np.array([ex.attrs["draw_size"] for ex in ds])
    assert sizes.min() < 48 < 96 < sizes.max() <= 160  # drawn smaller and larger than the model's input
    for ex in ds:
        scale = ex.attrs["draw_size"] / 48
        assert min(o["radius"] for o in ex.attrs["objects"]) * scale >= MIN_RADIUS_PX - 0.5


def test_drawing_styles_differ_for_one_scene():
    """Same scene, other canvas size and filter: an aliased drawing has only a few distinct colors,
    an antialiased one (drawn large, shrunk) has blended edges."""
    ex = ShapesDataset("test_seen", 1, image_size=48, style=dict(textures=("flat",)))[0]
    attrs = dict(ex.attrs)
    (o,) = attrs["objects"]
    attrs["objects"] = [{**o, "outline": 0.0}]

    def draw(side: int, filters: tuple[str, ...]) -> np.ndarray:
        style = shapes.Style(textures=("flat",), filters=filters)
        img = shapes.render({**attrs, "draw_size": side}, 48, style, parse(""), np.random.default_rng(0))
        return np.asarray(img)

    aliased, smooth = draw(48, ("nearest",)), draw(160, ("lanczos",))
    colors = lambda a: len(np.unique(a.reshape(-1, 3), axis=0))  # noqa: E731
    assert colors(aliased) == 2 and colors(smooth) > 10


# ---------------------------------------------------------------- shapes: twins and captions


def test_twin_swaps_one_shape_in_the_same_scene():
    ds = ShapesDataset("train", size=100, image_size=48)
    rng = np.random.default_rng(0)
    for i in range(20):
        ex = ds[i]
        twin = ds.twin(ex, rng)
        assert twin is not None
        a, b = ex.attrs["objects"], twin.attrs["objects"]
        changed = [k for k, (oa, ob) in enumerate(zip(a, b)) if oa != ob]
        assert len(changed) == 1, (a, b)
        (k,) = changed
        assert a[k]["shape"] != b[k]["shape"]
        keep = ("color", "rgb", "size", "radius", "center", "outline")
        assert {f: a[k][f] for f in keep} == {f: b[k][f] for f in keep}
        assert abs(math.degrees(b[k]["angle"])) <= MAX_ROTATION_DEG[b[k]["shape"]] + 1e-9  # the new shape's rule
        assert (b[k]["color"], b[k]["shape"]) in SEEN_PAIRS  # never a held-out pair
        # Pixels differ only around the swapped object: same background, texture and other objects
        # (the resize filter spreads an edge by up to 3 output pixels).
        diff = np.abs(np.asarray(ex.image, np.int16) - np.asarray(twin.image, np.int16)).max(axis=-1)
        ys, xs = np.nonzero(diff > 2)
        cx, cy = a[k]["center"]
        assert len(ys) and np.hypot(xs - cx, ys - cy).max() <= REACH * a[k]["radius"] + 3.5
        # Its caption is true of it and false of the original scene.
        assert caption_describes(parse_caption(twin.caption), twin.attrs)
        assert not caption_describes(parse_caption(twin.caption), ex.attrs)


def test_batches_with_twins_hold_minimal_pairs():
    from vistas.images import ImageSpec
    from vistas.training.batches import BatchMaker
    from vistas.training.config import Config

    config = Config(seed=0, batch_size=64, data=[
        dict(name="shapes", weight=1.0, kwargs=dict(split="train", size=10_000, image_size=48), twins=0.5)])
    batch = BatchMaker(config, ImageSpec(height=48, width=48, patch_size=8)).batch(0)
    images = np.stack([np.asarray(im, np.int16) for im in batch.images])  # (64, 48, 48, 3)
    pairs = []
    for i in range(64):
        for j in range(i + 1, 64):
            if ((images[i] == images[j]).all(-1)).mean() > 0.6:  # mostly the same pixels: one scene drawn twice
                pairs.append((i, j))
    assert len(pairs) == 16  # twins=0.5 of 64 slots: 16 originals and their 16 twins
    for i, j in pairs:  # a minimal pair is a negative both ways
        assert batch.pair_labels[i, j] == -1 and batch.pair_labels[j, i] == -1


def test_shape_only_captions_leave_colors_out_and_stay_true():
    ds = ShapesDataset("train", 600, image_size=48, shape_only=0.5)
    plain = ShapesDataset("train", 600, image_size=48)
    without_color = 0
    for i in range(len(ds)):
        ex = ds[i]
        objects, _ = parse_caption(ex.caption)
        colors = [c for _, c, _ in objects]
        assert len(objects) == len(ex.attrs["objects"]), ex.caption
        assert all(c is None for c in colors) or all(c is not None for c in colors), ex.caption  # whole captions
        without_color += colors[0] is None
        assert not any(name in ex.caption for name in COLORS) or colors[0] is not None, ex.caption
        assert caption_describes(parse_caption(ex.caption), ex.attrs), ex.caption
        assert ex.attrs == plain[i].attrs  # the option changes captions, never scenes
    assert 0.4 < without_color / len(ds) < 0.6
    assert not any(c is None for i in range(200) for _, c, _ in parse_caption(plain[i].caption)[0])
    with pytest.raises(ValueError, match="shape_only"):
        ShapesDataset("train", 10, shape_only=1.5)


def test_shape_only_caption_is_true_of_every_color_and_matches_each_object_once():
    star = dict(size="small", color="red", shape="star")
    attrs = {"background": "dark", "objects": [star, {**star, "size": "large", "color": "blue"}]}
    assert caption_describes(parse_caption("a star and a star"), attrs)
    # A greedy match would give "a star" the small star and leave "a small star" nothing.
    assert caption_describes(parse_caption("a star and a small star on a dark background"), attrs)
    assert not caption_describes(parse_caption("a small star and a small star"), attrs)
    assert not caption_describes(parse_caption("a star"), attrs)  # one object left unnamed
    assert not caption_describes(parse_caption("a star and a circle"), attrs)
    for color in COLORS:
        square = {"background": "light", "objects": [dict(size="large", color=color, shape="square")]}
        assert caption_describes(parse_caption("a photo of a square"), square)
        assert not caption_describes(parse_caption("a photo of a diamond"), square)
    # An in-between size fits no size word; an unnamed (in-between) background fits no name.
    middle = {"background": None, "objects": [dict(size=None, color="red", shape="circle")]}
    assert caption_describes(parse_caption("a red circle"), middle)
    assert not caption_describes(parse_caption("a small red circle"), middle)
    assert not caption_describes(parse_caption("a red circle on a grey background"), middle)


# ---------------------------------------------------------------- digits


def test_digits_split_is_stratified_disjoint_and_complete():
    train, test = digits.split_indices("train"), digits.split_indices("test")
    _, labels = digits.load_raw()
    assert len(train) + len(test) == len(labels) == 1797
    assert not set(train) & set(test)
    assert 340 <= len(test) <= 380
    per_class = np.bincount(labels[test], minlength=10) / np.bincount(labels, minlength=10)
    assert np.allclose(per_class, 0.2, atol=0.01)
    assert np.array_equal(digits.split_indices("test", seed=0), test)
    assert not np.array_equal(digits.split_indices("test", seed=1), test)


def test_digits_examples_are_real_distinct_images():
    ds = digits.DigitsDataset("test", image_size=32)
    ex = ds[0]
    assert ex.image.mode == "RGB" and ex.image.size == (32, 32)
    assert digits.class_names()[ex.label] in ex.caption or str(ex.label) in ex.caption
    means = np.zeros((10, 32, 32))
    counts = np.zeros(10)
    for e in ds:
        means[e.label] += pixels(e)[..., 0]
        counts[e.label] += 1
    means /= counts[:, None, None]
    assert means.mean() > 128  # dark ink on white paper
    d = np.linalg.norm((means[:, None] - means[None]).reshape(100, -1), axis=1).reshape(10, 10)
    assert d[~np.eye(10, dtype=bool)].min() > 100  # every pair of class means differs clearly


def test_digits_test_split_is_the_plain_scans_and_train_cycles():
    images, _ = digits.load_raw()
    test = digits.DigitsDataset("test", image_size=32)
    for i in (0, 5, 100):
        j = test[i].attrs["index"]
        want = Image.fromarray(images[j]).resize((32, 32), Image.Resampling.BILINEAR).convert("RGB")
        assert np.array_equal(pixels(test[i]), np.asarray(want))
    train = digits.DigitsDataset("train", size=3000, image_size=32, augment="affine(translate=0.1)")
    assert len(train) == 3000 and train[2999].label is not None
    n = len(train.indices)
    assert train[0].attrs["index"] == train[n].attrs["index"]  # cycling: same scan,
    assert not np.array_equal(pixels(train[0]), pixels(train[n]))  # another augmentation
    assert "seven" in digits.zero_shot_prompts("seven")[0]


def test_typeset_digits_use_only_non_dejavu_fonts_that_draw_every_digit():
    assert digits.TYPESET_FONTS and not [f for f in digits.TYPESET_FONTS if "dejavu" in f.lower()]
    with pytest.raises(ValueError, match="held out"):
        digits.font_path("DejaVuSans.ttf")
    assert "dejavu" not in ImageFont.load_default(size=20).getname()[0].lower()  # Pillow's own: Aileron
    for font in digits.TYPESET_FONTS:
        if font != "pillow":
            assert digits.font_path(font).is_file()
        glyphs = [digits.glyph(font, d, 0) for d in range(10)]
        assert all(g.max() > 0.9 and min(g.shape) >= 8 for g in glyphs[2:]), font  # real ink, not an empty box
        # ten different glyphs (a missing-glyph box would repeat)
        small = [np.asarray(Image.fromarray(g).resize((16, 24), Image.Resampling.BILINEAR)) for g in glyphs]
        diff = min(np.abs(small[i] - small[j]).mean() for i in range(10) for j in range(i + 1, 10))
        assert diff > 0.05, font
    ds = digits.DigitsDataset("train", size=400, image_size=48, sources={"typeset": 1.0})
    fonts = Counter(ds[i].attrs["font"] for i in range(400))
    assert set(fonts) == set(digits.TYPESET_FONTS)


def test_typeset_digits_are_whole_centered_ink_on_paper():
    ds = digits.DigitsDataset("train", size=200, image_size=48, sources={"typeset": 1.0})
    heights = []
    for ex in ds:
        a = pixels(ex)[..., 0].astype(int)
        border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
        assert border.max() - border.min() <= 1, ex.attrs  # nothing cut off at the edges
        paper = int(np.median(border))
        ys, xs = np.nonzero(np.abs(a - paper) > 40)
        assert len(ys) > 10 and a.min() < paper - 90, ex.attrs  # dark ink, at least 100 levels below the paper
        middle = np.array([xs.min() + xs.max(), ys.min() + ys.max()]) / 2
        assert np.abs(middle - 23.5).max() <= digits.TYPESET_SHIFT * 48 + 2, (ex.attrs, middle)
        heights.append((ys.max() - ys.min() + 1) / 48)
    lo, hi = digits.TYPESET_HEIGHT
    assert lo - 0.05 < min(heights) < lo + 0.1 and hi - 0.1 < max(heights) < hi + 0.05  # sizes vary


def test_digit_captions_without_style_words_fit_both_sources():
    ds = digits.DigitsDataset("train", size=300, image_size=32, sources={"sklearn": 0.5, "typeset": 0.5},
                              style_words=False)
    worded = digits.DigitsDataset("train", size=300, image_size=32, sources={"sklearn": 0.5, "typeset": 0.5})
    assert sum("handwritten" in e.caption or "printed" in e.caption for e in worded) > 50
    for ex, twin in zip(ds, worded):
        assert "handwritten" not in ex.caption and "printed" not in ex.caption, ex.caption
        other = {**ex.attrs, "source": "typeset" if ex.attrs["source"] == "sklearn" else "sklearn"}
        assert digits.caption_describes(ex.caption, ex.attrs) and digits.caption_describes(ex.caption, other)
        assert np.array_equal(np.asarray(ex.image), np.asarray(twin.image))  # captions change, images do not


def test_shapes_captions_can_leave_sizes_and_backgrounds_out():
    ds = ShapesDataset("train", 300, image_size=48, size_words=False, background_words=False)
    worded = ShapesDataset("train", 300, image_size=48)
    said = [parse_caption(e.caption) for e in worded]
    assert any(bg for _, bg in said) and any(size for objs, _ in said for size, _, _ in objs)
    for ex, twin in zip(ds, worded):
        objects, background = parse_caption(ex.caption)
        assert background is None and all(size is None for size, _, _ in objects), ex.caption
        assert caption_describes((objects, background), ex.attrs) and ex.attrs == twin.attrs


def test_digit_sources_mix_by_weight_with_captions_true_to_each():
    ds = digits.DigitsDataset("train", size=1000, image_size=32, sources={"sklearn": 0.5, "typeset": 0.5})
    by_source = Counter()
    for ex in ds:
        src = ex.attrs["source"]
        by_source[src] += 1
        assert digits.caption_describes(ex.caption, ex.attrs), ex.caption
        assert ("handwritten" in ex.caption) <= (src == "sklearn") and ("printed" in ex.caption) <= (src == "typeset")
    assert 400 < by_source["typeset"] < 600
    four = {"digit": 4, "source": "typeset"}
    assert digits.caption_describes("the number four", four) and digits.caption_describes("a printed 4", four)
    assert not digits.caption_describes("a handwritten 4", four)
    assert not digits.caption_describes("the digit 5", four)
    assert digits.caption_describes("a handwritten digit four", {"digit": 4, "source": "sklearn"})
    with pytest.raises(ValueError, match="sources"):
        digits.DigitsDataset("train", sources={"mnist": 1.0})


def test_digits_augmentation_is_deterministic_per_index():
    aug = "affine(rotate=15, shear=10, translate=0.05)|stroke(width=(-1, 1))|blur(p=0.5)|invert(p=0.5)|downup(p=0.5)"
    kw = dict(split="train", size=500, image_size=48, sources={"sklearn": 0.5, "typeset": 0.5}, augment=aug)
    a, b = digits.DigitsDataset(**kw), digits.DigitsDataset(**kw)
    for i in (3, 77, 499):
        assert np.array_equal(pixels(a[i]), pixels(b[i])) and a[i].caption == b[i].caption
    inverted = sum(pixels(a[i])[0, 0, 0] < 128 for i in range(200))
    assert 60 < inverted < 140  # invert(p=0.5): white on black about half the time


def test_pair_labels_keep_handwritten_and_printed_apart():
    from vistas.training.batches import pair_labels
    from vistas.training.data.types import Example

    blank = Image.new("RGB", (8, 8))
    exs = [Example(blank, "a handwritten 4", 4, {"digit": 4, "source": "sklearn"}),
           Example(blank, "a printed 4", 4, {"digit": 4, "source": "typeset"}),
           Example(blank, "the number four", 4, {"digit": 4, "source": "typeset"}),
           Example(blank, "the number five", 5, {"digit": 5, "source": "sklearn"})]
    labels = pair_labels(["digits"] * 4, exs)  # labels[i, j]: is caption j true of image i?
    want = np.array([[1, -1, 1, -1], [-1, 1, 1, -1], [-1, 1, 1, -1], [-1, -1, -1, 1]], np.float32)
    assert np.array_equal(labels, want)


def test_mixture_weights_follow_a_schedule():
    """A weight may be [[step, weight], ...]: linear between knots, constant outside (a curriculum)."""
    from vistas.training.batches import BatchMaker
    from vistas.training.config import Config

    config = Config(seed=0, batch_size=200, data=[
        dict(name="digits", weight=[[0, 1.0], [100, 0.0]], kwargs=dict(split="train", size=1000, image_size=16)),
        dict(name="shapes", weight=[[0, 0.0], [100, 1.0]], kwargs=dict(split="train", size=1000, image_size=16)),
    ])
    maker = BatchMaker(config, None)
    assert maker.weights_at(0).tolist() == [1.0, 0.0] and maker.weights_at(500).tolist() == [0.0, 1.0]
    assert np.allclose(maker.weights_at(25), [0.75, 0.25])

    def digits_in(step):
        return sum(isinstance(e, str) and ("digit" in e or "number" in e or "handwritten" in e)
                   for e in maker.batch(step).captions)

    assert digits_in(0) == 200 and digits_in(200) == 0
    assert 70 <= digits_in(50) <= 130  # half and half, drawn at random


def test_a_constant_weight_draws_the_batches_it_always_did():
    """Schedules must not change the batches of existing recipes: resumed runs replay their data."""
    from vistas.training.batches import BatchMaker
    from vistas.training.config import Config

    entries = [dict(name="digits", weight=0.3, kwargs=dict(split="train", size=1000, image_size=16)),
               dict(name="shapes", weight=0.7, kwargs=dict(split="train", size=1000, image_size=16))]
    maker = BatchMaker(Config(seed=3, batch_size=32, data=entries), None)
    rng = np.random.default_rng([3, 1, 7])  # what batch(7) drew before schedules existed
    which = rng.choice(2, size=32, p=np.array([0.3, 0.7]))
    captions = [maker.sources[int(s)][int(rng.integers(1000))].caption for s in which]
    assert maker.batch(7).captions == captions


@pytest.mark.parametrize("weight, message", [
    ("a lot", "not a number or a list"),
    ([[100, 1.0], [0, 0.5]], "increasing steps"),
    ([[0, -1.0]], "weights >= 0"),
])
def test_bad_weight_schedules_are_refused(weight, message):
    from vistas.training.batches import BatchMaker
    from vistas.training.config import Config

    config = Config(seed=0, batch_size=8, data=[dict(name="digits", weight=weight, kwargs=dict(split="train", size=10))])
    with pytest.raises(ValueError, match=message):
        BatchMaker(config, None)


def test_a_mixture_that_empties_is_refused():
    from vistas.training.batches import BatchMaker
    from vistas.training.config import Config

    config = Config(seed=0, batch_size=8, data=[
        dict(name="digits", weight=[[0, 1.0], [100, 0.0]], kwargs=dict(split="train", size=10)),
        dict(name="shapes", weight=[[150, 0.0], [200, 1.0]], kwargs=dict(split="train", size=10))])
    with pytest.raises(ValueError, match="all 0 at step 100"):
        BatchMaker(config, None)


# ---------------------------------------------------------------- the recipe


def test_the_recipe_trains_on_the_varied_data_with_its_augmentations():
    from vistas.images import ImageSpec
    from vistas.training.batches import BatchMaker
    from vistas.training.config import load_config

    config = load_config(f"{ROOT}/configs/siglip_shapes_digits.py:quick=True,batch_size=64")
    entries = {d["name"]: d["kwargs"] for d in config.data}
    assert entries["digits"]["sources"].get("typeset", 0) > 0 and entries["digits"]["augment"]
    maker = BatchMaker(config, ImageSpec(**config.image))
    shapes_ds, digits_ds, warmup_ds = maker.sources  # the varied drawing, digits, the curriculum's start
    assert shapes_ds.augment.spec and shapes_ds.style.position_grid == 0
    assert warmup_ds.style.position_grid == 8 and not warmup_ds.augment.ops
    # Digits as scanned and printed, and as placed in photographs: white on black, small, anywhere.
    assert {op.name for op in digits_ds.augment.ops} >= {"stroke", "blur", "contrast", "downup", "invert", "affine"}
    # Captions true of both sources only: see the recipe (style words stopped the digits learning).
    assert not digits_ds.style_words
    assert "affine" not in {op.name for op in shapes_ds.augment.ops}  # would break the rotation rule
    for step in (0, 1000):  # on the old drawing, then on the varied one
        batch = maker.batch(step)
        assert all(im.size == (48, 48) and im.mode == "RGB" for im in batch.images)
        assert np.array_equal(np.diag(batch.pair_labels), np.ones(64))



# ---------------------------------------------------------------- registry


def test_registry_builds_by_name_and_rejects_duplicates():
    assert {"shapes", "digits", "user"} <= set(DATASETS)
    assert len(get_dataset("shapes", split="train", size=5)) == 5
    with pytest.raises(ValueError, match="already registered"):
        register("shapes", ShapesDataset)
    with pytest.raises(KeyError, match="known"):
        get_dataset("imagenet")


def test_user_dataset_trains_on_captioned_items_only(tmp_path):
    for name in ("a", "b"):
        Image.new("RGB", (8, 8), "red").save(tmp_path / f"{name}.png")
    (tmp_path / "a.txt").write_text("a red square\n")  # b.png has no caption
    ds = get_dataset("user", source=str(tmp_path))
    examples = list(ds)
    assert [(e.caption, e.attrs["id"]) for e in examples] == [("a red square", "a.png")]
    assert ds.stats.ok == 1 and ds.stats.by_code == {"missing_caption": 1}
    assert ds.count_items() == 2


def test_data_modules_do_not_import_torch():
    import subprocess

    code = "import sys, vistas.training.data, vistas.sources; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_style_ablations_change_only_their_own_variation():
    """rotation=0, forms=False, levels, jitter=False: for finding which variation slows learning.
    The defaults draw exactly the scenes they drew before the knobs existed (same rng draws)."""
    base = ShapesDataset("train", 40, image_size=48)
    plain = ShapesDataset("train", 40, image_size=48, style=dict(rotation=0.0, forms=False, levels=(185, 255),
                                                                 jitter=False))
    for a, b in zip(base, plain):
        assert [o["center"] for o in a.attrs["objects"]] == [o["center"] for o in b.attrs["objects"]]
        assert [(o["color"], o["shape"]) for o in a.attrs["objects"]] == [(o["color"], o["shape"]) for o in b.attrs["objects"]]
        for o in b.attrs["objects"]:
            assert o["angle"] == 0 and o["rgb"] == shapes.COLORS[o["color"]]
            form = shapes.FORMS[o["shape"]]
            assert o["form"] == (None if form is None else sum(form) / 2)
        assert 185 <= b.attrs["level"] <= 255
    assert any(o["angle"] for e in base for o in e.attrs["objects"])
    with pytest.raises(ValueError, match="rotation"):
        ShapesDataset("train", 1, style=dict(rotation=2.0))
    with pytest.raises(ValueError, match="levels"):
        ShapesDataset("train", 1, style=dict(levels=(200, 100)))


def test_the_bundled_recipe_starts_on_the_old_drawing_and_hands_over_to_the_varied_one():
    # Issue 13: with the varied drawing alone, shape words and shape features never found each
    # other (configs/siglip_shapes_digits.py); the recipe's curriculum starts on WARMUP_STYLE.
    from vistas.training.batches import BatchMaker
    from vistas.training.config import load_config

    recipe = load_config("siglip_shapes_digits")
    batches = BatchMaker(recipe, None)
    assert np.allclose(batches.weights_at(0), [0, 0.3, 0.7]) and np.allclose(batches.weights_at(300), [0.35, 0.3, 0.35])
    assert np.allclose(batches.weights_at(600), [0.7, 0.3, 0]) and np.allclose(batches.weights_at(4000), [0.7, 0.3, 0])
    varied, warmup = recipe.data[0]["kwargs"], recipe.data[2]["kwargs"]
    assert "style" not in varied and varied["augment"] and warmup["augment"] == ""
    assert warmup["style"]["position_grid"] == 8 and warmup["style"]["rotation"] == 0  # the pre-issue-13 generator
    assert {k: v for k, v in warmup.items() if k not in ("style", "augment")} == {k: v for k, v in varied.items() if k != "augment"}
    assert recipe.model["image"]["stem"] == "conv"
    assert len(load_config("siglip_shapes_digits:curriculum=0").data) == 2
    # FlexiViT needs a stem PI-resize can resize: the hybrid one, with the same curriculum.
    flexi = load_config("flexivit_shapes_digits")
    assert flexi.model["image"]["stem"] == "hybrid" and len(flexi.data) == 3


def test_the_shapes_probes_vary_one_thing_from_the_old_style():
    from vistas.training.batches import BatchMaker
    from vistas.training.config import load_config

    old = load_config("siglip_shapes_probes:v=old")
    geometry = load_config("siglip_shapes_probes:v=geometry")
    style_old, style_geo = (c.data[0]["kwargs"]["style"] for c in (old, geometry))
    assert {k for k in style_old if style_old[k] != style_geo[k]} == {"rotation", "forms"}
    assert old.data[1] == load_config("siglip_shapes_digits").data[1]  # the bundled recipe's digits
    curriculum = BatchMaker(load_config("siglip_shapes_probes:v=curriculum,ramp=100"), None)
    assert np.allclose(curriculum.weights_at(0), [0, 0.3, 0.7]) and np.allclose(curriculum.weights_at(100), [0.7, 0.3, 0])
    with pytest.raises(ValueError, match="known"):
        load_config("siglip_shapes_probes:v=everything")
