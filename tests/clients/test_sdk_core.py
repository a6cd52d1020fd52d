"""SDK core against a real HTTP server: retries, error mapping, request bodies, typed results, images.

The server is a scripted FastAPI app under uvicorn on 127.0.0.1 (a free port, in a
background thread): each test queues the replies it wants; when the queue is empty
it answers like vistas would. Every reply is built from the server's own response
schemas (vistas.serving.schemas) and dumped as the server would send it, so these tests
fail when the SDK's types and the server's contract drift apart. Every test runs with
Client and with AsyncClient. End-to-end tests against the real vistas server live elsewhere.
"""

import asyncio
import base64
import dataclasses
import inspect
import io
import json
import socket
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from PIL import Image

from vistas.serving import schemas as S
from vistas_client import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    ClassifyResult,
    Client,
    CollectionInfo,
    DeleteResult,
    EmbedResult,
    Item,
    ModelInfo,
    NotFoundError,
    Prediction,
    RateLimitError,
    ResponseValidationError,
    RetryPolicy,
    SearchHit,
    SearchResult,
    ServerError,
    UpsertResult,
)
from vistas_client._images import encode_image
from vistas_client.types import _Result

FAST = RetryPolicy(max_retries=2, initial_delay=0.01)  # real backoff, tiny waits
SLOW = RetryPolicy(max_retries=2, initial_delay=30.0)  # backoff would stall the test: only Retry-After may be used


# --- the scripted server ----------------------------------------------------------------------

state = SimpleNamespace(replies=[], requests=[])
app = FastAPI()


def as_sent(reply: S.BaseModel) -> dict:
    """A response model as the server puts it on the wire."""
    return reply.model_dump(mode="json")


def error_reply(status, code="boom", message="it broke", headers=None, sleep=0.0):
    body = as_sent(S.ErrorResponse(error=S.ErrorBody(code=code, message=message)))
    return {"status": status, "body": body, "headers": headers, "sleep": sleep}


@app.api_route("/{path:path}", methods=["GET", "POST", "DELETE"])
async def scripted(path: str, request: Request):
    raw = await request.body()
    body = json.loads(raw) if raw else None
    path_as_sent = request.scope["raw_path"].decode()  # still percent-encoded
    state.requests.append(
        SimpleNamespace(
            method=request.method, path=path_as_sent, query=request.url.query, headers=request.headers, json=body
        )
    )
    if state.replies:
        reply = state.replies.pop(0)
        await asyncio.sleep(reply.get("sleep", 0))
        if isinstance(reply["body"], str):
            return PlainTextResponse(reply["body"], reply["status"], headers=reply.get("headers"))
        return JSONResponse(reply["body"], reply["status"], headers=reply.get("headers"))
    return JSONResponse(vistas_like(request.method, "/" + path, body))


def vistas_like(method: str, path: str, body: dict | None) -> dict:
    """A plausible 200 body per route, from the server's schemas.

    Embeddings encode what was sent: [len(text or image bytes), kind].
    """
    if path == "/v1/embed":
        texts, images = body.get("texts", []), body.get("images", [])
        reply = S.EmbedResponse(
            model=body.get("model", "tiny"),
            space="sha256:s",
            dim=2,
            text_embeddings=[[float(len(t)), 0.0] for t in texts],
            image_embeddings=[[float(len(base64.b64decode(i))), 1.0] for i in images],
            patch_size=body.get("patch_size", 8) if images else None,
        )
    elif path == "/v1/classify":
        predictions = [S.Prediction(label=label, score=1 / (i + 2)) for i, label in enumerate(body["labels"])]
        reply = S.ClassifyResponse(model="tiny", predictions=predictions, patch_size=body.get("patch_size", 8))
    elif path == "/v1/search":
        hits = [S.SearchResult(id="a", score=0.9, metadata={"kind": "x"})]
        reply = S.SearchResponse(collection=body["collection"], results=hits)
    elif path == "/v1/collections":
        reply = S.CollectionsResponse(collections=[collection_info("photos"), collection_info("pets")])
    elif path.startswith("/v1/collections/"):
        parts = path.split("/")  # "", "v1", "collections", name[, "items", id]
        name = parts[3]
        if method == "POST":
            reply = S.UpsertResponse(collection=name, upserted=len(body["items"]))
        elif method == "DELETE":
            reply = S.DeleteResponse(collection=name, deleted=1)
        elif len(parts) > 5:
            reply = S.ItemResponse(id="/".join(parts[5:]), metadata={"kind": "x"}, vector=[0.6, 0.8])
        else:
            reply = collection_info(name)
    elif path == "/v1/models":
        model = S.ModelInfo(
            name="tiny", family="siglip", space="sha256:s", dim=2, image_size=(16, 16), text_length=8, default=True,
            patch_sizes=[8], default_patch_size=8,
        )
        reply = S.ModelsResponse(models=[model])
    else:
        reply = S.HealthResponse(status="ok")
    return as_sent(reply)


