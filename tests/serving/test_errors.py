"""Every bad input is a JSON error {"error": {"code", "message"}} with the right 4xx,
and the server keeps serving afterwards."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image

from support.tiny_bundle import COLOR_RGB, png

RED = base64.b64encode(png(COLOR_RGB["red"])).decode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def truncated_png() -> bytes:
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    return buf.getvalue()[: len(buf.getvalue()) // 2]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG declaring width x height with almost no pixel data: a decompression-bomb stand-in."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def chunks(total: int):
    for _ in range(total // 10_000):
        yield b"x" * 10_000


def post(name: str, path: str, status: int, code: str, body=None, **kwargs):
    """One case: POST `body` as JSON (or the given httpx kwargs), expect `status` and `code`."""
    if body is not None:
        kwargs["json"] = body
    return pytest.param("POST", path, kwargs, status, code, id=name)


def get(name: str, path: str, status: int, code: str, method: str = "GET"):
    return pytest.param(method, path, {}, status, code, id=name)


JSON_TYPE = {"content-type": "application/json"}
IMAGE_FILE = {"image": ("r.png", png(), "image/png")}
ERRS = {"collection": "errs"}

CASES = [
    # images
    post("not an image", "/v1/embed", 400, "invalid_image", {"images": [b64(b"hello, not an image")]}),
    post("truncated image", "/v1/embed", 400, "truncated_image", {"images": [b64(truncated_png())]}),
    post("empty image", "/v1/classify", 400, "empty_image", {"image": "", "labels": ["red"]}),
    post("over pixel limit", "/v1/embed", 413, "image_too_large", {"images": [b64(png(size=(400, 400)))]}),
    post("large header", "/v1/embed", 413, "image_too_large", {"images": [b64(png_header_only(2_000, 2_000))]}),
    post("bomb header", "/v1/classify", 413, "image_too_large",
         {"image": b64(png_header_only(50_000, 50_000)), "labels": ["a"]}),
    post("bad multipart image", "/v1/embed", 400, "invalid_image",
         files=[("images", ("x.png", b"GIF89a...", "image/png"))]),
    post("invalid base64", "/v1/embed", 400, "invalid_base64", {"images": ["not base64 !!"]}),
    post("invalid base64, search", "/v1/search", 400, "invalid_base64", {**ERRS, "image": "%%%"}),
    # labels, texts and request limits
    post("empty labels", "/v1/classify", 422, "validation_error", {"image": RED, "labels": []}),
    post("no labels, multipart", "/v1/classify", 422, "validation_error", files=IMAGE_FILE),
    post("duplicate labels", "/v1/classify", 422, "validation_error", {"image": RED, "labels": ["a", "a"]}),
    post("template without slot", "/v1/classify", 422, "validation_error",
         {"image": RED, "labels": ["a"], "templates": ["x"]}),
    post("too many labels", "/v1/classify", 422, "too_many_items", {"image": RED, "labels": list("abcdefghijk")}),
    post("too many texts", "/v1/embed", 422, "too_many_items", {"texts": ["a"] * 9}),
    post("too many images", "/v1/embed", 422, "too_many_items", {"images": [RED] * 5}),
    post("text too long", "/v1/embed", 422, "text_too_long", {"texts": ["a" * 201]}),
    post("too many templates", "/v1/classify", 422, "too_many_items",
         {"image": RED, "labels": ["a"], "templates": ["{}", "a {}", "b {}", "c {}"]}),
    post("template too long", "/v1/classify", 422, "text_too_long",
         {"image": RED, "labels": ["a"], "templates": ["{}" + "x" * 200]}),
    post("label too long", "/v1/classify", 422, "text_too_long", {"image": RED, "labels": ["x" * 201]}),
    post("too many images, multipart", "/v1/embed", 422, "too_many_items",
         files=[("images", (f"{i}.png", png(), "image/png")) for i in range(5)]),
    post("too many items", "/v1/collections/errs/items", 422, "too_many_items",
         {"items": [{"id": str(i), "text": "a"} for i in range(6)]}),
    post("too many images of items", "/v1/collections/errs/items", 422, "too_many_items",
         {"items": [{"id": str(i), "image": RED} for i in range(5)]}),
    post("item text too long", "/v1/collections/errs/items", 422, "text_too_long",
         {"items": [{"id": "a", "text": "x" * 201}]}),
    post("search text too long", "/v1/search", 422, "text_too_long", {**ERRS, "text": "x" * 201}),
    post("k over max_k", "/v1/search", 422, "too_many_items", {**ERRS, "text": "a", "k": 51}),
    post("nothing to embed", "/v1/embed", 422, "validation_error", {}),
    post("wrong field type", "/v1/embed", 422, "validation_error", {"texts": "red"}),
    post("unknown field", "/v1/embed", 422, "validation_error", {"text": ["red"]}),
    # bodies and content types
    post("invalid json", "/v1/embed", 400, "invalid_json", content=b"{", headers=JSON_TYPE),
    post("invalid json, typed route", "/v1/search", 400, "invalid_json", content=b"{", headers=JSON_TYPE),
    post("body too large", "/v1/embed", 413, "body_too_large", {"texts": ["a" * 250_000]}),
    post("chunked body too large", "/v1/embed", 413, "body_too_large", content=chunks(300_000), headers=JSON_TYPE),
    post("wrong content type", "/v1/embed", 415, "unsupported_media_type",
         content=b"red", headers={"content-type": "text/plain"}),
    post("no content type", "/v1/classify", 415, "unsupported_media_type", content=b"{}"),
    post("wrong content type, typed route", "/v1/search", 415, "unsupported_media_type",
         content=b"x", headers={"content-type": "text/plain"}),
    # models and collections
    post("unknown model", "/v1/embed", 404, "model_not_found", {"model": "nope", "texts": ["a"]}),
    post("unknown collection", "/v1/search", 404, "collection_not_found", {"collection": "nope", "text": "a"}),
    get("unknown collection, info", "/v1/collections/nope", 404, "collection_not_found"),
    get("unknown collection, delete", "/v1/collections/nope/items/x", 404, "collection_not_found", "DELETE"),
    post("invalid collection name", "/v1/collections/no%20pe/items", 422, "invalid_collection_name",
         {"items": [{"id": "a", "text": "a"}]}),
    # search queries and items
    post("two queries", "/v1/search", 400, "invalid_query", {**ERRS, "text": "a", "vector": [1.0] * 8}),
    post("no query", "/v1/search", 400, "invalid_query", ERRS),
    post("k out of range", "/v1/search", 422, "validation_error", {**ERRS, "text": "a", "k": 0}),
    post("bad filter", "/v1/search", 422, "invalid_filter", {**ERRS, "text": "a", "filter": {"kind": {"$re": "x"}}}),
    post("vector of wrong dim", "/v1/search", 422, "dimension_mismatch", {**ERRS, "vector": [1.0, 2.0]}),
    post("zero vector", "/v1/collections/errs/items", 422, "invalid_vector",
         {"items": [{"id": "z", "vector": [0.0] * 8}]}),
    post("item without content", "/v1/collections/errs/items", 400, "invalid_item", {"items": [{"id": "a"}]}),
    post("item with two contents", "/v1/collections/errs/items", 400, "invalid_item",
         {"items": [{"id": "a", "text": "a", "image": RED}]}),
    post("duplicate ids", "/v1/collections/errs/items", 422, "duplicate_ids",
         {"items": [{"id": "a", "text": "a"}, {"id": "a", "text": "b"}]}),
    post("no items", "/v1/collections/errs/items", 422, "validation_error", {"items": []}),
    # routes
    get("unknown route", "/v1/nothing", 404, "not_found"),
    get("wrong method", "/v1/embed", 405, "method_not_allowed"),
]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def errs_collection(server):
    """A collection for the search cases, so they reach the check they test."""
    with httpx.Client(base_url=server.url) as c:
        r = c.post("/v1/collections/errs/items", json={"items": [{"id": "seed", "text": "red"}]})
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("method, path, kwargs, status, code", CASES)
def test_bad_input(client: httpx.Client, method, path, kwargs, status, code):
    r = client.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    err = r.json()["error"]
    assert set(r.json()) == {"error"} and set(err) == {"code", "message"}
    assert err["code"] == code and len(err["message"]) > 10, err
    assert client.get("/health").json() == {"status": "ok"}


def test_messages_name_the_problem(client: httpx.Client):
    r = client.post("/v1/embed", json={"images": [RED, b64(b"nope")]})
    assert r.json()["error"]["message"].startswith("images[1]:")
    r = client.post("/v1/embed", json={"texts": ["ok", 3]})
    assert "texts[1]" in r.json()["error"]["message"]
    r = client.post("/v1/embed", json={"model": "nope", "texts": ["a"]})
    assert "tiny-a" in r.json()["error"]["message"]  # lists the models there are


def test_unexpected_error_is_500_without_internals(bundles):
    from fastapi.testclient import TestClient

    from vistas.inference.model import load_models
    from vistas.serving.app import create_app
    from vistas.serving.settings import Settings

    model = load_models([str(bundles[0])])["tiny-a"]

    def boom(texts):
        raise RuntimeError("secret internal detail")

    model.embed_texts = boom
    app = create_app(Settings(), models=[model])
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/v1/embed", json={"texts": ["a"]})
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "internal_error"
    assert "secret" not in r.text
