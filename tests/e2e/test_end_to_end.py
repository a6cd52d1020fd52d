"""The whole path with a model trained in this session: train -> export -> index -> serve -> SDK.

A real uvicorn server on 127.0.0.1 serves the exported bundle with a FAISS + SQLite index
built by the batch job; every call goes through the SDK (`clients`).
"""

from __future__ import annotations

import asyncio
import csv
import io

import numpy as np
import pytest
import torch
from PIL import Image

from support.live_server import running_server
from vistas.images import preprocess_batch
from vistas.index.build import build_index
from vistas.inference.model import load_model
from vistas.serving.app import create_app
from vistas.serving.settings import Settings
from vistas.training.checkpoint import load_checkpoint
from vistas.training.data import get_dataset
from vistas_client import AsyncClient, Client, NotFoundError

N_SHAPES = 24  # gallery: seen-pair shapes + digits, like `make demo`'s


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, quick_bundle):
    """A folder gallery.csv + PNGs, one file corrupt, indexed by the batch job."""
    root = tmp_path_factory.mktemp("gallery")
    rows = []
    shapes = get_dataset("shapes", split="test_seen", size=N_SHAPES, image_size=48, seed=3)
    for i, ex in enumerate(shapes):
        ex.image.save(root / f"shape{i}.png")
        rows.append({"id": f"shape{i}", "path": f"shape{i}.png", "caption": ex.caption, "kind": "shape",
                     "label": shapes.class_names()[ex.label]})
    digits = get_dataset("digits", split="test", image_size=48)
    for i in range(10):
        ex = digits[i]
        ex.image.save(root / f"digit{i}.png")
        rows.append({"id": f"digit{i}", "path": f"digit{i}.png", "caption": ex.caption, "kind": "digit",
                     "label": digits.class_names()[ex.label]})
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    rows.append({"id": "broken", "path": "broken.png", "caption": "nothing", "kind": "shape", "label": "none"})
    with open(root / "gallery.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    index_dir = tmp_path_factory.mktemp("index")
    report = build_index(str(root / "gallery.csv"), index_dir, load_model(str(quick_bundle)), progress=False)
    return root, index_dir, report, rows


@pytest.fixture(scope="module")
def server(quick_bundle, gallery):
    _, index_dir, _, _ = gallery
    settings = Settings(bundles=[str(quick_bundle)], index_dir=str(index_dir), threads=1)
    with running_server(create_app(settings)) as live:
        yield live


@pytest.fixture
def client(server):
    with Client(server.url, timeout=60) as c:
        yield c


def test_batch_job_skips_and_reports_the_corrupt_file(gallery):
    root, index_dir, report, rows = gallery
    assert report.indexed == len(rows) - 1
    assert report.failed == 1 and any("broken" in e for e in report.failure_examples)
    assert (index_dir / "default" / "build_report.json").is_file()


def test_models_and_health(client, quick_bundle):
    assert client.health()["status"] == "ok"
    (m,) = client.models()
    assert m.name == "quick" and m.family == "siglip" and m.dim == 128


def test_embed_texts_and_images_match_torch_and_training_preprocessing(client, quick_run, gallery):
    """Serving (PIL -> PNG -> HTTP -> numpy preprocessing -> ONNX) equals training (numpy -> torch)."""
    root, _, _, _ = gallery
    model, _, pre = load_checkpoint(quick_run / "final")
    images = [Image.open(root / f"shape{i}.png").convert("RGB") for i in range(3)]
    texts = ["a red circle", "the number seven"]
    served_img = np.asarray(client.embed_images([root / f"shape{i}.png" for i in range(3)]).image_embeddings)
    served_txt = np.asarray(client.embed_texts(texts).text_embeddings)
    with torch.no_grad():
        from vistas.tokenizer import Tokenizer

        want_img = model.encode_image(torch.from_numpy(preprocess_batch(images, pre.image))).numpy()
        want_txt = model.encode_text(torch.from_numpy(Tokenizer(pre.text, quick_run / "final").encode(texts))).numpy()
    assert np.abs(served_img - want_img).max() <= 1e-4
    assert np.abs(served_txt - want_txt).max() <= 1e-4
    np.testing.assert_allclose(np.linalg.norm(served_img, axis=1), 1.0, atol=1e-5)


def test_classify_shapes_with_the_trained_model(client, gallery):
    """Zero-shot over all 36 colour x shape labels. After the quick run the model knows colour
    (shape comes later in training), so the best label must at least have the right colour."""
    root, _, _, rows = gallery
    labels = get_dataset("shapes", split="train", size=1).class_names()
    shape_rows = [r for r in rows if r["kind"] == "shape" and r["id"] != "broken"]
    right_color = 0
    for r in shape_rows:
        res = client.classify(root / r["path"], labels)
        scores = [p.score for p in res.predictions]
        assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)
        assert sorted(p.label for p in res.predictions) == sorted(labels)
        right_color += res.predictions[0].label.split()[0] == r["label"].split()[0]
    assert right_color >= 0.6 * len(shape_rows), f"colour right for {right_color}/{len(shape_rows)}"  # chance 1/6