def collection_info(name: str) -> S.CollectionInfo:
    return S.CollectionInfo(name=name, count=3, space="sha256:s", index="IDMap2,Flat", dim=2)


@pytest.fixture(scope="module")
def server():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "test server did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    srv.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(params=["sync", "async"])
def call(request, server):
    """call(lambda c: c.method(...), **client_kwargs): runs it with a Client or an AsyncClient."""
    state.replies.clear()
    state.requests.clear()

    def run(fn, base_url=server, **kwargs):
        kwargs.setdefault("max_retries", FAST)
        if request.param == "sync":
            with Client(base_url, **kwargs) as client:
                return fn(client)

        async def go():
            async with AsyncClient(base_url, **kwargs) as client:
                return await fn(client)

        return asyncio.run(go())

    return run


# --- retry policy ---------------------------------------------------------------------------


def test_retry_policy():
    policy = RetryPolicy()
    assert policy.max_retries == 2
    for attempt in range(2):
        cap = min(policy.max_delay, policy.initial_delay * 2**attempt)
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays) and max(delays) > cap / 2  # full jitter over [0, cap]
    assert policy.delay(2) is None  # retries used up
    assert policy.delay(0, retry_after=3.0) == 3.0
    assert policy.delay(0, retry_after=3600) is None  # too long to wait inside a call
    statuses = (200, 400, 401, 404, 408, 409, 422, 429, 500, 503)
    assert [s for s in statuses if RetryPolicy.retryable(s)] == [408, 429, 500, 503]


def test_retries_5xx_then_succeeds(call):
    state.replies += [error_reply(503), error_reply(502)]
    assert call(lambda c: c.health()) == {"status": "ok"}
    assert len(state.requests) == 3


def test_gives_up_after_max_retries(call):
    state.replies += [error_reply(503, "unavailable", "warming up")] * 3
    with pytest.raises(ServerError) as err:
        call(lambda c: c.health())
    assert (err.value.status_code, err.value.code, err.value.message) == (503, "unavailable", "warming up")
    assert len(state.requests) == 3


def test_no_retries_when_disabled(call):
    state.replies += [error_reply(500)]
    with pytest.raises(ServerError):
        call(lambda c: c.health(), max_retries=0)
    assert len(state.requests) == 1


@pytest.mark.parametrize("status", [429, 408, 503])
def test_honours_retry_after(call, status):
    state.replies += [error_reply(status, headers={"Retry-After": "0"})]
    t0 = time.monotonic()
    assert call(lambda c: c.health(), max_retries=SLOW) == {"status": "ok"}
    assert time.monotonic() - t0 < 5 and len(state.requests) == 2  # Retry-After: 0, not a 30 s backoff


def test_long_retry_after_is_raised_not_waited(call):
    state.replies += [error_reply(429, "rate_limited", "slow down", headers={"Retry-After": "3600"})]
    with pytest.raises(RateLimitError, match="slow down"):
        call(lambda c: c.health())
    assert len(state.requests) == 1


@pytest.mark.parametrize(
    "status, cls",
    [(400, BadRequestError), (413, BadRequestError), (415, BadRequestError), (422, BadRequestError),
     (401, AuthenticationError), (403, AuthenticationError), (404, NotFoundError), (409, APIError)],
)
def test_client_errors_are_mapped_and_not_retried(call, status, cls):
    state.replies += [error_reply(status, "invalid_image", "images[1]: not an image", headers={"x-request-id": "r-7"})]
    with pytest.raises(cls) as err:
        call(lambda c: c.embed_texts(["a"]))
    e = err.value
    assert type(e) is cls
    assert (e.status_code, e.code, e.request_id) == (status, "invalid_image", "r-7")
    assert e.message == "images[1]: not an image"
    assert "invalid_image" in str(e) and "images[1]: not an image" in str(e)
    assert len(state.requests) == 1


