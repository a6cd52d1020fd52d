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
    # Digits meet their target (>= 90 %). Shapes do not meet issue 13's (>= 95 % on these varied
    # images; see models/siglip-shapes-digits/README.md); this guards what the model has: colour
    # alone gets 1/6 of the 36 colour x shape labels, so above that it also tells some shapes apart.
    assert figures["digits/accuracy"] >= 0.9 and figures["shapes_seen/accuracy"] > 1 / 6 + 0.05, figures


def test_digits_zero_shot_on_a_sample():
    served = load_model(str(MODEL / "bundle"))
    ds = get_dataset("digits", split="test", image_size=served.spec.preprocess.image.height)
    names = ds.class_names()
    right = sum(served.classify(ds[i].image, names)[0][0] == names[ds[i].label] for i in range(0, len(ds), 9))
    assert right >= 0.8 * len(range(0, len(ds), 9))
