"""The independent eval sets (vistas.training.evals, issue 13): they share no code with the training
generator, draw the same pixels for the same index, are balanced, keep shapes inside the image,
speak the model's vocabulary, use held-out fonts; and the gallery's precision@k on a case worked
out by hand."""

from __future__ import annotations

import ast
import csv
import os
import re
from collections import Counter
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

from support.imports import imports, modules
from vistas.training.batches import BatchMaker, eval_dataset
from vistas.training.config import load_config
from vistas.training.data import DATASETS, digits, get_dataset, shapes
from vistas.training.evals import (
    EVAL_DATASETS,
    EVAL_FONTS,
    PilShapesDataset,
    TypesetDigitsDataset,
    get_eval_dataset,
    pil_shapes,
    precision_at_k,
    shape_queries,
)

ROOT = Path(__file__).resolve().parents[2]
TRAINING = ROOT / "training"
FORBIDDEN = "vistas.training.data"


# ---------------------------------------------------------------- independence


def forbidden_imports(package_root: Path) -> list[str]:
    """'file:line -> target' for every import, at any depth, of vistas.training.data (or below) by a
    module of `package_root`/evals; relative imports and importlib calls included."""
    mods = modules({"vistas.training": package_root})
    evals = {m: f for m, f in mods.items() if m == "vistas.training.evals" or m.startswith("vistas.training.evals.")}
    assert evals, f"no modules under {package_root}/evals"
    bad = [f"{e.file}:{e.line} -> {e.target}" for e in imports(mods)
           if e.source in evals and (e.target == FORBIDDEN or e.target.startswith(FORBIDDEN + "."))]
    for file in evals.values():
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                    "import_module", "__import__"):
                bad.append(f"{file}:{node.lineno} -> dynamic import {ast.unparse(node)}")
    return bad


def test_eval_sets_import_nothing_from_the_training_generator():
    assert forbidden_imports(TRAINING) == []


def test_the_independence_check_catches_each_kind_of_import(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "evals").mkdir()
    for f in ("__init__.py", "data/__init__.py", "data/shapes.py", "evals/__init__.py", "evals/ok.py"):
        (tmp_path / f).write_text("import numpy\n")
    (tmp_path / "evals" / "bad.py").write_text(
        "from ..data.shapes import COLORS\n"
        "def f():\n"
        "    from vistas.training import data\n"
        "    import vistas.training.data.shapes\n"
        "    import importlib\n"
        "    return importlib.import_module('vistas.training' + '.data')\n")
    found = forbidden_imports(tmp_path)
    assert len(found) == 4, found
    assert [line.rsplit(":", 1)[-1].split(" ")[0] for line in found] == ["1", "3", "4", "6"]


DEJAVU_FILE = re.compile(r"dejavu[\w-]*\.(ttf|otf)", re.IGNORECASE)


def string_literals(file: Path) -> list[tuple[int, str]]:
    """(line, value) of every string constant of a module except docstrings (prose may name a font)."""
    tree = ast.parse(file.read_text())
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def test_no_training_constant_is_reused():
    """Own colours (not the training palette's RGB values); no training module names a DejaVu font
    file (EVAL_FONTS, or their near-copies Oblique / Mono / Display) in its code."""
    assert not set(pil_shapes.COLOURS.values()) & set(shapes.COLORS.values())
    for file in sorted((TRAINING / "data").rglob("*.py")):
        for line, value in string_literals(file):
            assert not DEJAVU_FILE.search(value), f"{file}:{line} names {value!r}: DejaVu fonts are held out for evals"
    training_fonts = [Path(str(f)).name for f in getattr(digits, "TYPESET_FONTS", ())]
    assert not [f for f in training_fonts if f in EVAL_FONTS or "dejavu" in f.lower()], training_fonts


def test_the_font_check_sees_code_not_prose(tmp_path):
    (tmp_path / "m.py").write_text('"""Never DejaVuSans.ttf."""\nFONTS = ("STIXGeneral.ttf", "fonts/ttf/DejaVuSerif.ttf")\n'
                                   'GUARD = "dejavu"\n')
    assert [v for _, v in string_literals(tmp_path / "m.py") if DEJAVU_FILE.search(v)] == ["fonts/ttf/DejaVuSerif.ttf"]


