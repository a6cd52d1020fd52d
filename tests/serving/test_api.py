"""The HTTP API against a real uvicorn server: contract shapes and real results."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from support.tiny_bundle import COLOR_RGB, DIM, png


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unit(rows) -> bool:
    return np.allclose(np.linalg.norm(np.asarray(rows), axis=1), 1.0, atol=1e-5)


def test_health_models_docs(client: httpx.Client):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").status_code == 200
    models = client.get("/v1/models").json()["models"]
    assert [m["name"] for m in models] == ["tiny-a", "tiny-b"]
    assert models[0]["default"] and not models[1]["default"]
    assert models[0]["dim"] == DIM and models[0]["family"] == "siglip"
    assert models[0]["space"] != models[1]["space"]
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/embed", "/v1/classify", "/v1/search", "/v1/collections/{name}/items"} <= set(paths)
    assert "multipart/form-data" in paths["/v1/embed"]["post"]["requestBody"]["content"]


def test_embed_json(client: httpx.Client):
    red, blue = png(COLOR_RGB["red"]), png(COLOR_RGB["blue"])
    images = [b64(red), "data:image/png;base64," + b64(blue), b64(red)]
    r = client.post("/v1/embed", json={"texts": ["red", "a blue car", "red"], "images": images})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "tiny-a" and body["dim"] == DIM and body["space"].startswith("sha256:")
    img, txt = np.asarray(body["image_embeddings"]), np.asarray(body["text_embeddings"])
    assert img.shape == (3, DIM) and txt.shape == (3, DIM)
    assert unit(img) and unit(txt)
    np.testing.assert_array_equal(img[0], img[2])  # same image, same vector
    np.testing.assert_array_equal(txt[0], txt[2])
    assert img[0] @ img[1] < 0.5  # red and blue differ
    assert txt[0] @ img[0] > txt[0] @ img[1]  # "red" is nearer the red image: order kept


def test_embed_multipart_matches_json(client: httpx.Client):
    red, green = png(COLOR_RGB["red"]), png(COLOR_RGB["green"])
    files = [("images", ("r.png", red, "image/png")), ("images", ("g.png", green, "image/png"))]
    r = client.post("/v1/embed", files=files, data={"texts": ["green", "red"], "model": "tiny-b"})
    assert r.status_code == 200, r.text
    multi = r.json()
    assert multi["model"] == "tiny-b"
    as_json = client.post(
        "/v1/embed", json={"model": "tiny-b", "images": [b64(red), b64(green)], "texts": ["green", "red"]}
    ).json()
    np.testing.assert_allclose(multi["image_embeddings"], as_json["image_embeddings"], atol=1e-6)
    np.testing.assert_allclose(multi["text_embeddings"], as_json["text_embeddings"], atol=1e-6)


def test_classify_json_sorted_and_cached(client: httpx.Client, server):
    cache = server.app.state.models["tiny-a"].label_cache
    labels = ["green", "red", "blue", "dog"]
    body = {"image": b64(png(COLOR_RGB["red"])), "labels": labels}
    hits0, misses0 = cache.hits, cache.misses
    first = client.post("/v1/classify", json=body).json()
    assert (cache.hits - hits0, cache.misses - misses0) == (0, 4)
    preds = first["predictions"]
    assert first["model"] == "tiny-a" and preds[0]["label"] == "red"
    assert sorted(p["label"] for p in preds) == sorted(labels)
    scores = [p["score"] for p in preds]
    assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)
    second = client.post("/v1/classify", json=body).json()
    assert second == first
    assert (cache.hits - hits0, cache.misses - misses0) == (4, 4)  # the labels were not re-embedded
    # Other templates are another cache key.
    client.post("/v1/classify", json=dict(body, templates=["{}"]))
    assert cache.misses - misses0 == 8


def test_classify_multipart(client: httpx.Client):
    files = {"image": ("b.png", png(COLOR_RGB["blue"]), "image/png")}
    repeated = client.post("/v1/classify", files=files, data={"labels": ["red", "blue"], "multi_label": "true"})
    assert repeated.status_code == 200, repeated.text
    assert repeated.json()["predictions"][0]["label"] == "blue"
    as_json_list = client.post("/v1/classify", files=files, data={"labels": '["red", "blue"]'})
    assert as_json_list.json() == repeated.json()  # multi_label changes nothing (sigmoid scores)


def test_items_search_delete(client: httpx.Client):
    items = [
        {"id": "r1", "image": b64(png(COLOR_RGB["red"])), "metadata": {"kind": "image"}},
        {"id": "g1", "image": b64(png(COLOR_RGB["green"])), "metadata": {"kind": "image"}},
        {"id": "b-text", "text": "a blue square", "metadata": {"kind": "text"}},
        {"id": "v1", "vector": [0.0] * (DIM - 1) + [2.0]},
    ]
    r = client.post("/v1/collections/colors/items", json={"items": items})
    assert r.status_code == 200, r.text
    assert r.json() == {"collection": "colors", "upserted": 4}
    info = client.get("/v1/collections/colors").json()
    assert info == {
        "name": "colors",
        "count": 4,
        "space": client.get("/v1/models").json()["models"][0]["space"],
        "index": "Flat",
        "dim": DIM,
        "params": {},
        "recall_at_10": 1.0,
        "target_recall": 0.95,
        "tombstones": 0,
    }
    assert info in client.get("/v1/collections").json()["collections"]
    item = client.get("/v1/collections/colors/items/v1", params={"vector": "true"}).json()
    assert item == {"id": "v1", "metadata": {}, "vector": [0.0] * (DIM - 1) + [1.0]}  # stored normalised
    assert client.get("/v1/collections/colors/items/g1").json() == {"id": "g1", "metadata": {"kind": "image"},
                                                                     "vector": None}
    missing = client.get("/v1/collections/colors/items/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "item_not_found"
    # items added as images keep a thumbnail; the others have none
    thumb = client.get("/v1/collections/colors/images/r1")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    rgb = np.asarray(Image.open(io.BytesIO(thumb.content)).convert("RGB"), dtype=float)
    assert rgb.shape == (20, 20, 3) and np.abs(rgb - COLOR_RGB["red"]).max() < 8  # small images stay their size
    for id, code in (("b-text", "no_image"), ("v1", "no_image"), ("nope", "item_not_found")):
        r = client.get(f"/v1/collections/colors/images/{id}")
        assert r.status_code == 404 and r.json()["error"]["code"] == code

    def search(**query) -> list[dict]:
        r = client.post("/v1/search", json={"collection": "colors", **query})
        assert r.status_code == 200, r.text
        assert r.json()["collection"] == "colors"
        return r.json()["results"]

    assert search(text="red", k=1)[0]["id"] == "r1"
    assert search(image=b64(png(COLOR_RGB["blue"])), k=1)[0]["id"] == "b-text"
    hits = search(vector=[0.0] * (DIM - 1) + [1.0], k=2)
    assert hits[0]["id"] == "v1" and abs(hits[0]["score"] - 1.0) < 1e-5  # stored normalised
    assert hits[0]["score"] >= hits[1]["score"]
    filtered = search(text="red", filter={"kind": "text"})
    assert [h["id"] for h in filtered] == ["b-text"] and filtered[0]["metadata"] == {"kind": "text"}

    assert client.delete("/v1/collections/colors/items/r1").json() == {"collection": "colors", "deleted": 1}
    assert client.delete("/v1/collections/colors/items/r1").json()["deleted"] == 0
    assert "r1" not in {h["id"] for h in search(text="red", k=10)}
    assert client.get("/v1/collections/colors").json()["count"] == 3
    assert client.get("/v1/collections/colors/images/r1").status_code == 404  # the thumbnail went with it
    # Ids are often file paths.
    client.post("/v1/collections/colors/items", json={"items": [{"id": "dir/x.png", "text": "red"}]})
    assert client.delete("/v1/collections/colors/items/dir/x.png").json()["deleted"] == 1


def test_upsert_replaces_and_other_space_conflicts(client: httpx.Client):
    item = {"id": "x", "text": "red", "metadata": {"v": 1}}
    assert client.post("/v1/collections/replace/items", json={"items": [item]}).status_code == 200
    client.post("/v1/collections/replace/items", json={"items": [dict(item, metadata={"v": 2})]})
    hits = client.post("/v1/search", json={"collection": "replace", "text": "red"}).json()["results"]
    assert [(h["id"], h["metadata"]) for h in hits] == [("x", {"v": 2})]
    # tiny-b embeds into another space: neither writing nor searching may mix them.
    r = client.post("/v1/collections/replace/items", json={"model": "tiny-b", "items": [item]})
    assert r.status_code == 409 and r.json()["error"]["code"] == "space_mismatch"
    r = client.post("/v1/search", json={"collection": "replace", "text": "red", "model": "tiny-b"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "space_mismatch"


def test_server_connections_send_without_nagle_delay(server, client: httpx.Client):
    """Every accepted connection has TCP_NODELAY: without it, Nagle held each response body
    (uvicorn's second write) until the client's delayed ACK, ~40 ms per request."""
    import socket

    assert client.get("/health").status_code == 200  # keeps a connection open
    connections = list(server.uvicorn.server_state.connections)
    assert connections
    for protocol in connections:
        sock = protocol.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_sdk_collection_methods(server):
    import asyncio

    from vistas_client import AsyncClient, Client, NotFoundError

    with Client(server.url) as vs:
        items = [{"id": "s/1", "vector": [1.0] + [0.0] * (DIM - 1), "metadata": {"n": 1}},
                 {"id": "s/2", "image": png(COLOR_RGB["green"]), "metadata": {"n": 2}}]
        assert vs.add_items(items, collection="sdk") == 2
        assert vs.count("sdk") == 2
        item = vs.get_item("s/1", collection="sdk", vector=True)
        assert (item.id, item.metadata, item.vector) == ("s/1", {"n": 1}, [1.0] + [0.0] * (DIM - 1))
        assert vs.get_item("s/2", collection="sdk").vector is None
        with pytest.raises(NotFoundError):
            vs.get_item("nope", collection="sdk")
        info = {c.name: c for c in vs.list_collections()}["sdk"]
        assert (info.count, info.index, info.dim, info.recall_at_10) == (2, "Flat", DIM, 1.0)

    async def run():
        async with AsyncClient(server.url) as avs:
            return await avs.count("sdk"), (await avs.get_item("s/2", collection="sdk")).metadata

    assert asyncio.run(run()) == (2, {"n": 2})
