"""Export: ONNX towers reproduce the PyTorch model; a bundle failing parity is never written."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from vistas.bundle import load_bundle_spec, space_id
from vistas.export.onnx_export import ExportParityError, export_checkpoint
from vistas.images import preprocess_batch
from vistas.tokenizer import Tokenizer
from vistas.training.checkpoint import load_checkpoint
from vistas.training.data import get_dataset


def test_bundle_contents_and_spec(quick_run, quick_bundle):
    spec = load_bundle_spec(quick_bundle)
    model, config, pre = load_checkpoint(quick_run / "final")
    assert spec.family == "siglip" and spec.name == "quick"
    assert spec.embed_dim == config["embed_dim"]
    assert spec.logit_scale == pytest.approx(model.t.exp().item(), rel=1e-6)
    assert spec.logit_bias == pytest.approx(model.b.item(), rel=1e-6)
    assert spec.preprocess == pre
    assert spec.space_id == space_id([quick_run / "final" / "model.safetensors"], pre)
    assert max(spec.parity.values()) <= 1e-4, spec.parity
    for f in ("image_encoder.onnx", "text_encoder.onnx", "tokenizer.json", "bundle.json"):
        assert (quick_bundle / f).is_file()
    raw = json.loads((quick_bundle / "bundle.json").read_text())
    assert raw["preprocess"]["image"]["height"] == pre.image.height


def test_onnx_inputs_have_dynamic_batch_and_fixed_image_dims(quick_bundle):
    spec = load_bundle_spec(quick_bundle)
    img = onnx.load(str(quick_bundle / "image_encoder.onnx")).graph.input[0]
    dims = [d.dim_param or d.dim_value for d in img.type.tensor_type.shape.dim]
    assert dims == ["batch", 3, spec.preprocess.image.height, spec.preprocess.image.width]
    txt = onnx.load(str(quick_bundle / "text_encoder.onnx")).graph.input[0]
    assert [d.dim_param or d.dim_value for d in txt.type.tensor_type.shape.dim] == ["batch", spec.preprocess.text.length]


def test_onnx_matches_torch_on_real_images_and_captions(quick_run, quick_bundle):
    """Parity on data the export never saw: held-out shapes and digits, their captions."""
    model, _, pre = load_checkpoint(quick_run / "final")
    examples = list(get_dataset("shapes", split="test_unseen", size=6, image_size=pre.image.height)) + [
        get_dataset("digits", split="test", image_size=pre.image.height)[i] for i in range(5)
    ]
    pixels = preprocess_batch([e.image for e in examples], pre.image)
    ids = Tokenizer(pre.text, quick_bundle).encode([e.caption for e in examples])
    img_sess = ort.InferenceSession(str(quick_bundle / "image_encoder.onnx"), providers=["CPUExecutionProvider"])
    txt_sess = ort.InferenceSession(str(quick_bundle / "text_encoder.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want_img = model.encode_image(torch.from_numpy(pixels)).numpy()
        want_txt = model.encode_text(torch.from_numpy(ids)).numpy()
    got_img = img_sess.run(None, {"pixel_values": pixels})[0]
    got_txt = txt_sess.run(None, {"input_ids": ids})[0]
    assert np.abs(got_img - want_img).max() <= 1e-4
    assert np.abs(got_txt - want_txt).max() <= 1e-4
    np.testing.assert_allclose(np.linalg.norm(got_img, axis=1), 1.0, atol=1e-5)


def test_parity_failure_writes_nothing(quick_run, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ExportParityError, match="exceeds the tolerance"):
        # No real export is exactly equal at a negative tolerance: the check itself must refuse.
        export_checkpoint(quick_run / "final", out, tolerance=-1.0)
    assert not out.exists()
