"""`vistas export --quantize int8` on the bundled trained model and on a SigLIP 2 NaFlex bundle:
what it reports is what serving gets."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest

from support.hf_models import CONFIGS, save_tiny
from vistas.bundle import load_bundle_spec
from vistas.cli import main as cli
from vistas.export.onnx_export import export_checkpoint
from vistas.export.parity import CAPTIONS, parity_images
from vistas.export.quantize import quantize_bundle
from vistas.inference.model import load_model
from vistas.inference.onnx_runtime import OnnxRuntime
from vistas.training.batches import BatchMaker, EvalSuite
from vistas.training.config import load_config
from vistas.training.evaluate import run_suites

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "siglip-shapes-digits"
EVAL = f"{ROOT}/configs/siglip_shapes_digits.py:quick=True,eval_size=60"


def test_int8_export_reports_cosine_and_eval_change_that_serving_reproduces(tmp_path, capsys):
    out = tmp_path / "int8"
    assert cli(["export", str(MODEL / "checkpoint"), str(out), "--quantize", "int8", "--eval-config", EVAL, "--name", "sd8"]) == 0
    printed = capsys.readouterr().out
    spec = json.loads((out / "bundle.json").read_text())
    report = spec["quantization"]
    assert "digits/accuracy" in printed and "cosine to fp32" in printed

    # The graphs really are int8 where they multiply by weights.
    for role in ("image_encoder", "text_encoder"):
        ops = {n.op_type for n in onnx.load(str(out / f"{role}.onnx")).graph.node}
        assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops, ops
        assert report["quantized_matmuls"][role] > 0
    # A quantised bundle is its own space (close to, not equal to, the fp32 vectors).
    fp32_space = json.loads((MODEL / "bundle" / "bundle.json").read_text())["space_id"]
    assert spec["space_id"] != fp32_space and "quantization" not in json.loads((MODEL / "bundle" / "bundle.json").read_text())

    # Measured on this trained model (README): cosine > 0.9999 with 7-bit weights; digits accuracy unchanged.
    for tower in ("image", "text"):
        assert report["cosine_to_fp32"][tower]["mean"] > 0.999 and report["cosine_to_fp32"][tower]["min"] > 0.99
    assert abs(report["eval"]["digits/accuracy"]["change"]) <= 0.02

    # Serving the int8 bundle reproduces the reported int8 accuracies and the fp32 bundle the fp32
    # ones. (Retrieval is left out: repeated captions tie, and dynamic int8 scales activations per
    # call, so which tied caption ranks first depends on the batch a vector was computed in.)
    int8, fp32 = load_model(str(out)), load_model(str(MODEL / "bundle"))
    suites = [s for s in BatchMaker(load_config(EVAL), int8.spec.preprocess.image).eval_suites() if s.kind == "zero_shot"]
    served = run_suites(int8.embed_images, int8.embed_texts, suites)
    reference = run_suites(fp32.embed_images, fp32.embed_texts, suites)
    assert set(served) == {k for k in report["eval"] if k.endswith("/accuracy")} and len(served) == 7
    for metric in served:
        v = report["eval"][metric]
        n = len(next(s for s in suites if metric.startswith(s.name + "/")).examples)
        assert abs(served[metric] - v["int8"]) <= 1 / n + 1e-9, metric  # at most one example flips
        assert abs(reference[metric] - v["fp32"]) <= 1 / n + 1e-9, metric
        assert np.isclose(v["change"], v["int8"] - v["fp32"])


@pytest.fixture(scope="module")
def naflex_fp32(tmp_path_factory) -> Path:
    """A SigLIP 2 NaFlex bundle exported from a tiny random transformers Siglip2Model."""
    hf_dir = save_tiny(CONFIGS["siglip2-naflex"], tmp_path_factory.mktemp("hf-naflex"))
    bundle = tmp_path_factory.mktemp("naflex") / "fp32"
    export_checkpoint(f"hf:{hf_dir}", bundle, name="naflex")
    return bundle


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_int8_naflex_bundle_is_measured_on_the_inputs_serving_feeds_it(naflex_fp32, tmp_path):
    # Real photos of every aspect ratio (square, 3:2, tall, very wide, 7x5 px): each has its own
    # patch grid, so the padding mask and spatial shapes differ from image to image.
    images, captions = parity_images(), list(CAPTIONS)
    examples = [SimpleNamespace(image=im, label=i % 2, caption=captions[i % len(captions)]) for i, im in enumerate(images)]
    suites = [EvalSuite("photos", "zero_shot", examples, ["astronaut", "coffee"], lambda c: [f"a photo of {c}", c]),
              EvalSuite("captions", "retrieval", examples, [], lambda c: [])]
    spec = quantize_bundle(naflex_fp32, tmp_path / "int8", "int8", suites=suites, run_suites=run_suites)
    report = load_bundle_spec(tmp_path / "int8").quantization
    assert report == spec.quantization and spec.preprocess.image.mode == "naflex"
    assert report["quantized_matmuls"]["image_encoder"] > 0 and report["quantized_matmuls"]["text_encoder"] > 0

    # Served (OnnxRuntime behind ServedModel), the int8 bundle's embeddings of real images and texts
    # stay close to the fp32 bundle's.
    int8, fp32 = load_model(str(tmp_path / "int8")), load_model(str(naflex_fp32))
    assert isinstance(int8.runtime, OnnxRuntime) and int8.runtime.inputs("image") == fp32.runtime.inputs("image")
    measured_images = [e.image for s in suites for e in s.examples]
    measured_texts = [p for s in suites for c in s.class_names for p in s.prompts(c)]
    measured_texts += [e.caption for s in suites for e in s.examples if e.caption]  # the report skips empty captions
    served = {"image": _cosine(fp32.embed_images(measured_images), int8.embed_images(measured_images)),
              "text": _cosine(fp32.embed_texts(measured_texts), int8.embed_texts(measured_texts))}
    for tower, cos in served.items():
        assert cos.mean() > 0.99 and cos.min() > 0.95, (tower, cos)
        # The recorded cosine is the one serving reproduces: computed on the same, correct inputs.
        recorded = report["cosine_to_fp32"][tower]
        assert recorded["n"] == len(cos), tower
        assert np.isclose(recorded["mean"], cos.mean(), atol=1e-6) and np.isclose(recorded["min"], cos.min(), atol=1e-6), tower
    # And so are the recorded eval metrics, fp32 and int8.
    assert report["eval"]["photos/accuracy"]["fp32"] == run_suites(fp32.embed_images, fp32.embed_texts, suites)["photos/accuracy"]
    assert report["eval"]["photos/accuracy"]["int8"] == run_suites(int8.embed_images, int8.embed_texts, suites)["photos/accuracy"]


def test_int8_naflex_bundle_without_eval_data(naflex_fp32, tmp_path):
    """No eval suites (`vistas export --quantize int8` without --eval-config, the benchmarks): random inputs."""
    report = quantize_bundle(naflex_fp32, tmp_path / "int8", "int8").quantization
    assert "eval" not in report
    for tower, n in (("image", 16), ("text", 64)):
        c = report["cosine_to_fp32"][tower]
        assert c["n"] == n and c["mean"] > 0.99 and c["min"] > 0.95, (tower, c)


def test_int8_flexivit_bundle_quantises_every_patch_size(tmp_path, capsys):
    """`--quantize int8 --patch-sizes`: every patch size's graph int8, its cosine to fp32 reported,
    and each size's int8 accuracy measured into bundle.json, as the fp32 FlexiViT export does."""
    flexi = ROOT / "models" / "flexivit-shapes-digits" / "checkpoint"
    out = tmp_path / "flexi-int8"
    config = "flexivit_shapes_digits:quick=True,eval_size=24"
    assert cli(["export", str(flexi), str(out), "--quantize", "int8", "--patch-sizes", "8,16",
                "--eval-config", config, "--name", "fx8"]) == 0
    printed = capsys.readouterr().out
    spec = load_bundle_spec(out)
    assert sorted(spec.patch_sizes) == [8, 16] and "patch size 16:" in printed
    report = spec.quantization
    assert set(report["quantized_matmuls"]) == {"image_encoder", "text_encoder", "image_encoder_p16"}
    ops = {n.op_type for n in onnx.load(str(out / "image_encoder_p16.onnx")).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops, ops
    assert set(report["cosine_to_fp32"]) == {"image", "text", "image@p16"}
    assert report["cosine_to_fp32"]["image@p16"]["mean"] > 0.99
    # Each size's accuracy is the int8 graph's, as serving runs it.
    served = load_model(str(out))
    suites = [s for s in BatchMaker(load_config(config), served.spec.preprocess.image).eval_suites()
              if s.name == "digits"]
    at16 = run_suites(lambda ims: served.embed_images(ims, patch_size=16), served.embed_texts, suites)
    assert abs(spec.patch_sizes[16]["eval"]["digits/accuracy"] - at16["digits/accuracy"]) <= 1e-4