def test_eval_sets_are_eval_only():
    """A recipe's `data` (get_dataset) cannot name them; its `evals` can, and no name means two sets."""
    assert not set(EVAL_DATASETS) & set(DATASETS)
    for name in EVAL_DATASETS:
        with pytest.raises(KeyError):
            get_dataset(name)
    assert isinstance(eval_dataset("pil_shapes_36", size=3), PilShapesDataset)
    assert eval_dataset("digits", split="test").class_names() == digits.class_names()


def test_the_recipe_runs_the_independent_suites():
    config = load_config(f"{ROOT}/configs/siglip_shapes_digits.py:quick=True,eval_size=20")
    suites = {s.name: s for s in BatchMaker(config, None).eval_suites()}
    assert {"pil_shapes_rgb9", "pil_shapes_36", "pil_shapes_36_any_bg", "typeset_digits"} <= set(suites)
    assert len(suites["pil_shapes_rgb9"].class_names) == 9 and len(suites["pil_shapes_36"].class_names) == 36
    assert all(len(suites[n].examples) == 20 and suites[n].kind == "zero_shot"
               for n in ("pil_shapes_rgb9", "pil_shapes_36", "pil_shapes_36_any_bg", "typeset_digits"))
    levels = {e.attrs["background"] for e in suites["pil_shapes_36_any_bg"].examples}
    assert len(levels) > 5 and {e.attrs["background"] for e in suites["pil_shapes_36"].examples} == {128}


# ---------------------------------------------------------------- determinism and balance

SETS = [("pil_shapes_rgb9", {}), ("pil_shapes_36", {}), ("pil_shapes_36", {"background": "random"}),
        ("typeset_digits", {})]


@pytest.mark.parametrize(("name", "kwargs"), SETS)
def test_same_index_same_pixels(name, kwargs):
    a, b = get_eval_dataset(name, size=60, **kwargs), get_eval_dataset(name, size=60, **kwargs)
    for i in (0, 13, 59):
        x, y = b[i], a[i]
        assert np.array_equal(np.asarray(x.image), np.asarray(y.image))
        assert (x.caption, x.label, x.attrs) == (y.caption, y.label, y.attrs)
    assert np.array_equal(np.asarray(a[-1].image), np.asarray(a[59].image))
    other = get_eval_dataset(name, size=60, seed=1, **kwargs)
    assert not any(np.array_equal(np.asarray(a[i].image), np.asarray(other[i].image)) for i in range(10))


@pytest.mark.parametrize(("name", "kwargs"), SETS)
def test_classes_are_balanced(name, kwargs):
    ds = get_eval_dataset(name, size=100, **kwargs)
    counts = Counter(e.label for e in ds)
    assert set(counts) == set(range(min(100, len(ds.class_names()))))
    assert max(counts.values()) - min(counts.values()) <= 1, counts
    names = ds.class_names()
    for e in list(ds)[:40]:  # the caption names the label
        assert names[e.label] in e.caption


def test_fonts_are_balanced_and_all_used():
    fonts = Counter(e.attrs["font"] for e in TypesetDigitsDataset(size=90))
    assert fonts == Counter({f: 30 for f in EVAL_FONTS})


# ---------------------------------------------------------------- geometry


