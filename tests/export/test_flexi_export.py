"""FlexiViT bundles: one image graph per patch size, parity with torch, served over real HTTP."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from vistas.bundle import load_bundle_spec
from vistas.export.onnx_export import export_checkpoint
from vistas.images import preprocess_batch
from vistas.training.checkpoint import load_checkpoint
from vistas.training.data import get_dataset

SIZES = [4, 6, 16]  # plus the model's own 8


@pytest.fixture(scope="module")
def checkpoint():
    """The committed FlexiViT's checkpoint (models/flexivit-shapes-digits): a trained model with a
    stem PI-resize can resize (the bundled model has a conv stem), no training in the test."""
    from pathlib import Path

    return Path(__file__).resolve().parents[2] / "models" / "flexivit-shapes-digits" / "checkpoint"


@pytest.fixture(scope="module")
def quick_patch_bundle(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("quick_patch") / "bundle"
    export_checkpoint(checkpoint, out, name="quick")
    return out


@pytest.fixture(scope="module")
def flexi_bundle(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("flexi") / "bundle"
    export_checkpoint(checkpoint, out, name="flexi", patch_sizes=SIZES)
    return out


def _images(n=6, size=48):
    return [get_dataset("shapes", split="test_seen", size=n, image_size=size)[i].image for i in range(n)]


def test_bundle_lists_every_patch_size_with_tokens_flops_and_parity(flexi_bundle, quick_patch_bundle):
    spec = load_bundle_spec(flexi_bundle)
    raw = json.loads((flexi_bundle / "bundle.json").read_text())
    assert raw["format_version"] == 3 and sorted(raw["patch_sizes"]) == ["16", "4", "6", "8"]
    assert sorted(spec.patch_sizes) == [4, 6, 8, 16] and spec.default_patch_size == 8
    assert [spec.patch_sizes[p]["tokens"] for p in (4, 6, 8, 16)] == [144, 64, 36, 9]
    flops = [spec.patch_sizes[p]["flops"] for p in (4, 6, 8, 16)]
    assert flops == sorted(flops, reverse=True)
    assert all(spec.patch_sizes[p]["max_abs_diff"] <= 1e-4 for p in spec.patch_sizes)
    assert spec.towers == ("image", "text", "image@p4", "image@p6", "image@p16")
    # one set of weights, one embedding space: the same space id as the single-size bundle
    assert spec.space_id == load_bundle_spec(quick_patch_bundle).space_id
    for p in SIZES:
        graph = onnx.load(str(flexi_bundle / f"image_encoder_p{p}.onnx")).graph
        dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
        assert dims == ["batch", 3, 48, 48]


@pytest.mark.parametrize("p", [4, 6, 8, 16])
def test_each_graph_matches_torch_at_its_patch_size(checkpoint, flexi_bundle, p):
    model, _, pre = load_checkpoint(checkpoint)
    pixels = preprocess_batch(_images(), pre.image)
    name = "image_encoder.onnx" if p == 8 else f"image_encoder_p{p}.onnx"
    got = ort.InferenceSession(str(flexi_bundle / name), providers=["CPUExecutionProvider"]).run(
        None, {"pixel_values": pixels})[0]
    with torch.no_grad():
        want = model.encode_image(torch.from_numpy(pixels), patch_size=p).numpy()
    assert np.abs(got - want).max() <= 1e-4
    if p != 8:  # and it really is another patch size, not the default graph again
        with torch.no_grad():
            at8 = model.encode_image(torch.from_numpy(pixels)).numpy()
        assert np.abs(got - at8).max() > 1e-3


def test_export_refuses_a_patch_size_that_does_not_tile(checkpoint, tmp_path):
    with pytest.raises(ValueError, match="does not tile a 48x48 image"):
        export_checkpoint(checkpoint, tmp_path / "b", patch_sizes=[5])
    assert not (tmp_path / "b").exists()


def test_export_refuses_patch_sizes_for_a_conv_stem_model(tmp_path):
    # The bundled model has a conv stem (issue 13): no PI-resize, so no FlexiViT bundle of it.
    from pathlib import Path

    checkpoint = Path(__file__).resolve().parents[2] / "models" / "siglip-shapes-digits" / "checkpoint"
    with pytest.raises(ValueError, match="needs a patch map that PI-resize resizes"):
        export_checkpoint(checkpoint, tmp_path / "b", patch_sizes=[4])
    assert not (tmp_path / "b").exists()


def test_measured_accuracy_per_patch_size(flexi_bundle, tmp_path):
    import shutil

    from vistas.export.flexi_eval import measure_patch_sizes

    copy = tmp_path / "b"
    shutil.copytree(flexi_bundle, copy)
    out = measure_patch_sizes(copy, "siglip_shapes_digits:quick=True,eval_size=300", threads=2)
    spec = load_bundle_spec(copy)
    for p in (4, 6, 8, 16):
        acc = spec.patch_sizes[p]["eval"]["shapes_seen/accuracy"]
        assert 0 <= acc <= 1 and acc == out[p]["eval"]["shapes_seen/accuracy"]
    # coarser patches cost accuracy on shapes: 98.7 % at the underlying p=8, 93.1 % at p=16 (eval.json, 1,000 images)
    assert spec.patch_sizes[8]["eval"]["shapes_seen/accuracy"] > spec.patch_sizes[16]["eval"]["shapes_seen/accuracy"]


# ---- serving -----------------------------------------------------------------------------


def _b64(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def flexi_server(flexi_bundle, tmp_path_factory):
    from vistas.serving.app import create_app
    from vistas.serving.server import running_server
    from vistas.serving.settings import Settings

    settings = Settings(bundles=[str(flexi_bundle)], index_dir=str(tmp_path_factory.mktemp("index")), threads=1)
    with running_server(create_app(settings)) as live:
        yield live


def test_http_patch_size_end_to_end(flexi_server, flexi_bundle):
    from vistas.inference.model import load_model

    local = load_model(str(flexi_bundle), threads=1, providers=["CPUExecutionProvider"])
    images = _images(3)
    with httpx.Client(base_url=flexi_server.url, timeout=60) as c:
        info = c.get("/v1/models").json()["models"][0]
        assert info["patch_sizes"] == [4, 6, 8, 16] and info["default_patch_size"] == 8

        default = c.post("/v1/embed", json={"images": [_b64(im) for im in images]}).json()
        assert default["patch_size"] == 8
        at4 = c.post("/v1/embed", json={"images": [_b64(im) for im in images], "patch_size": 4}).json()
        assert at4["patch_size"] == 4 and at4["space"] == default["space"]
        np.testing.assert_allclose(np.array(at4["image_embeddings"]), local.embed_images(images, patch_size=4),
                                   atol=1e-5)
        assert np.abs(np.array(at4["image_embeddings"]) - np.array(default["image_embeddings"])).max() > 1e-3
        texts_only = c.post("/v1/embed", json={"texts": ["a red circle"], "patch_size": 4}).json()
        assert texts_only["patch_size"] is None

        bad = c.post("/v1/embed", json={"images": [_b64(images[0])], "patch_size": 5})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_patch_size"
        assert "[4, 6, 8, 16]" in bad.json()["error"]["message"]
        assert c.get("/health").status_code == 200  # still serving

        cls = c.post("/v1/classify", json={"image": _b64(images[0]), "labels": ["red circle", "blue square"],
                                           "patch_size": 16}).json()
        assert cls["patch_size"] == 16 and len(cls["predictions"]) == 2

        # one space: a collection indexed at the default size is searched with an image at p=16
        items = [{"id": f"i{k}", "image": _b64(im)} for k, im in enumerate(images)]
        assert c.post("/v1/collections/flexi/items", json={"items": items}).status_code == 200
        hit = c.post("/v1/search", json={"collection": "flexi", "image": _b64(images[1]), "k": 1,
                                         "patch_size": 6}).json()
        assert hit["patch_size"] == 6 and hit["results"][0]["id"] == "i1"
        text_q = c.post("/v1/search", json={"collection": "flexi", "text": "a circle", "patch_size": 6})
        assert text_q.status_code == 422

        metrics = c.get("/metrics").text
        assert 'vistas_patch_size_images_total{model="flexi",patch_size="4"} 3.0' in metrics
        assert 'tower="image@p4"' in metrics  # its own batching queue


def test_openai_client_passes_patch_size(flexi_server):
    import openai

    img = "data:image/png;base64," + _b64(_images(1)[0])
    with openai.OpenAI(base_url=flexi_server.url + "/v1", api_key="unused", max_retries=0, timeout=60) as oai:
        at16 = oai.embeddings.create(model="flexi", input=[img], encoding_format="float", extra_body={"patch_size": 16})
        at8 = oai.embeddings.create(model="flexi", input=[img], encoding_format="float")
    assert at16.usage.prompt_tokens == 9 and at8.usage.prompt_tokens == 36
    assert np.abs(np.array(at16.data[0].embedding) - np.array(at8.data[0].embedding)).max() > 1e-3


def test_sdk_patch_size(flexi_server):
    from vistas_client import Client

    images = _images(2)
    with Client(flexi_server.url) as c:
        r = c.embed_images(images, patch_size=16)
        assert r.patch_size == 16 and r.image_array().shape == (2, r.dim)
        assert c.classify(images[0], ["red circle"], patch_size=4).patch_size == 4
        assert [m.patch_sizes for m in c.models()] == [[4, 6, 8, 16]]


def test_adaptive_policy_goes_coarser_under_overload_and_back(flexi_bundle, tmp_path):
    """A real overload: 16 clients at once against one model worker. The image queue grows past
    patch_size_queue_high and requests without patch_size get coarser patches; once the load is
    gone, requests go back to the default, one size per request."""
    from vistas.serving.app import create_app
    from vistas.serving.server import running_server
    from vistas.serving.settings import Settings

    settings = Settings(bundles=[str(flexi_bundle)], index_dir=str(tmp_path / "index"), threads=1,
                        batch_max_size=1, patch_size_policy="adaptive", patch_size_queue_high=3,
                        patch_size_queue_low=0)
    body = {"images": [_b64(im) for im in _images(1)]}
    with running_server(create_app(settings)) as live, httpx.Client(base_url=live.url, timeout=120) as c:
        assert c.post("/v1/embed", json=body).json()["patch_size"] == 8  # quiet: the default

        def hammer(_):
            with httpx.Client(base_url=live.url, timeout=120) as own:
                return [own.post("/v1/embed", json=body).json()["patch_size"] for _ in range(12)]

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            sizes = [p for batch in pool.map(hammer, range(16)) for p in batch]
        assert max(sizes) > 8, f"never went coarser under overload: {sorted(set(sizes))}"
        assert set(sizes) <= {8, 16}  # coarser only (the ladder above the default)
        # quiet again: each request finds an empty queue and steps one size finer
        back = [c.post("/v1/embed", json=body).json()["patch_size"] for _ in range(3)]
        assert back[-1] == 8, back
        # an explicit patch_size is never overridden by the policy
        assert c.post("/v1/embed", json={**body, "patch_size": 4}).json()["patch_size"] == 4
