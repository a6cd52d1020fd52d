"""The floors of ../shared/DESIGN.md as a check: every import arrow of the source tree is one the
table below allows, no module imports torch where serving runs, and the tree has no import cycle.

A layer is a set of modules; an arrow from layer A to layer B (A != B) must be in ALLOWED[A].
Arrows inside a layer are free (but still must not form cycles).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support.imports import Import, cycles, imports, modules, package_dirs

ROOT = Path(__file__).resolve().parents[2]

# Floor 1, the shared contract: bundle spec, images, inputs, text, tokenizer, v2 names, data sources.
CONTRACT = ("vistas.bundle", "vistas.images", "vistas.inputs", "vistas.naflex", "vistas.tokenizer",
            "vistas.v2_protocol", "vistas.sources", "vistas.atomic")
LAYERS: dict[str, tuple[str, ...]] = {
    "contract": ("vistas", *CONTRACT),  # `vistas` alone: the package's __init__ (version, docstring)
    "inference": ("vistas.inference",),  # floor 2: bundle runtimes behind one interface + the model
    "index": ("vistas.index",),  # floor 3
    "training": ("vistas.training",),  # floor 3
    "configs": ("vistas.configs",),  # recipes: training's Python configs
    "deploy": ("vistas.deploy",),  # floor 3
    "serving": ("vistas.serving",),  # floor 4: the HTTP app
    "export": ("vistas.export",),  # floor 5
    "bench": ("vistas.bench",),  # floor 5
    "cli": ("vistas.cli", "vistas.demo"),  # floor 6: the command line and the demo
    "sdk": ("vistas_client",),  # the SDK: its own distribution
}
# Every allowed arrow between layers, DESIGN.md's floors ("an arrow only points down").
ALLOWED: dict[str, set[str]] = {
    "contract": set(),  # imports nothing of ours
    "inference": {"contract"},
    "index": {"contract", "inference"},
    "training": {"contract"},
    "configs": {"training"},  # a recipe returns a training Config
    "deploy": {"contract"},
    "serving": {"contract", "inference", "index"},
    "export": {"contract", "inference", "index", "training", "deploy"},
    # "bench: anything below"; it also builds the B/16 bundle it measures through export (same floor).
    "bench": {"contract", "inference", "index", "training", "configs", "deploy", "serving", "export"},
    "cli": {"contract", "inference", "index", "training", "configs", "deploy", "serving", "export", "bench"},
    "sdk": set(),  # imports nothing of ours
}
# Layers that run in the serving image, where torch is not installed (not even a lazy import).
NO_TORCH = {"contract", "inference", "index", "deploy", "serving", "sdk"}
TORCH_STACK = {"torch", "transformers", "safetensors", "onnx", "onnxscript", "sklearn", "skimage", "matplotlib"}


def layer_of(module: str) -> str:
    best = max(((p, name) for name, ps in LAYERS.items() for p in ps if module == p or module.startswith(p + ".")),
               key=lambda t: len(t[0]), default=(None, None))
    if best[1] is None:
        raise AssertionError(f"module {module} belongs to no layer: add it to LAYERS in {__file__}")
    return best[1]


def source_tree(root: Path) -> dict[str, Path]:
    roots = package_dirs(root / "pyproject.toml")
    roots["vistas_client"] = root / "clients" / "vistas_client"
    return modules(roots)


def violations(edges: list[Import]) -> list[str]:
    """One line per forbidden arrow: file:line, the arrow, and the layers."""
    bad = []
    for e in edges:
        src = layer_of(e.source)
        top = e.target.split(".")[0]
        if top in ("vistas", "vistas_client"):
            dst = layer_of(e.target)
            if dst != src and dst not in ALLOWED[src]:
                bad.append(f"{e.file}:{e.line}: {e.source} -> {e.target} ({src} may not import {dst}; "
                           f"allowed: {sorted(ALLOWED[src]) or 'nothing of ours'})")
        elif src in NO_TORCH and top in TORCH_STACK:
            bad.append(f"{e.file}:{e.line}: {e.source} -> {e.target} ({src} runs without the torch stack)")
    return bad


@pytest.fixture(scope="module")
def tree():
    mods = source_tree(ROOT)
    return mods, imports(mods)


def test_every_module_has_a_layer_and_every_layer_an_arrow_table(tree):
    mods, _ = tree
    assert set(ALLOWED) == set(LAYERS)
    for m in mods:
        layer_of(m)


def test_every_arrow_is_allowed(tree):
    _, edges = tree
    assert any(e.source.startswith("vistas.serving") for e in edges), "the graph is empty: the reader is broken"
    bad = violations(edges)
    assert not bad, "forbidden imports:\n" + "\n".join(bad)


def test_no_import_cycles(tree):
    _, edges = tree
    found = cycles(edges)
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_a_forbidden_import_is_reported(tmp_path):
    """The check itself fails on what it must refuse: a tree with three planted faults."""
    for folder in ("vistas", "serving", "index", "export"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "clients" / "vistas_client").mkdir(parents=True)
    (tmp_path / "clients" / "vistas_client" / "__init__.py").write_text("from vistas.bundle import BundleSpec\n")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.setuptools]\npackage-dir = { "vistas" = "vistas", "vistas.serving" = "serving", '
        '"vistas.index" = "index", "vistas.export" = "export" }\n'
    )
    (tmp_path / "vistas" / "bundle.py").write_text("x = 1\n")
    (tmp_path / "serving" / "app.py").write_text("def f():\n    from vistas.export import onnx_export\n")
    (tmp_path / "export" / "onnx_export.py").write_text("import torch\nfrom vistas.index.a import y\n")
    (tmp_path / "index" / "a.py").write_text("from . import b\ny = 1\n")
    (tmp_path / "index" / "b.py").write_text("def g():\n    from vistas.index.a import y\n    import torch\n")
    edges = imports(source_tree(tmp_path))
    bad = violations(edges)
    assert any("serving/app.py:2: vistas.serving.app -> vistas.export.onnx_export" in b for b in bad), bad
    assert any("vistas_client -> vistas.bundle (sdk may not import contract" in b for b in bad), bad
    assert any("index/b.py:3: vistas.index.b -> torch" in b for b in bad), bad
    assert not any("export/onnx_export.py:1" in b for b in bad), "export may use torch"
    assert cycles(edges) == [["vistas.index.a", "vistas.index.b"]]