@pytest.mark.parametrize("background", ["grey", "random"])
def test_a_shape_is_whole_inside_its_box_and_the_image(background):
    ds = PilShapesDataset(size=360, background=background)
    centers = []
    for e in ds:
        px = np.asarray(e.image).astype(int)  # (S, S, 3)
        s = px.shape[0]
        bg = e.attrs["background"]
        ink = np.argwhere((px != bg).any(axis=2))  # (n, 2) rows, cols of the shape
        assert len(ink) > 0.02 * s * s, e.attrs
        # Nothing touches the border: the shape was not cut by the image edge.
        border = np.concatenate([px[0], px[-1], px[:, 0], px[:, -1]])
        assert (border == bg).all(), e.attrs
        # All drawn pixels are the object's colour, inside its box (PIL fills the box inclusively).
        assert (px[ink[:, 0], ink[:, 1]] == pil_shapes.COLOURS[e.attrs["colour"]]).all()
        (cx, cy), r = e.attrs["center"], e.attrs["radius"]
        assert ink[:, 1].min() >= cx - r - 1 and ink[:, 1].max() <= cx + r + 1
        assert ink[:, 0].min() >= cy - r - 1 and ink[:, 0].max() <= cy + r + 1
        assert 0.20 * s <= r <= 0.33 * s
        centers.append((cx / s, cy / s))
    centers = np.asarray(centers)
    assert centers.min() < 0.3 and centers.max() > 0.7  # anywhere, not only near the middle


def test_each_shape_has_its_own_outline():
    """Same place, same size (r = 40 px): each shape covers its geometry's area, in r^2 (PIL fills
    edge pixels too, so areas come out a few per cent over)."""
    t = pil_shapes.CROSS_HALF_WIDTH
    want = {"circle": np.pi, "square": 4, "triangle": 2, "diamond": 2 * pil_shapes.DIAMOND_HALF_WIDTH,
            "star": 5 * pil_shapes.STAR_INNER * np.sin(np.pi / 5),  # n R rho sin(pi / n), R = 1
            "cross": 2 * (2 * 2 * t) - (2 * t) ** 2}
    for sh in pil_shapes.SHAPES:
        img = Image.new("RGB", (128, 128), (128,) * 3)
        pil_shapes.draw_shape(img, sh, (255, 0, 0), 64, 64, 40)
        area = int((np.asarray(img)[..., 1] == 0).sum()) / 40**2
        assert want[sh] <= area <= 1.08 * want[sh], (sh, area, want[sh])


def test_a_digit_is_inside_its_recorded_box_at_the_asked_height():
    ds = TypesetDigitsDataset(size=120)
    for e in ds:
        px = np.asarray(e.image.convert("L")).astype(int)
        paper = 0 if e.attrs["white_on_black"] else 255
        ink = np.argwhere(np.abs(px - paper) > 64)
        x0, y0, x1, y1 = e.attrs["ink_box"]
        assert ink[:, 1].min() >= x0 - 1 and ink[:, 1].max() <= x1 and ink[:, 0].min() >= y0 - 1 and ink[:, 0].max() <= y1
        assert 0.2 * 160 - 3 <= y1 - y0 <= 0.8 * 160 + 3, e.attrs
    assert Counter(e.attrs["white_on_black"] for e in ds).keys() == {True, False}


# ---------------------------------------------------------------- vocabulary and fonts


def test_class_names_are_the_models_own():
    vocabulary = set(shapes.class_names())
    assert set(get_eval_dataset("pil_shapes_rgb9").class_names()) < vocabulary
    assert len(get_eval_dataset("pil_shapes_rgb9").class_names()) == 9
    assert set(get_eval_dataset("pil_shapes_36").class_names()) == vocabulary
    assert get_eval_dataset("typeset_digits").class_names() == digits.class_names()


def test_prompts_use_only_words_of_training_captions():
    words = set()
    for ds in (shapes.ShapesDataset("train", 3000, shape_only=0.5), digits.DigitsDataset("train", size=600)):
        words |= {w for e in ds for w in re.findall(r"\w+", e.caption)}
    for name in EVAL_DATASETS:
        ds = get_eval_dataset(name)
        for c in ds.class_names():
            for prompt in ds.zero_shot_prompts(c):
                assert set(re.findall(r"\w+", prompt)) <= words, (prompt, set(re.findall(r"\w+", prompt)) - words)


def test_eval_fonts_are_matplotlibs():
    font_dir = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    assert len(set(EVAL_FONTS)) == 3
    for name in EVAL_FONTS:
        assert os.path.isfile(os.path.join(font_dir, name)), name
    with pytest.raises(FileNotFoundError, match="NoSuchFont.ttf"):
        TypesetDigitsDataset(fonts=("NoSuchFont.ttf",))


