"""Runtime and model without HTTP: bundle checks, chunking, label cache; no torch anywhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support.tiny_bundle import COLOR_RGB, DIM, SIZE, TEXT_LENGTH, build_bundle
from vistas.inference.model import LRUCache, ServedModel
from vistas.inference.onnx_runtime import OnnxRuntime
from vistas.inference.runtime import BundleMismatchError

REPO = Path(__file__).resolve().parents[2]


def test_serving_never_imports_torch():
    code = (
        "import sys\n"
        "import vistas.serving, vistas.serving.app, vistas.inference.onnx_runtime, vistas.serving.server\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or m.startswith('vistas.training'))\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_package_import_is_light():
    code = "import sys, vistas.serving, vistas.inference, vistas.inference.runtime, vistas.inference.runtimes; heavy = {'onnxruntime', 'fastapi', 'faiss'} & set(sys.modules); assert not heavy"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_runtime_chunks_and_normalises(bundles):
    rt = OnnxRuntime(bundles[0], threads=1, max_batch=3)
    pixels = np.random.default_rng(0).uniform(-1, 1, (7, 3, SIZE, SIZE)).astype(np.float32)
    out = rt.run("image", {"pixel_values": pixels})
    assert out.shape == (7, DIM) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    whole = OnnxRuntime(bundles[0], threads=1, max_batch=64).run("image", {"pixel_values": pixels})
    np.testing.assert_allclose(out, whole, atol=1e-6)  # chunking changes nothing
    assert rt.run("text", {"input_ids": np.zeros((2, TEXT_LENGTH), np.int64) + 5}).shape == (2, DIM)
    assert [(t.name, t.dtype, t.shape) for t in rt.inputs("image")] == [("pixel_values", "float32", (None, 3, SIZE, SIZE))]


def test_runtime_names_bad_feeds(bundles):
    rt = OnnxRuntime(bundles[0], threads=1)
    with pytest.raises(ValueError, match="takes inputs \\['pixel_values'\\]"):
        rt.run("image", {"pixels": np.zeros((1, 3, SIZE, SIZE), np.float32)})
    with pytest.raises(ValueError, match="must have shape"):
        rt.run("image", {"pixel_values": np.zeros((1, 3, SIZE + 1, SIZE), np.float32)})


def test_runtime_rejects_mismatched_graph(tmp_path):
    build_bundle(tmp_path, image_input="pixels")
    with pytest.raises(BundleMismatchError, match="pixel_values"):
        OnnxRuntime(tmp_path)


def test_runtime_rejects_missing_bundle(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a vistas bundle"):
        OnnxRuntime(tmp_path)


def test_classify_ranks_colours_and_caches(bundles):
    model = ServedModel("tiny", OnnxRuntime(bundles[0], threads=1), cache_size=2)
    for color, rgb in COLOR_RGB.items():
        ranked = model.classify(Image.new("RGB", (30, 20), rgb), ["red", "green", "blue"])
        assert ranked[0][0] == color and all(0 < p < 1 for _, p in ranked)
    assert len(model.label_cache) == 2  # LRU bound holds
    # A label's ensembled embedding: mean of its prompts' embeddings, re-normalised.
    prompts = model.embed_texts(["a photo of a red.", "red"]).mean(axis=0)
    np.testing.assert_allclose(model.label_embeddings(["red"])[0], prompts / np.linalg.norm(prompts), atol=1e-6)


def test_lru_cache_evicts_least_recent():
    cache = LRUCache(2)
    cache.put("a", np.zeros(1))
    cache.put("b", np.ones(1))
    assert cache.get("a") is not None  # "a" is now the most recent
    cache.put("c", np.ones(1))
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert (cache.hits, cache.misses) == (3, 1)


def test_health_answers_while_inference_runs(bundles):
    """Inference runs in the threadpool: a blocked model must not block the event loop."""
    import threading

    from fastapi.testclient import TestClient

    from vistas.inference.model import load_models
    from vistas.serving.app import create_app
    from vistas.serving.settings import Settings

    model = load_models([str(bundles[0])])["tiny-a"]
    entered, release = threading.Event(), threading.Event()
    embed_texts = model.embed_texts

    def blocking(texts):
        entered.set()
        assert release.wait(10), "the /health request never got through"
        return embed_texts(texts)

    model.embed_texts = blocking
    with TestClient(create_app(Settings(), models=[model]), raise_server_exceptions=False) as c:
        slow: list = []
        t = threading.Thread(target=lambda: slow.append(c.post("/v1/embed", json={"texts": ["red"]})))
        t.start()
        assert entered.wait(10)
        assert c.get("/health").json() == {"status": "ok"}  # served while the embed is still blocked
        release.set()
        t.join(10)
    assert slow[0].status_code == 200
