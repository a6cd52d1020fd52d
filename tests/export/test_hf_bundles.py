"""Hugging Face checkpoints exported to bundles and served over HTTP (real uvicorn, the SDK):
what a client gets equals transformers' embeddings and logits to <= 1e-4 in fp32."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from support.hf_models import CONFIGS, save_tiny
from vistas.bundle import load_bundle_spec
from vistas.cli import main
from vistas.export.onnx_export import export_checkpoint
from vistas.export.parity import CAPTIONS, parity_images, reference_embeddings
from vistas.inference.onnx_runtime import OnnxRuntime
from vistas.inference.runtime import TensorSpec, expected_inputs

# A fixed-size SigLIP (SentencePiece, cropped patches, no head) and a SigLIP 2 NaFlex model.
SERVED = ("siglip-headless-crop", "siglip2-naflex")


@pytest.fixture(scope="module")
def hf_bundles(tmp_path_factory):
    """name -> (Hugging Face directory, bundle); the first exported by the CLI, the second by the API."""
    out = {}
    for name in SERVED:
        hf_dir = save_tiny(CONFIGS[name], tmp_path_factory.mktemp(f"hf-{name}"))
        bundle = tmp_path_factory.mktemp(f"bundle-{name}") / "bundle"
        if not out:
            assert main(["export", f"hf:{hf_dir}", str(bundle), "--name", name]) == 0
        else:
            export_checkpoint(f"hf:{hf_dir}", bundle, name=name)
        out[name] = (hf_dir, bundle)
    return out


def _dims(path, name):
    graph_input = next(i for i in onnx.load(str(path)).graph.input if i.name == name)
    return [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]


def test_naflex_bundle_takes_patches_mask_and_shapes(hf_bundles):
    _, bundle = hf_bundles["siglip2-naflex"]
    spec = load_bundle_spec(bundle)
    img = spec.preprocess.image
    assert img.mode == "naflex" and img.max_num_patches == 30 and spec.format_version == 2
    n, dim = 30, 4 * 4 * 3
    assert expected_inputs(spec, "image") == [TensorSpec("pixel_values", "float32", (None, n, dim)),
                                              TensorSpec("pixel_attention_mask", "int32", (None, n)),
                                              TensorSpec("spatial_shapes", "int64", (None, 2))]
    path = bundle / "image_encoder.onnx"
    assert _dims(path, "pixel_values") == ["batch", n, dim]
    assert _dims(path, "pixel_attention_mask") == ["batch", n]
    assert _dims(path, "spatial_shapes") == ["batch", 2]
    assert OnnxRuntime(bundle).inputs("image") == expected_inputs(spec, "image")  # checked at load
    assert max(spec.parity.values()) <= 1e-4


def test_fixed_bundle_records_the_checkpoints_preprocessing(hf_bundles):
    _, bundle = hf_bundles["siglip-headless-crop"]
    spec = load_bundle_spec(bundle)
    img, txt = spec.preprocess.image, spec.preprocess.text
    assert (img.height, img.width, img.patch_size, img.resample, img.mode) == (30, 30, 7, "bicubic", "fixed")
    assert txt.length == 13 and txt.canonicalize and txt.lowercase and txt.eos_id == 1
    assert _dims(bundle / "image_encoder.onnx", "pixel_values") == ["batch", 3, 30, 30]
    assert max(spec.parity.values()) <= 1e-4


def test_served_embeddings_and_scores_match_transformers(hf_bundles, tmp_path):
    from vistas.serving.app import create_app
    from vistas.serving.server import running_server
    from vistas.serving.settings import Settings
    from vistas_client import Client

    images, texts = parity_images(), list(CAPTIONS)
    settings = Settings(bundles=[str(b) for _, b in hf_bundles.values()], index_dir=str(tmp_path), threads=1)
    with running_server(create_app(settings)) as live, Client(live.url) as client:
        for name, (hf_dir, _) in hf_bundles.items():
            want = reference_embeddings(hf_dir, images, texts, CONFIGS[name].text_length)
            got_img = client.embed_images(images, model=name).image_array()
            got_txt = client.embed_texts(texts, model=name).text_array()
            assert np.abs(got_img - want["image"]).max() <= 1e-4, name
            assert np.abs(got_txt - want["text"]).max() <= 1e-4, name
            # classify's score is sigmoid(logit): compare it with transformers' logits, image by image.
            labels = texts[:4]
            logits = want["scale"] * want["image"] @ want["text"][:4].T + want["bias"]  # (B, 4)
            for i in (0, 4):
                scores = {p.label: p.score for p in client.classify(images[i], labels, templates=["{}"], model=name).predictions}
                np.testing.assert_allclose([scores[label] for label in labels], 1 / (1 + np.exp(-logits[i])), atol=1e-4)


def test_check_parity_command(hf_bundles, capsys):
    hf_dir, bundle = hf_bundles["siglip2-naflex"]
    assert main(["check-parity", f"hf:{hf_dir}", "--bundle", str(bundle)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in out.splitlines()
            if line.split() and line.split()[0].endswith(("_transformers", "_torch"))}
    assert sorted(rows) == ["onnx_vs_torch", "onnx_vs_transformers", "torch_vs_transformers"]
    assert all(len(v) == 3 and max(v) <= 1e-4 for v in rows.values()), out
    assert "PARITY OK" in out
    other, _ = hf_bundles["siglip-headless-crop"]
    assert main(["check-parity", f"hf:{other}", "--bundle", str(bundle)]) == 2
    assert "was not exported from" in capsys.readouterr().err