def test_non_json_error_body(call):
    state.replies += [{"status": 500, "body": "Internal Server Error"}] * 3
    with pytest.raises(ServerError) as err:
        call(lambda c: c.health())
    assert err.value.code == "http_500" and err.value.message == "Internal Server Error"


def test_connection_refused(call):
    with socket.socket() as s:  # a port that was free a moment ago, now closed: nothing listens
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(APIConnectionError, match="3 attempt"):
        call(lambda c: c.health(), base_url=dead)


def test_timeout(call):
    state.replies += [{"status": 200, "body": {"status": "late"}, "sleep": 1.0}]
    with pytest.raises(APITimeoutError):
        call(lambda c: c.health(), timeout=0.2, max_retries=0)


def test_api_key_is_a_bearer_token(call):
    call(lambda c: c.health(), api_key="sk-test")
    call(lambda c: c.health())
    assert state.requests[0].headers["authorization"] == "Bearer sk-test"
    assert "authorization" not in state.requests[1].headers


# --- request bodies and typed results -----------------------------------------------------------


def test_embed_texts_batches_in_order(call):
    texts = ["a", "bb", "ccc", "dddd", "eeeee"]
    result = call(lambda c: c.embed_texts(texts, batch_size=2, model="tiny"))
    assert [r.json for r in state.requests] == [
        {"model": "tiny", "texts": ["a", "bb"]},
        {"model": "tiny", "texts": ["ccc", "dddd"]},
        {"model": "tiny", "texts": ["eeeee"]},
    ]
    assert [v[0] for v in result.text_embeddings] == [1, 2, 3, 4, 5] and result.image_embeddings == []
    assert result.text_array().shape == (5, 2) and result.image_array().shape == (0, 2)
    assert (result.model, result.space, result.dim) == ("tiny", "sha256:s", 2)


def test_embed_images_sends_base64(call, tmp_path):
    png = tmp_path / "red.png"
    Image.new("RGB", (5, 4), (255, 0, 0)).save(png)
    raw = png.read_bytes()
    pil = Image.new("RGB", (3, 2), (0, 255, 0))
    result = call(lambda c: c.embed_images([png, str(png), raw, pil], batch_size=3, progress=True))
    sent = [img for r in state.requests for img in r.json["images"]]
    assert [len(r.json["images"]) for r in state.requests] == [3, 1] and "model" not in state.requests[0].json
    assert [base64.b64decode(s) for s in sent[:3]] == [raw] * 3
    decoded = Image.open(io.BytesIO(base64.b64decode(sent[3])))
    assert decoded.format == "PNG" and decoded.size == (3, 2) and decoded.getpixel((0, 0)) == (0, 255, 0)
    assert len(result.image_embeddings) == 4 and result.image_embeddings[0] == [float(len(raw)), 1.0]


def test_classify_search_and_collections(call):
    items = [{"id": f"i{j}", "text": "t", "metadata": {"j": j}} for j in range(3)]
    items.append({"id": "v", "vector": np.zeros(2)})
    classified = call(lambda c: c.classify(b"img", ["cat", "dog"], templates=["a {}"]))
    by_vector = call(lambda c: c.search(vector=np.ones(2), k=3, filter={"k": 1}))
    by_text = call(lambda c: c.search(text="hi", collection="photos"))
    upserted = call(lambda c: c.add_items(items, collection="my col", batch_size=2))
    deleted = call(lambda c: c.delete_item("a/b c", collection="my col"))
    info = call(lambda c: c.get_collection("photos"))
    models = call(lambda c: c.models())
    bodies = [(r.method, r.path, r.json) for r in state.requests]
    classify_body = {"image": "aW1n", "labels": ["cat", "dog"], "templates": ["a {}"], "multi_label": False}
    assert bodies[0] == ("POST", "/v1/classify", classify_body)  # base64 of b"img"; model left to the server
    search_body = {"collection": "default", "vector": [1.0, 1.0], "k": 3, "filter": {"k": 1}}
    assert bodies[1] == ("POST", "/v1/search", search_body)
    assert bodies[2] == ("POST", "/v1/search", {"collection": "photos", "text": "hi", "k": 10})
    assert [b[:2] for b in bodies[3:5]] == [("POST", "/v1/collections/my%20col/items")] * 2
    assert bodies[4][2]["items"][1] == {"id": "v", "vector": [0.0, 0.0]}
    assert bodies[5][:2] == ("DELETE", "/v1/collections/my%20col/items/a%2Fb%20c")
    assert bodies[6][:2] == ("GET", "/v1/collections/photos") and bodies[7][:2] == ("GET", "/v1/models")
    assert [p.label for p in classified.predictions] == ["cat", "dog"] and classified.predictions[0].score == 0.5
    assert by_vector.results[0].id == "a" and by_vector.results[0].metadata == {"kind": "x"}
    assert by_text.collection == "photos"
    assert upserted == 4 and deleted.deleted == 1 and info.count == 3 and info.index == "IDMap2,Flat"
    assert models[0].name == "tiny" and models[0].dim == 2 and models[0].default is True  # extra fields kept


