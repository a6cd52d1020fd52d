"""The KServe v2 protocol under /v2, driven by NVIDIA's real `tritonclient.http` against a real server."""

from __future__ import annotations

import base64
import json
import struct

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from support.tiny_bundle import COLOR_RGB, DIM, SIZE, TEXT_LENGTH, png
from vistas.inference.model import load_model


@pytest.fixture(scope="module")
def tc(server):
    c = triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=30)
    yield c
    c.close()


def _input(name: str, array: np.ndarray, datatype: str, binary: bool) -> triton.InferInput:
    x = triton.InferInput(name, list(array.shape), datatype)
    x.set_data_from_numpy(array, binary_data=binary)
    return x


def test_server_and_model_metadata(tc: triton.InferenceServerClient):
    assert tc.is_server_live() and tc.is_server_ready()
    meta = tc.get_server_metadata()
    assert meta["name"] == "vistas" and "binary_tensor_data" in meta["extensions"]
    assert tc.get_model_metadata("tiny-a.image_encoder") == {
        "name": "tiny-a.image_encoder",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "pixel_values", "datatype": "FP32", "shape": [-1, 3, SIZE, SIZE]}],
        "outputs": [{"name": "embeddings", "datatype": "FP32", "shape": [-1, DIM]}],
    }
    text = tc.get_model_metadata("tiny-b.text_encoder", model_version="1")
    assert text["inputs"] == [{"name": "input_ids", "datatype": "INT64", "shape": [-1, TEXT_LENGTH]}]
    raw = tc.get_model_metadata("tiny-a")
    assert [(t["name"], t["datatype"]) for t in raw["inputs"]] == [("images", "BYTES"), ("texts", "BYTES")]
    assert tc.is_model_ready("tiny-b.image_encoder") and not tc.is_model_ready("nope")
    names = {m["name"] for m in tc.get_model_repository_index()}
    assert names == {f"tiny-{x}{s}" for x in "ab" for s in ("", ".image_encoder", ".text_encoder")}
    config = tc.get_model_config("tiny-a.image_encoder")
    assert config["max_batch_size"] == 4 and config["input"][0]["dims"] == [3, SIZE, SIZE]
    assert config["parameters"]["vistas_space_id"]["string_value"].startswith("sha256:")
    with pytest.raises(InferenceServerException, match="no model 'nope'.*tiny-a.image_encoder"):
        tc.get_model_metadata("nope")
    with pytest.raises(InferenceServerException, match="only version 1"):
        tc.get_model_metadata("tiny-a", model_version="2")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tower_inference_matches_the_runtime(tc: triton.InferenceServerClient, bundles, binary: bool):
    local = load_model(str(bundles[0]), threads=1)
    pixels = np.random.default_rng(0).uniform(-1, 1, (3, 3, SIZE, SIZE)).astype(np.float32)
    out = triton.InferRequestedOutput("embeddings", binary_data=binary)
    res = tc.infer("tiny-a.image_encoder", [_input("pixel_values", pixels, "FP32", binary)], outputs=[out])
    got = res.as_numpy("embeddings")
    assert got.dtype == np.float32 and got.shape == (3, DIM)
    np.testing.assert_allclose(got, local.runtime.run("image", {"pixel_values": pixels}), atol=1e-6)

    ids = local.text_inputs(["red", "a photo of a green car"])["input_ids"]
    res = tc.infer("tiny-a.text_encoder", [_input("input_ids", ids, "INT64", binary)], request_id="r-7")
    assert res.get_response()["id"] == "r-7"
    np.testing.assert_allclose(res.as_numpy("embeddings"), local.embed_texts(["red", "a photo of a green car"]), atol=1e-6)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_raw_model_matches_v1_embed(tc: triton.InferenceServerClient, client: httpx.Client, binary: bool):
    red, blue = png(COLOR_RGB["red"]), png(COLOR_RGB["blue"])
    # Binary BYTES carry the image files; in JSON, BYTES are strings, so images go base64.
    images = [red, blue] if binary else [base64.b64encode(b) for b in (red, blue)]
    texts = ["blue", "a red square"]
    res = tc.infer(
        "tiny-b",
        [_input("images", np.array(images, dtype=object), "BYTES", binary),
         _input("texts", np.array([t.encode() for t in texts], dtype=object), "BYTES", binary)],
    )
    ours = client.post(
        "/v1/embed",
        json={"model": "tiny-b", "texts": texts, "images": [base64.b64encode(b).decode() for b in (red, blue)]},
    ).json()
    np.testing.assert_array_equal(res.as_numpy("image_embeddings"), np.asarray(ours["image_embeddings"], np.float32))
    np.testing.assert_array_equal(res.as_numpy("text_embeddings"), np.asarray(ours["text_embeddings"], np.float32))

    only_texts = tc.infer("tiny-b", [_input("texts", np.array([b"red"], dtype=object), "BYTES", binary)])
    assert only_texts.as_numpy("image_embeddings") is None and only_texts.as_numpy("text_embeddings").shape == (1, DIM)


