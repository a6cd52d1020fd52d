"""The committed model: its bundle is the export of its checkpoint, and it classifies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vistas.bundle import load_bundle_spec, space_id
from vistas.images import preprocess_batch
from vistas.inference.model import load_model
from vistas.training.checkpoint import load_checkpoint
from vistas.training.data import get_dataset

MODEL = Path(__file__).resolve().parents[2] / "models" / "siglip-shapes-digits"



def test_bundled_model_is_committed():
    """The demo, the Docker image and these tests need it: a missing model is a failure, not a skip."""
    assert (MODEL / "bundle" / "bundle.json").is_file(), f"{MODEL}/bundle is missing: train and export it as {MODEL}/README.md says, and commit it"


def test_bundle_is_the_export_of_the_checkpoint():
    spec = load_bundle_spec(MODEL / "bundle")
    model, _, pre = load_checkpoint(MODEL / "checkpoint")
    assert spec.space_id == space_id([MODEL / "checkpoint" / "model.safetensors"], pre)
    assert spec.preprocess == pre
    examples = list(get_dataset("shapes", split="test_seen", size=8, image_size=pre.image.height, seed=9))
    served = load_model(str(MODEL / "bundle"))
    with torch.no_grad():
        want = model.encode_image(torch.from_numpy(preprocess_batch([e.image for e in examples], pre.image))).numpy()
    assert np.abs(served.embed_images([e.image for e in examples]) - want).max() <= 1e-4


def test_reported_figures_are_the_bundles_own():
    """models/.../eval.json (the README's figures) is what the bundle measures now."""
    from vistas.inference.model import load_model as load
    from vistas.training.batches import BatchMaker
    from vistas.training.config import load_config
    from vistas.training.evaluate import run_suites

    figures = json.loads((MODEL / "eval.json").read_text())
    served = load(str(MODEL / "bundle"))
    recipe = load_config(str(MODEL.parents[1] / "configs" / "siglip_shapes_digits.py"))
    measured = run_suites(served.embed_images, served.embed_texts,
                          BatchMaker(recipe, served.spec.preprocess.image).eval_suites())
    assert measured == pytest.approx(figures, abs=1e-9)
    # Issue 13's targets (models/siglip-shapes-digits/README.md), on images this project's training
    # generators did not draw (PIL shapes, held-out fonts) as well as its own test splits.
    assert figures["digits/accuracy"] >= 0.9 and figures["shapes_seen/accuracy"] >= 0.95, figures
    assert figures["pil_shapes_rgb9/accuracy"] >= 0.9 and figures["pil_shapes_36/accuracy"] >= 0.8, figures
    assert figures["typeset_digits/accuracy"] >= 0.8, figures


def test_digits_zero_shot_on_a_sample():
    served = load_model(str(MODEL / "bundle"))
    ds = get_dataset("digits", split="test", image_size=served.spec.preprocess.image.height)
    names = ds.class_names()
    right = sum(served.classify(ds[i].image, names)[0][0] == names[ds[i].label] for i in range(0, len(ds), 9))
    assert right >= 0.8 * len(range(0, len(ds), 9))


def test_the_readme_first_query_returns_five_red_circles(tmp_path):
    """Issue 13: `make demo`'s gallery, indexed by the batch job, served, and the README's first
    query ({"text": "a red circle", "k": 5}) over HTTP: five red circles."""
    import httpx

    from support.live_server import running_server
    from vistas.demo import write_gallery
    from vistas.index.build import build_index
    from vistas.serving.app import create_app
    from vistas.serving.settings import Settings

    csv_path = write_gallery(tmp_path / "gallery")
    bundle = MODEL / "bundle"
    build_index(str(csv_path), tmp_path / "index", load_model(str(bundle)), collection="default", progress=False)
    with running_server(create_app(Settings(bundles=[str(bundle)], index_dir=str(tmp_path / "index"), threads=1))) as live:
        hits = httpx.post(f"{live.url}/v1/search", json={"text": "a red circle", "k": 5}, timeout=60).json()["results"]
    assert [h["metadata"]["label"] for h in hits] == ["red circle"] * 5, hits
