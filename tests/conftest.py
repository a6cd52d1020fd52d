"""Session fixtures shared by training, export and end-to-end tests.

`quick_run` trains the real recipe in its CI size once per session (a few minutes on two
cores); export and serving tests then use that trained model, not a stand-in.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.disk_calls import disk_calls  # noqa: F401  (a fixture: os.fsync / os.replace calls in order)

ROOT = Path(__file__).resolve().parents[1]
QUICK_CONFIG = f"{ROOT}/configs/siglip_shapes_digits.py:quick=True"


@pytest.fixture(scope="session", autouse=True)
def data_dir(tmp_path_factory) -> Path:
    """VISTAS_DATA_DIR for the whole session (servers in subprocesses inherit it): a server started
    without an index directory keeps its collections here, never in the real ~/.local/share."""
    import os

    path = tmp_path_factory.mktemp("data_dir")
    before = os.environ.get("VISTAS_DATA_DIR")
    os.environ["VISTAS_DATA_DIR"] = str(path)
    yield path
    if before is None:
        os.environ.pop("VISTAS_DATA_DIR", None)
    else:
        os.environ["VISTAS_DATA_DIR"] = before


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> tuple[Path, Path]:
    """Two tiny bundles (tests/support/tiny_bundle.py), for inference and serving tests."""
    from support.tiny_bundle import build_bundle

    root = tmp_path_factory.mktemp("bundles")
    return build_bundle(root / "a", "tiny-a", seed=0), build_bundle(root / "b", "tiny-b", seed=1)


@pytest.fixture(scope="session")
def small_flexi_bundle(tmp_path_factory) -> Path:
    """A FlexiViT bundle "flexi" at patch sizes 8 (its default) and 16 (tests/support/flexi_bundle.py)."""
    from support.flexi_bundle import build_flexi_bundle

    return build_flexi_bundle(tmp_path_factory.mktemp("flexi") / "bundle")


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory) -> Path:
    """The run directory of a quick training of the bundled recipe."""
    from vistas.training.config import load_config
    from vistas.training.train import train

    workdir = tmp_path_factory.mktemp("quick_run")
    train(load_config(QUICK_CONFIG), workdir, progress=False)
    return workdir


@pytest.fixture(scope="session")
def quick_metrics(quick_run) -> dict:
    """The last evaluation record of the quick run."""
    records = [json.loads(line) for line in (quick_run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "digits/accuracy" in r][-1]


@pytest.fixture(scope="session")
def quick_bundle(quick_run, tmp_path_factory) -> Path:
    from vistas.export.onnx_export import export_checkpoint

    out = tmp_path_factory.mktemp("quick_bundle") / "bundle"
    export_checkpoint(quick_run / "final", out, name="quick")
    return out