def test_bad_requests_get_clear_4xx(tc: triton.InferenceServerClient, server):
    pixels = np.zeros((1, 3, SIZE, SIZE), np.float64)
    with pytest.raises(InferenceServerException, match="pixel_values' is FP32, got FP64") as e:
        tc.infer("tiny-a.image_encoder", [_input("pixel_values", pixels, "FP64", True)])
    assert e.value.status() == "400"
    with pytest.raises(InferenceServerException, match=r"must have shape \('B', 3, 16, 16\)"):
        tc.infer("tiny-a.image_encoder", [_input("pixel_values", np.zeros((1, 3, 8, 8), np.float32), "FP32", True)])
    with pytest.raises(InferenceServerException, match="max_batch_images"):
        tc.infer("tiny-a.image_encoder", [_input("pixel_values", np.zeros((5, 3, SIZE, SIZE), np.float32), "FP32", True)])
    with pytest.raises(InferenceServerException, match="takes inputs \\['input_ids'\\]"):
        tc.infer("tiny-a.text_encoder", [_input("ids", np.zeros((1, TEXT_LENGTH), np.int64), "INT64", True)])
    with pytest.raises(InferenceServerException, match=r"images\[0\]: The data is not an image"):
        tc.infer("tiny-a", [_input("images", np.array([b"nope"], dtype=object), "BYTES", True)])
    with pytest.raises(InferenceServerException, match="needs the input 'images'"):
        tc.infer("tiny-a", [_input("texts", np.array([b"red"], dtype=object), "BYTES", True)],
                 outputs=[triton.InferRequestedOutput("image_embeddings")])

    url = f"{server.url}/v2/models/tiny-a.image_encoder/infer"
    header = json.dumps({"inputs": [{"name": "pixel_values", "shape": [1, 3, SIZE, SIZE], "datatype": "FP32",
                                      "parameters": {"binary_data_size": 12}}]}).encode()
    cases = [
        (header + b"\0" * 12, {"Inference-Header-Content-Length": str(len(header))}, "needs 3072 bytes, got 12"),
        (header + b"\0" * 12, {"Inference-Header-Content-Length": "x"}, "must be an integer"),
        (b"{not json", {}, "not valid JSON"),
        (json.dumps({"inputs": [{"name": "pixel_values", "shape": [1, 2], "datatype": "FP32", "data": [1.0]}]}).encode(),
         {}, "holds 2 elements, but data has 1"),
    ]
    for body, headers, message in cases:
        r = httpx.post(url, content=body, headers=headers)
        assert r.status_code == 400 and message in r.json()["error"], r.text
    # A BYTES element whose length prefix runs past the data.
    raw = struct.pack("<I", 100) + b"abc"
    header = json.dumps({"inputs": [{"name": "texts", "shape": [1], "datatype": "BYTES",
                                      "parameters": {"binary_data_size": len(raw)}}]}).encode()
    r = httpx.post(f"{server.url}/v2/models/tiny-a/infer", content=header + raw,
                   headers={"Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 400 and "runs past the end" in r.json()["error"]
    assert httpx.get(f"{server.url}/health").status_code == 200  # still serving


# ---- FlexiViT: one v2 model per patch size ------------------------------------------------


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_flexivit_patch_size_models(flexi_server, small_flexi_bundle, binary: bool):
    from support.flexi_bundle import DIM as FLEXI_DIM
    from support.flexi_bundle import SIZE as FLEXI_SIZE

    tc = triton.InferenceServerClient(flexi_server.url.removeprefix("http://"), network_timeout=60)
    names = [m["name"] for m in tc.get_model_repository_index()]
    assert names == ["flexi", "flexi.image_encoder", "flexi.text_encoder", "flexi.image_encoder_p16"]
    meta = tc.get_model_metadata("flexi.image_encoder_p16")
    assert meta["inputs"] == [{"name": "pixel_values", "datatype": "FP32", "shape": [-1, 3, FLEXI_SIZE, FLEXI_SIZE]}]
    assert meta["outputs"] == [{"name": "embeddings", "datatype": "FP32", "shape": [-1, FLEXI_DIM]}]
    config = tc.get_model_config("flexi.image_encoder_p16")
    assert config["max_batch_size"] == 4 and config["input"][0]["dims"] == [3, FLEXI_SIZE, FLEXI_SIZE]
    assert tc.is_model_ready("flexi.image_encoder_p16")
    with pytest.raises(InferenceServerException, match="no model 'flexi.image_encoder_p12'.*flexi.image_encoder_p16"):
        tc.get_model_metadata("flexi.image_encoder_p12")  # a size the committed bundle has, this one does not

    local = load_model(str(small_flexi_bundle), threads=1)
    pixels = np.random.default_rng(3).uniform(-1, 1, (3, 3, FLEXI_SIZE, FLEXI_SIZE)).astype(np.float32)
    out = triton.InferRequestedOutput("embeddings", binary_data=binary)
    at16 = tc.infer("flexi.image_encoder_p16", [_input("pixel_values", pixels, "FP32", binary)], outputs=[out])
    got = at16.as_numpy("embeddings")
    assert got.shape == (3, FLEXI_DIM)
    np.testing.assert_allclose(got, local.runtime.run("image@p16", {"pixel_values": pixels}), atol=1e-5)
    at8 = tc.infer("flexi.image_encoder", [_input("pixel_values", pixels, "FP32", binary)]).as_numpy("embeddings")
    assert np.abs(got - at8).max() > 1e-3  # really the p=16 graph, not the default one again
    with pytest.raises(InferenceServerException, match="max_batch_images"):  # the image limit applies to it too
        tc.infer("flexi.image_encoder_p16", [_input("pixel_values", np.zeros((5, 3, FLEXI_SIZE, FLEXI_SIZE),
                                                                                 np.float32), "FP32", binary)])
    local.close()
    tc.close()
