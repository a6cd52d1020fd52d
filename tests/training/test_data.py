"""Training data sets: determinism, the held-out split's guarantees, real digits, the registry."""

from __future__ import annotations

import sys
from collections import Counter

import numpy as np
import pytest

from vistas.training.data import DATASETS, digits, get_dataset, register, shapes
from vistas.training.data.shapes import (
    ALL_PAIRS,
    COLORS,
    HELDOUT_PAIRS,
    SEEN_PAIRS,
    SHAPES,
    ShapesDataset,
    caption_describes,
    parse_caption,
)


def pixels(example) -> np.ndarray:
    return np.asarray(example.image)


# ---------------------------------------------------------------- shapes


def test_shapes_deterministic_per_seed_split_index():
    a, b = ShapesDataset("train", 50, seed=3), ShapesDataset("train", 50, seed=3)
    for i in (0, 7, 49):
        assert np.array_equal(pixels(a[i]), pixels(b[i]))
        assert a[i].caption == b[i].caption and a[i].attrs == b[i].attrs
    other = ShapesDataset("train", 50, seed=4)
    assert not all(np.array_equal(pixels(a[i]), pixels(other[i])) for i in range(5))
    # Random access order does not matter: example i is a function of i alone.
    assert np.array_equal(pixels(a[49]), pixels(ShapesDataset("train", 50, seed=3)[-1]))


def test_shapes_image_format_and_options():
    ex = ShapesDataset("train", 1, image_size=96)[0]
    assert ex.image.mode == "RGB" and ex.image.size == (96, 96)
    single = ShapesDataset("train", 200, max_objects=1)
    assert all(len(single[i].attrs["objects"]) == 1 for i in range(200))
    with pytest.raises(IndexError):
        single[200]
    with pytest.raises(ValueError, match="split"):
        ShapesDataset("validation", 1)


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


def test_objects_are_drawn_in_their_color_at_their_center():
    ds = ShapesDataset("test_unseen", len(SHAPES))  # one of each shape
    for ex in ds:
        (obj,) = ex.attrs["objects"]
        x, y = (int(v) for v in obj["center"])
        assert tuple(pixels(ex)[y, x]) == COLORS[obj["color"]], obj


def test_zero_shot_prompts_use_articles():
    assert "a photo of a red circle" in shapes.zero_shot_prompts("red circle")
    assert "an orange square" in shapes.zero_shot_prompts("orange square")


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


def test_digits_shift_only_for_train_and_size_cycles():
    train = digits.DigitsDataset("train", size=3000, shift=3, image_size=32)
    assert len(train) == 3000 and train[2999].label is not None
    assert any(train[i].attrs["shift"] != (0, 0) for i in range(10))
    n = len(train.indices)
    assert train[0].attrs["index"] == train[n].attrs["index"]  # cycling: same scan, new shift
    test = digits.DigitsDataset("test", shift=3)
    assert all(test[i].attrs["shift"] == (0, 0) for i in range(10))
    assert "seven" in digits.zero_shot_prompts("seven")[0]


# ---------------------------------------------------------------- registry


def test_registry_builds_by_name_and_rejects_duplicates():
    assert {"shapes", "digits", "user"} <= set(DATASETS)
    assert len(get_dataset("shapes", split="train", size=5)) == 5
    with pytest.raises(ValueError, match="already registered"):
        register("shapes", ShapesDataset)
    with pytest.raises(KeyError, match="known"):
        get_dataset("imagenet")


def test_user_dataset_trains_on_captioned_items_only(tmp_path):
    from PIL import Image

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


def test_shapes_sit_on_the_position_grid_and_positions_vary():
    from vistas.training.data.shapes import POSITION_GRID, ShapesDataset

    ds = ShapesDataset("train", size=200, image_size=48)
    centers = {tuple(o["center"]) for ex in ds for o in ex.attrs["objects"]}
    assert all((c - POSITION_GRID / 2) % POSITION_GRID == 0 for xy in centers for c in xy), centers
    assert len(centers) >= 9, "objects must still move around the image"
    free = ShapesDataset("train", size=50, image_size=48, position_grid=0)
    assert any((c - 4) % 8 for ex in free for o in ex.attrs["objects"] for c in o["center"])


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
        assert a[k]["shape"] != b[k]["shape"] and {**a[k], "shape": None} == {**b[k], "shape": None}
        assert (b[k]["color"], b[k]["shape"]) in SEEN_PAIRS  # never a held-out pair
        # Pixels differ only around the swapped object: same background, noise and other objects.
        diff = np.abs(np.asarray(ex.image, np.int16) - np.asarray(twin.image, np.int16)).max(axis=-1)
        ys, xs = np.nonzero(diff)
        cx, cy = a[k]["center"]
        assert len(ys) and np.hypot(xs - cx, ys - cy).max() <= 1.2 * a[k]["radius"] + 1.5
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
