"""The Triton runtime (`--runtime triton://HOST:PORT`) with a second real vistas server as the remote."""

from __future__ import annotations

import base64
import json
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from support.live_server import running_server
from support.tiny_bundle import COLOR_RGB, SIZE, build_bundle, png
from vistas.inference.model import load_model
from vistas.inference.runtime import BundleMismatchError
from vistas.inference.runtimes import RemoteRuntimeError, open_runtime, parse_runtime
from vistas.inference.triton_runtime import TritonRuntime
from vistas.serving.app import create_app
from vistas.serving.settings import Settings


def _address(url: str) -> str:
    return url.removeprefix("http://")


def test_runtime_matches_local_onnxruntime(server, bundles):
    remote = open_runtime(bundles[0], f"triton://{_address(server.url)}")
    assert isinstance(remote, TritonRuntime) and remote.inputs("image") == load_model(str(bundles[0])).runtime.inputs("image")
    local = load_model(str(bundles[0]), threads=1).runtime
    # 6 rows against the remote's max_batch_images of 4: the runtime chunks by the remote's limit.
    pixels = np.random.default_rng(1).uniform(-1, 1, (6, 3, SIZE, SIZE)).astype(np.float32)
    np.testing.assert_allclose(remote.run("image", {"pixel_values": pixels}), local.run("image", {"pixel_values": pixels}), atol=1e-6)
    ids = np.random.default_rng(2).integers(0, 10, (3, 8))
    np.testing.assert_allclose(remote.run("text", {"input_ids": ids}), local.run("text", {"input_ids": ids}), atol=1e-6)
    with ThreadPoolExecutor(4) as pool:  # one client per thread: concurrent calls are safe
        outs = list(pool.map(lambda i: remote.run("image", {"pixel_values": pixels[i : i + 1]}), range(6)))
    np.testing.assert_allclose(np.concatenate(outs), local.run("image", {"pixel_values": pixels}), atol=1e-6)
    with pytest.raises(ValueError, match="must have shape"):  # checked here, before the network
        remote.run("image", {"pixel_values": pixels[:, :, :8]})
    remote.close()


def test_second_vistas_server_serves_through_the_remote(server, bundles, client: httpx.Client):
    settings = Settings(bundles=[str(bundles[1])], runtime=f"triton://{_address(server.url)}", threads=1)
    red = base64.b64encode(png(COLOR_RGB["red"])).decode()
    body = {"texts": ["red", "a green car"], "images": [red]}
    with running_server(create_app(settings)) as front, httpx.Client(base_url=front.url, timeout=30) as c:
        via = c.post("/v1/embed", json=body)
        assert via.status_code == 200, via.text
        direct = client.post("/v1/embed", json={**body, "model": "tiny-b"}).json()
        np.testing.assert_array_equal(via.json()["image_embeddings"], direct["image_embeddings"])
        np.testing.assert_array_equal(via.json()["text_embeddings"], direct["text_embeddings"])
        ranked = c.post("/v1/classify", json={"image": red, "labels": ["green", "red", "blue"]}).json()
        assert ranked["predictions"][0]["label"] == "red"  # classify runs here, towers there


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_clear_errors_when_remote_is_down_or_different(server, bundles, tmp_path):
    with pytest.raises(RemoteRuntimeError, match="no KServe v2 server answers at http://127.0.0.1"):
        TritonRuntime(bundles[0], f"127.0.0.1:{_free_port()}", timeout=5)
    with pytest.raises(ValueError, match="needs an address"):
        parse_runtime("triton://")

    address = _address(server.url)
    other_weights = build_bundle(tmp_path / "w", "tiny-a", seed=7)  # same name and shapes, another space
    with pytest.raises(BundleMismatchError, match="embeds into space .* the remote runs other weights"):
        TritonRuntime(other_weights, address)
    with pytest.raises(BundleMismatchError, match="'nothere.image_encoder' at .* is not available.*vistas deploy triton"):
        TritonRuntime(build_bundle(tmp_path / "n", "nothere"), address)
    bigger = shutil.copytree(bundles[0], tmp_path / "big")  # the same model name, another input size
    spec = json.loads((bigger / "bundle.json").read_text())
    spec["preprocess"]["image"].update(height=2 * SIZE, width=2 * SIZE)
    (bigger / "bundle.json").write_text(json.dumps(spec))
    with pytest.raises(BundleMismatchError, match=r"takes inputs .*-1, 3, 16, 16.* feeds .*-1, 3, 32, 32"):
        TritonRuntime(bigger, address)


def test_remote_gone_mid_serving_is_a_502(bundles):
    with running_server(create_app(Settings(bundles=[str(bundles[0])], threads=1))) as remote:
        settings = Settings(bundles=[str(bundles[0])], runtime=f"triton://{_address(remote.url)}")
        front_cm = running_server(create_app(settings))
        front = front_cm.__enter__()
        c = httpx.Client(base_url=front.url, timeout=30)
        assert c.post("/v1/embed", json={"texts": ["red"]}).status_code == 200
    try:
        r = c.post("/v1/embed", json={"texts": ["blue"]})
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_error", r.text
        assert "tiny-a.text_encoder" in r.json()["error"]["message"]
        assert c.get("/health").status_code == 200  # the front keeps serving
    finally:
        c.close()
        front_cm.__exit__(None, None, None)


def test_flexivit_patch_sizes_run_on_the_remote(flexi_server, small_flexi_bundle, tmp_path):
    from support.flexi_bundle import SIZE as FLEXI_SIZE
    from support.flexi_bundle import build_flexi_bundle

    address = _address(flexi_server.url)
    remote = TritonRuntime(small_flexi_bundle, address)
    local = load_model(str(small_flexi_bundle), threads=1).runtime
    assert local.spec.towers == ("image", "text", "image@p16")
    assert all(remote.inputs(t) == local.inputs(t) for t in local.spec.towers)  # each checked at start
    pixels = np.random.default_rng(4).uniform(-1, 1, (5, 3, FLEXI_SIZE, FLEXI_SIZE)).astype(np.float32)
    np.testing.assert_allclose(remote.run("image@p16", {"pixel_values": pixels}),
                               local.run("image@p16", {"pixel_values": pixels}), atol=1e-6)
    remote.close()

    # A remote without the per-size model (a repository written before deploy knew them): named at start.
    more = build_flexi_bundle(tmp_path / "more", patch_sizes=(8, 12, 16))  # same name and space, one size more
    with pytest.raises(BundleMismatchError, match=r"'flexi.image_encoder_p12' at .* is not available.*"
                                                  r"one model per patch size.*vistas deploy triton"):
        TritonRuntime(more, address)

    red = base64.b64encode(png(COLOR_RGB["red"], size=(FLEXI_SIZE, FLEXI_SIZE))).decode()
    settings = Settings(bundles=[str(small_flexi_bundle)], runtime=f"triton://{address}", threads=1)
    with running_server(create_app(settings)) as front, httpx.Client(base_url=front.url, timeout=60) as c:
        for patch_size in (16, 8):
            body = {"images": [red], "patch_size": patch_size}
            via = c.post("/v1/embed", json=body)
            assert via.status_code == 200 and via.json()["patch_size"] == patch_size, via.text
            direct = httpx.post(f"{flexi_server.url}/v1/embed", json=body, timeout=60).json()
            np.testing.assert_array_equal(via.json()["image_embeddings"], direct["image_embeddings"])
        assert 'tower="image@p16"' in c.get("/metrics").text  # its own batching queue in the front too