# ---------------------------------------------------------------- gallery precision@k


def unit(deg: float) -> np.ndarray:
    return np.array([np.cos(np.radians(deg)), np.sin(np.radians(deg))])


def test_precision_at_k_on_a_case_worked_by_hand():
    # Two queries along the axes; six images at 0, 10, 20, 30, 80, 90 degrees.
    # "a red circle" (x axis) ranks images 0,1,2,3,4,5; "a blue square" (y axis) ranks 5,4,3,2,1,0.
    gallery = np.stack([unit(d) for d in (0, 10, 20, 30, 80, 90)])  # (6, 2)
    contents = [{"red circle"}, {"blue square"}, {"red circle", "blue square"}, {"blue square"}, set(),
                {"red circle", "yellow star"}]
    seen = []

    def texts(batch):
        seen.append(list(batch))
        return np.stack([{"a red circle": unit(0), "a blue square": unit(90)}[t] for t in batch])

    queries = {"red circle": "a red circle", "blue square": "a blue square"}
    got = precision_at_k(texts, gallery, contents, queries, k=5)
    # red: top 5 = images 0..4, relevant 0 and 2 -> 2/5; 3 relevant in all -> ceiling 3/5.
    # blue: top 5 = 5,4,3,2,1, relevant 3, 2 (it also holds a red circle) and 1 -> 3/5; ceiling 3/5.
    assert got == pytest.approx({"precision@5/red circle": 0.4, "precision@5/blue square": 0.6,
                                 "precision@5": 0.5, "precision@5_ceiling": 0.6})
    assert seen == [["a red circle", "a blue square"]]
    top1 = precision_at_k(texts, gallery, contents, queries, k=1)  # red -> image 0 (yes), blue -> image 5 (no)
    assert top1["precision@1/red circle"] == 1 and top1["precision@1/blue square"] == 0
    with pytest.raises(ValueError, match="one per gallery image"):
        precision_at_k(texts, gallery, contents[:5], queries)


def test_shape_queries_are_the_36_labels():
    q = shape_queries()
    assert set(q) == set(shapes.class_names())
    assert q["red circle"] == "a red circle" and q["orange star"] == "an orange star"


def test_gallery_precision_reads_the_demo_gallery_format(tmp_path):
    """gallery.csv (as vistas.demo.write_gallery writes it) -> contents -> precision, on a fake model
    whose image vector is the image's colour and whose text vector is the queried colour."""
    from vistas.demo import gallery_contents, gallery_precision

    rows = [("a.png", "shape", "red circle", (255, 0, 0)), ("b.png", "shape", "blue square", (0, 0, 255)),
            ("c.png", "digit", "seven", (0, 255, 0))]
    with open(tmp_path / "gallery.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "path", "caption", "kind", "label", "split"])
        w.writeheader()
        for path, kind, label, colour in rows:
            Image.new("RGB", (8, 8), colour).save(tmp_path / path)
            w.writerow({"id": path, "path": path, "caption": label, "kind": kind, "label": label, "split": "test"})
    paths, contents = gallery_contents(tmp_path / "gallery.csv")
    assert paths == [tmp_path / r[0] for r in rows]
    assert contents == [{"red circle"}, {"blue square"}, set()]

    class Colours:
        def embed_images(self, images):
            x = np.stack([np.asarray(im, np.float64).mean(axis=(0, 1)) for im in images])
            return x / np.linalg.norm(x, axis=1, keepdims=True)

        def embed_texts(self, texts):
            rgb = {"red": [1, 0, 0], "blue": [0, 0, 1]}
            return np.asarray([rgb.get(t.split()[1], [0, 1, 0]) for t in texts], np.float64)

    got = gallery_precision(Colours(), tmp_path, k=1)
    assert got["gallery/precision@1/red circle"] == 1 and got["gallery/precision@1/blue square"] == 1
    # 36 queries; only those two have a relevant image, and each finds it first.
    assert got["gallery/precision@1"] == pytest.approx(2 / 36)
    assert got["gallery/precision@1_ceiling"] == pytest.approx(2 / 36)
