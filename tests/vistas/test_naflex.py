"""NaFlex preprocessing (vistas.naflex, numpy + PIL) against transformers' Siglip2ImageProcessor
(its PIL backend, Siglip2ImageProcessorPil: the torchvision one needs torchvision, which
vistas never installs), and the bundle / TextSpec format rules that come with it."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from PIL import Image

from vistas.bundle import BundleSpec, Preprocess, load_bundle_spec, save_bundle_spec
from vistas.images import ImageSpec
from vistas.naflex import naflex_batch, size_for_patch_budget
from vistas.tokenizer import TextSpec, canonicalize


def _photos() -> list[Image.Image]:
    """Real photos at several aspect ratios, from square to 1:40 and 40:1, and tiny ones."""
    from skimage import data

    a, c = data.astronaut(), data.coffee()
    crops = [a, c, data.rocket(), a[:, 100:160], c[200:215], a[:400, :10], c[:3, :120], c[:2, :2], a[:33, :17]]
    return [Image.fromarray(np.ascontiguousarray(x)) for x in crops]


def test_size_for_patch_budget_equals_transformers():
    from transformers.models.siglip2.image_processing_pil_siglip2 import get_image_size_for_max_num_patches

    sides = (1, 2, 7, 16, 33, 100, 224, 257, 640, 1000, 4000)
    for (h, w), p, n in itertools.product(itertools.product(sides, sides), (14, 16), (1, 64, 256, 1024)):
        want = get_image_size_for_max_num_patches(h, w, p, n)
        assert size_for_patch_budget(h, w, p, n) == want, (h, w, p, n)
        assert (want[0] // p) * (want[1] // p) <= n or want == (p, p)


@pytest.mark.parametrize("patch,budget,resample", [(16, 256, "bilinear"), (14, 64, "bicubic"), (4, 30, "bilinear")])
def test_patches_mask_and_shapes_equal_transformers(patch, budget, resample):
    from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil

    images = _photos()
    pil = {"bilinear": 2, "bicubic": 3}[resample]
    ref = Siglip2ImageProcessorPil(patch_size=patch, max_num_patches=budget, resample=pil)(images, return_tensors="np")
    spec = ImageSpec(height=patch, width=patch, patch_size=patch, resample=resample, mode="naflex",
                     max_num_patches=budget)
    ours = naflex_batch(images, spec)
    assert sorted(ours) == sorted(ref.keys())
    for name in ours:
        assert ours[name].dtype == ref[name].dtype and ours[name].shape == ref[name].shape, name
        np.testing.assert_array_equal(ours[name], ref[name], err_msg=name)
    shapes = ours["spatial_shapes"]
    assert len({tuple(s) for s in shapes}) > 5, "the photos cover many aspect ratios"
    assert (ours["pixel_attention_mask"].sum(1) == shapes[:, 0] * shapes[:, 1]).all()


def test_naflex_spec_round_trip_and_bundle_format(tmp_path):
    naflex = ImageSpec(height=256, width=256, patch_size=16, mode="naflex", max_num_patches=256)
    fixed = ImageSpec(height=224, width=224, patch_size=16)
    assert ImageSpec.from_dict(json.loads(json.dumps(naflex.to_dict()))) == naflex
    assert "mode" not in fixed.to_dict(), "fixed specs are written exactly as format 1 wrote them"
    v1_text = TextSpec(length=16, pad_id=0, eos_id=2)
    imported = TextSpec(length=64, pad_id=1, eos_id=1, lowercase=True, canonicalize=True)
    assert v1_text.to_dict() == {"length": 16, "pad_id": 0, "eos_id": 2, "tokenizer_file": "tokenizer.json",
                                 "lowercase": False}
    assert TextSpec.from_dict(imported.to_dict()) == imported
    for f in ("image_encoder.onnx", "text_encoder.onnx"):
        (tmp_path / f).write_bytes(b"")
    for image, text, version in [(fixed, v1_text, 1), (fixed, imported, 2), (naflex, v1_text, 2)]:
        spec = BundleSpec("m", "siglip", 8, 10.0, -10.0, Preprocess(image, text), "sha256:x")
        save_bundle_spec(spec, tmp_path)
        assert json.loads((tmp_path / "bundle.json").read_text())["format_version"] == version
        assert load_bundle_spec(tmp_path) == spec


def test_text_spec_rules():
    with pytest.raises(ValueError, match="eos_id must then be None"):
        TextSpec(length=8, pad_id=0, eos_id=1, special_tokens=True)
    with pytest.raises(ValueError, match="pad_side"):
        TextSpec(length=8, pad_id=0, pad_side="middle")
    # SiglipTokenizer.canonicalize_text's rules (lowercasing is TextSpec.lowercase, applied first).
    assert canonicalize("  A cat,\t(sleeping)...  on   the\u2581mat! ") == "A cat sleeping on the mat"
    assert canonicalize("!!!") == ""