def test_search_by_text_finds_the_described_colour(client, gallery):
    _, _, _, rows = gallery
    shape_rows = [r for r in rows if r["kind"] == "shape" and r["id"] != "broken"]
    hits = 0
    for r in shape_rows[:8]:
        res = client.search(text=f"a {r['label']}", k=5, filter={"kind": "shape"})
        assert len(res.results) == 5 and all(h.metadata["kind"] == "shape" for h in res.results)
        hits += res.results[0].metadata["label"].split()[0] == r["label"].split()[0]
    assert hits >= 5, f"the top result had the query's colour for only {hits}/8 queries"  # chance 1/6


def test_search_by_image_returns_itself_first(client, gallery):
    root, _, _, _ = gallery
    res = client.search(image=root / "digit3.png", k=3)
    assert res.results[0].id == "digit3" and res.results[0].score == pytest.approx(1.0, abs=1e-4)


def test_add_search_delete_items(client, gallery):
    root, _, _, _ = gallery
    buf = io.BytesIO()
    Image.open(root / "shape0.png").save(buf, format="PNG")
    n = client.add_items(
        [{"id": "new-1", "image": buf.getvalue(), "metadata": {"kind": "added", "n": 1}},
         {"id": "new-2", "text": "a large blue square", "metadata": {"kind": "added", "n": 2}}],
        collection="extra",
    )
    assert n == 2
    assert client.get_collection("extra").count == 2
    res = client.search(image=buf.getvalue(), k=2, collection="extra")
    assert res.results[0].id == "new-1" and res.results[0].metadata == {"kind": "added", "n": 1}
    assert client.delete_item("new-1", collection="extra").deleted == 1
    assert [h.id for h in client.search(image=buf.getvalue(), k=5, collection="extra").results] == ["new-2"]
    with pytest.raises(NotFoundError):
        client.search(text="anything", collection="no-such-collection")


def test_async_client_matches_sync(server, client):
    sync = client.embed_texts(["a green star"]).text_embeddings

    async def go():
        async with AsyncClient(server.url) as ac:
            return (await ac.embed_texts(["a green star"])).text_embeddings

    np.testing.assert_allclose(asyncio.run(go()), sync, atol=1e-6)


def test_index_survives_a_server_restart(quick_bundle, gallery, tmp_path):
    """Items added over HTTP are there after the server process state is gone."""
    _, index_dir, _, _ = gallery
    root = tmp_path / "idx"
    settings = Settings(bundles=[str(quick_bundle)], index_dir=str(root), threads=1)
    vec = np.random.default_rng(0).standard_normal(128).astype(np.float32)
    with running_server(create_app(settings)) as live, Client(live.url) as c:
        assert c.add_items([{"id": "keep", "vector": vec.tolist(), "metadata": {"v": 7}}], collection="c") == 1
    with running_server(create_app(settings)) as live, Client(live.url) as c:
        res = c.search(vector=vec.tolist(), k=1, collection="c")
        assert res.results[0].id == "keep" and res.results[0].metadata == {"v": 7}
        assert c.get_collection("c").count == 1