def test_items_collections_and_health(call):
    item = call(lambda c: c.get_item("a", collection="photos", vector=True))
    listed = call(lambda c: c.list_collections())
    count = call(lambda c: c.count("pets"))
    health = call(lambda c: c.health())
    assert [(r.method, r.path, r.query) for r in state.requests] == [
        ("GET", "/v1/collections/photos/items/a", "vector=true"),
        ("GET", "/v1/collections", ""),
        ("GET", "/v1/collections/pets", ""),
        ("GET", "/health", ""),
    ]
    assert item == Item(id="a", metadata={"kind": "x"}, vector=[0.6, 0.8])
    assert [(c.name, c.count, c.dim, c.tombstones) for c in listed] == [("photos", 3, 2, 0), ("pets", 3, 2, 0)]
    assert count == 3 and health == {"status": "ok"}


def test_reply_without_a_required_field_is_an_error(call):
    reply = as_sent(S.ClassifyResponse(model="tiny", patch_size=8, predictions=[S.Prediction(label="cat", score=0.5)]))
    del reply["predictions"][0]["score"]
    state.replies += [{"status": 200, "body": reply}, {"status": 200, "body": {"collections": [{"name": "x"}]}}]
    with pytest.raises(ResponseValidationError, match=r"ClassifyResult\.predictions\[0\] \(Prediction\).*'score'"):
        call(lambda c: c.classify(b"img", ["cat"]))
    with pytest.raises(ValueError, match=r"collections\[0\] \(CollectionInfo\).*'count'"):  # also a ValueError
        call(lambda c: c.list_collections())


def test_fields_of_a_newer_server_are_kept(call):
    reply = as_sent(S.SearchResponse(collection="c", results=[S.SearchResult(id="a", score=0.5)]))
    reply["took_ms"] = 3.5
    reply["results"][0]["rerank_score"] = 0.7
    state.replies += [{"status": 200, "body": reply}]
    result = call(lambda c: c.search(text="x", collection="c"))
    assert result.took_ms == 3.5 and result.extra == {"took_ms": 3.5}
    assert result.results[0].rerank_score == 0.7 and result.results[0].metadata == {}
    assert result.to_dict() == reply
    with pytest.raises(AttributeError, match="rerank"):
        _ = result.rerank_score


@pytest.mark.parametrize(
    "fn, match",
    [
        (lambda c: c.search(k=3), "exactly one"),
        (lambda c: c.search(text="a", vector=[1.0]), "exactly one"),
        (lambda c: c.add_items([{"id": "a"}]), "exactly one of image, text, vector"),
        (lambda c: c.add_items([{"id": "a", "text": "t", "meta": {}}]), "unknown keys"),
        (lambda c: c.embed_texts([]), "empty"),
        (lambda c: c.embed_texts(["a"], batch_size=0), "batch_size"),
    ],
)
def test_bad_arguments_fail_before_sending(call, fn, match):
    with pytest.raises(ValueError, match=match):
        call(fn)
    assert state.requests == []


# --- image encoding -------------------------------------------------------------------------------


def test_encode_image_inputs(tmp_path):
    path = tmp_path / "x.jpg"
    Image.new("RGB", (8, 8), (10, 20, 30)).save(path)
    data = path.read_bytes()
    assert base64.b64decode(encode_image(path)) == data
    assert base64.b64decode(encode_image(str(path))) == data
    assert base64.b64decode(encode_image(data)) == data
    assert base64.b64decode(encode_image(bytearray(data))) == data
    for mode in ("RGB", "RGBA", "L", "CMYK"):  # CMYK has no PNG form: sent as RGB
        img = Image.open(io.BytesIO(base64.b64decode(encode_image(Image.new(mode, (4, 3))))))
        assert img.format == "PNG" and img.size == (4, 3)
    with pytest.raises(FileNotFoundError, match="nope.png"):
        encode_image(tmp_path / "nope.png")
    with pytest.raises(TypeError, match="file path, the file's bytes, or a PIL image"):
        encode_image(np.zeros((2, 2)))


# --- the SDK's types against the server's schemas ---------------------------------------------------

# SDK result type -> a reply of the server schema it parses, with every field set (checked below),
# so that optional fields are exercised too. A new SDK type without an entry fails the coverage test.
SERVER_REPLIES = {
    EmbedResult: S.EmbedResponse(
        model="m", space="sha256:s", dim=2, image_embeddings=[[0.6, 0.8]], text_embeddings=[[1.0, 0.0], [0.0, 1.0]],
        patch_size=16,
    ),
    Prediction: S.Prediction(label="cat", score=0.75),
    ClassifyResult: S.ClassifyResponse(
        model="m", predictions=[S.Prediction(label="cat", score=0.75), S.Prediction(label="dog", score=0.25)],
        patch_size=8,
    ),
    SearchHit: S.SearchResult(id="cats/01.jpg", score=0.5, metadata={"kind": "cat", "n": 3, "tags": ["a"]}),
    SearchResult: S.SearchResponse(
        collection="c",
        patch_size=12,
        results=[S.SearchResult(id="a", score=0.9, metadata={"kind": "x"}), S.SearchResult(id="b", score=0.1)],
    ),
    UpsertResult: S.UpsertResponse(collection="c", upserted=3),
    DeleteResult: S.DeleteResponse(collection="c", deleted=1),
    ModelInfo: S.ModelInfo(
        name="m", family="siglip", space="sha256:s", dim=2, image_size=(16, 16), text_length=8, default=True,
        patch_sizes=[8, 16], default_patch_size=8,
    ),
    CollectionInfo: S.CollectionInfo(
        name="c", count=3, space="sha256:s", index="HNSW32", dim=2, params={"efSearch": 64},
        recall_at_10=0.98, target_recall=0.95, tombstones=1,
    ),  # fmt: skip
    Item: S.ItemResponse(id="a", metadata={"k": 1}, vector=[0.6, 0.8]),
}


def test_every_result_type_has_a_server_schema():
    assert set(SERVER_REPLIES) == set(_Result.__subclasses__())


@pytest.mark.parametrize("sdk_type", SERVER_REPLIES, ids=lambda t: t.__name__)
def test_server_replies_round_trip(sdk_type):
    reply = SERVER_REPLIES[sdk_type]
    schema = type(reply).model_fields
    assert reply.model_fields_set == set(schema), "set every field of the reply, optional ones too"
    body = as_sent(reply)
    result = sdk_type.from_json(body)
    assert result.to_dict() == body  # every field kept, with equal values
    sdk_fields = {f.name: f for f in dataclasses.fields(sdk_type) if f.name != "extra"}
    assert set(result.extra) == set(schema) - set(sdk_fields)  # the rest are extra, not lost
    for name, value in body.items():  # known fields and extra ones read as attributes
        assert plain(getattr(result, name)) == value, name
    for name, f in sdk_fields.items():
        assert name in schema, f"{sdk_type.__name__}.{name}: the server has no such field"
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            assert schema[name].is_required(), f"{sdk_type.__name__}.{name} is required, the server may omit it"


def plain(value):
    if isinstance(value, _Result):
        return value.to_dict()
    return [plain(v) for v in value] if isinstance(value, list) else value


@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_public_methods_have_docstrings(cls):
    public = [name for name, fn in inspect.getmembers(cls, inspect.isfunction) if not name.startswith("_")]
    assert len(public) >= 13
    assert [name for name in public if not inspect.getdoc(getattr(cls, name))] == []
