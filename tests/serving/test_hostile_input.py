"""Inputs that used to make the server answer 500 (or, worse, 200), over a real uvicorn server:
text that is not Unicode (lone surrogates, as JSON escapes or as raw bytes) in every field that
takes text, filters past SQLite's limits, token ids outside the vocabulary and malformed KServe
v2 bodies. Each gets its 4xx in the route's error shape, and the same route then still serves a
good request. A lone surrogate in metadata is refused and nothing of the write is stored."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from support.live_server import running_server
from support.tiny_bundle import TEXT_LENGTH, png

RED = base64.b64encode(png()).decode()
S = "\\udc00"  # a lone (low) surrogate as a JSON escape, spliced into raw bodies below
IDS = [3, 4, 5, 0, 0, 0, 0, 0]  # in the tiny tokenizer's vocabulary of 19

# A good request per route: after a bad one, the same route must still answer 200.
GOOD = {
    "/v1/embed": {"texts": ["red"]},
    "/v1/search": {"collection": "hostile", "text": "red"},
    "/v1/classify": {"image": RED, "labels": ["red", "blue"]},
    "/v1/embeddings": {"model": "tiny-a", "input": ["red"]},
    "/v1/collections/hostile/items": {"items": [{"id": "fine", "text": "red", "metadata": {"n": -1}}]},
    "/v2/models/tiny-a/infer": {"inputs": [{"name": "texts", "shape": [1], "datatype": "BYTES", "data": ["red"]}]},
    "/v2/models/tiny-a.text_encoder/infer": {
        "inputs": [{"name": "input_ids", "shape": [1, TEXT_LENGTH], "datatype": "INT64", "data": IDS}]
    },
}
V2_TEXT = "/v2/models/tiny-a.text_encoder/infer"
V2_RAW = "/v2/models/tiny-a/infer"


@pytest.fixture(scope="module")
def live(bundles, tmp_path_factory):
    """A server with the default request limits (20 MB bodies: a 400k-value filter reaches the index)."""
    from vistas.serving.app import create_app
    from vistas.serving.settings import Settings

    settings = Settings(bundles=[str(bundles[0])], index_dir=str(tmp_path_factory.mktemp("index")), threads=1)
    with running_server(create_app(settings)) as server:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            items = [{"id": f"i{j}", "text": ["red", "green", "blue"][j % 3], "metadata": {"n": j}} for j in range(6)]
            assert c.post("/v1/collections/hostile/items", json={"items": items}).status_code == 200
        yield server


@pytest.fixture
def client(live):
    with httpx.Client(base_url=live.url, timeout=60) as c:
        yield c


def raw(path: str, body: str | bytes, status: int, code: str | None, fragment: str, *, id: str):
    """One case: POST `body` (a raw JSON text, so escapes reach the server as written)."""
    content = body.encode() if isinstance(body, str) else body
    return pytest.param(path, content, status, code, fragment, id=id)


def error_of(r: httpx.Response, path: str) -> tuple[str | None, str]:
    """(code, message) from the route's error shape: ours, OpenAI's, or KServe v2's."""
    assert r.headers["content-type"] == "application/json", r.text
    body = r.json()
    assert set(body) == {"error"}, body
    if path.startswith("/v2"):
        assert isinstance(body["error"], str), body
        return None, body["error"]
    if path == "/v1/embeddings":
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
    else:
        assert set(body["error"]) == {"code", "message"}, body
    return body["error"]["code"], body["error"]["message"]


def many_digits(n: int) -> str:
    return "1" * n


CASES = [
    # text that is not Unicode, in every field that takes text
    raw("/v1/embed", '{"texts": ["ok", "a%s"]}' % S, 400, "invalid_text", "texts[1]: character 1", id="embed texts"),
    raw("/v1/embed", b'{"texts": ["\xed\xb0\x80"]}', 400, "invalid_text", "texts[0]: character 0",
        id="embed texts, surrogate as UTF-8 bytes"),
    raw("/v1/embed", '{"model": "%s", "texts": ["red"]}' % S, 400, "invalid_text", "model: character 0",
        id="embed model name"),
    raw("/v1/search", '{"collection": "hostile", "text": "%s"}' % S, 400, "invalid_text", "text: character 0",
        id="search text"),
    raw("/v1/search", '{"collection": "hostile", "text": "red", "filter": {"n": "%s"}}' % S, 400, "invalid_text",
        "filter.n: character 0", id="search filter value"),
    raw("/v1/search", '{"collection": "hostile", "text": "red", "filter": {"%s": 1}}' % S, 400, "invalid_text",
        "filter, key '\\udc00': character 0", id="search filter key"),
    raw("/v1/classify", '{"image": "%s", "labels": ["red", "%s"]}' % (RED, S), 400, "invalid_text",
        "labels[1]: character 0", id="classify labels"),
    raw("/v1/classify", '{"image": "%s", "labels": ["red"], "templates": ["{} %s"]}' % (RED, S), 400,
        "invalid_text", "templates[0]: character 3", id="classify templates"),
    raw("/v1/embeddings", '{"model": "tiny-a", "input": ["red", "%s"]}' % S, 400, "invalid_text",
        "input[1]: character 0", id="openai input list"),
    raw("/v1/embeddings", '{"model": "tiny-a", "input": "x%s"}' % S, 400, "invalid_text", "input: character 1",
        id="openai input string"),
    raw("/v1/collections/hostile/items", '{"items": [{"id": "t", "text": "%s"}]}' % S, 400, "invalid_text",
        "items[0].text: character 0", id="item text"),
    raw("/v1/collections/hostile/items", '{"items": [{"id": "x%s", "text": "red"}]}' % S, 400, "invalid_text",
        "items[0].id: character 1", id="item id"),
    raw(V2_RAW, '{"inputs": [{"name": "texts", "shape": [1], "datatype": "BYTES", "data": ["%s"]}]}' % S, 400, None,
        "inputs[0].data[0]: character 0", id="v2 JSON texts"),
    # numbers Python will not parse
    raw("/v1/embed", '{"texts": [%s]}' % many_digits(5000), 400, "invalid_json", "digits", id="5000-digit number"),
    raw(V2_RAW, '{"inputs": [{"name": "texts", "shape": [1], "datatype": "BYTES", "data": [%s]}]}'
        % many_digits(5000), 400, None, "digits", id="v2 5000-digit number"),
    # filters past SQLite's limits
    raw("/v1/search", '{"collection": "hostile", "text": "red", "filter": {"n": %d}}' % 2**64, 422, "invalid_filter",
        "outside the signed 64-bit range", id="filter integer beyond 64 bits"),
    raw("/v1/search", json.dumps({"collection": "hostile", "text": "red", "filter": {"n": {"$in": list(range(400_000))}}}),
        422, "invalid_filter", "over the limit of 10000 in all (vistas.index.filters.MAX_IN_VALUES)",
        id="filter $in with 400k values"),
    raw("/v1/search", json.dumps({"collection": "hostile", "text": "red", "filter": {f"k{i}": i for i in range(1000)}}),
        422, "invalid_filter", "1000 conditions (keys and operators), over the limit of 100", id="filter 1000 keys"),
    # KServe v2: token ids outside the vocabulary, malformed bodies
    raw(V2_TEXT, json.dumps({"inputs": [{"name": "input_ids", "shape": [1, TEXT_LENGTH], "datatype": "INT64",
                                         "data": [10**9, *IDS[1:]]}]}),
        400, None, "token id 1000000000 at [0, 0] is outside this bundle's vocabulary [0, 19)", id="v2 id 10^9"),
    raw(V2_TEXT, json.dumps({"inputs": [{"name": "input_ids", "shape": [1, TEXT_LENGTH], "datatype": "INT64",
                                         "data": [*IDS[:5], -1, 0, 0]}]}),
        400, None, "token id -1 at [0, 5] is outside", id="v2 negative id"),
    raw(V2_RAW, '{"inputs":[{"name":"","shape":[],"datatype":{},"data":[null,null]}]}', 400, None,
        "has datatype {}", id="v2 datatype object"),
    raw(V2_TEXT, '{"inputs":[{"name":"input_ids","shape":[],"datatype":["INT64"],"data":[1]}]}', 400, None,
        "has datatype ['INT64']", id="v2 datatype list, tower"),
    raw(V2_TEXT, '{"inputs":[{"name":"input_ids","shape":[],"datatype":"INT64","data":[1]}]}', 400, None,
        "has shape [-1, 8] (-1: any size), got []", id="v2 tower input without a batch dimension"),
    raw(V2_TEXT, json.dumps({"inputs": [{"name": "input_ids", "shape": [1] * 70, "datatype": "INT64", "data": [1]}]}),
        400, None, "shape has 70 dimensions", id="v2 shape of 70 dimensions"),
    raw(V2_TEXT, json.dumps({"inputs": [{"name": "input_ids", "shape": [1, TEXT_LENGTH], "datatype": "INT64",
                                         "data": IDS}], "outputs": [{"name": "embeddings", "parameters": [1]}]}),
        400, None, '"parameters" must be an object', id="v2 output parameters not an object"),
]  # fmt: skip


@pytest.mark.parametrize("path, content, status, code, fragment", CASES)
def test_bad_input_is_a_4xx_and_the_route_keeps_serving(client, path, content, status, code, fragment):
    r = client.post(path, content=content, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text[:500]
    got_code, message = error_of(r, path)
    assert got_code == code and fragment in message, r.text[:500]
    if path == "/v1/embeddings":
        assert r.json()["error"]["param"] == "input", r.text
    follow_up = client.post(path, json=GOOD[path])
    assert follow_up.status_code == 200, follow_up.text[:500]


def test_multipart_labels_as_a_json_list(client):
    """Multipart text fields are decoded leniently by Starlette, but a JSON list inside one is not."""
    files = [("image", ("r.png", png(), "image/png")), ("labels", (None, '["red", "%s"]' % S))]
    r = client.post("/v1/classify", files=files)
    assert r.status_code == 400, r.text
    code, message = error_of(r, "/v1/classify")
    assert code == "invalid_text" and message.startswith("labels[1]: character 0 is a lone surrogate (U+DC00)")
    files[1] = ("labels", (None, '["red", "blue"]'))
    assert client.post("/v1/classify", files=files).status_code == 200


@pytest.mark.parametrize(
    "metadata, fragment",
    [('{"caption": "ok %s"}' % S, "items[1].metadata.caption: character 3"),
     ('{"tags": ["fine", {"deep": "%s"}]}' % S, "items[1].metadata.tags[1].deep: character 0"),
     ('{"%s": 1}' % S, "items[1].metadata, key '\\udc00': character 0")],
    ids=["value", "nested value", "key"],
)  # fmt: skip
def test_a_surrogate_in_metadata_is_refused_and_nothing_is_stored(client, metadata, fragment):
    count = client.get("/v1/collections/hostile").json()["count"]
    body = '{"items": [{"id": "before", "text": "red"}, {"id": "meta", "text": "red", "metadata": %s}]}' % metadata
    r = client.post("/v1/collections/hostile/items", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    code, message = error_of(r, "/v1/collections/hostile/items")
    assert code == "invalid_text" and fragment in message
    assert client.get("/v1/collections/hostile").json()["count"] == count
    for item_id in ("before", "meta"):  # neither item of the refused write is there
        assert client.get(f"/v1/collections/hostile/items/{item_id}").json()["error"]["code"] == "item_not_found"
    r = client.post("/v1/search", json={"collection": "hostile", "text": "red", "k": 50})
    assert r.status_code == 200 and {h["id"] for h in r.json()["results"]} >= {f"i{j}" for j in range(6)}


def test_a_surrogate_pair_is_valid_text(client):
    """The escape pair of one character outside the BMP is text, stored and returned intact."""
    body = '{"items": [{"id": "smile", "text": "red \\ud83d\\ude00", "metadata": {"face": "\\ud83d\\ude00"}}]}'
    r = client.post("/v1/collections/hostile/items", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert client.get("/v1/collections/hostile/items/smile").json()["metadata"] == {"face": "\U0001f600"}
    client.delete("/v1/collections/hostile/items/smile")


def test_tritonclient_out_of_vocabulary_ids_are_400(live):
    """The binary tensor path (tritonclient's default) checks ids as the JSON one does."""
    tc = triton.InferenceServerClient(live.url.removeprefix("http://"), network_timeout=60)
    try:
        for bad in (-(2**40), 19, 2**62):
            ids = np.array([IDS], np.int64)
            ids[0, 2] = bad
            x = triton.InferInput("input_ids", list(ids.shape), "INT64")
            x.set_data_from_numpy(ids, binary_data=True)
            with pytest.raises(InferenceServerException, match=f"token id {bad} at \\[0, 2\\] is outside") as e:
                tc.infer("tiny-a.text_encoder", [x])
            assert e.value.status() == "400"
        x = triton.InferInput("input_ids", [1, TEXT_LENGTH], "INT64")
        x.set_data_from_numpy(np.array([IDS], np.int64), binary_data=True)
        assert tc.infer("tiny-a.text_encoder", [x]).as_numpy("embeddings").shape == (1, 8)
    finally:
        tc.close()


@pytest.mark.parametrize("path, name, datatype, data", [
    (V2_TEXT, "input_ids", "INT64", np.int64(1).tobytes()),
    (V2_RAW, "texts", "BYTES", len(b"red").to_bytes(4, "little") + b"red"),
], ids=["INT64", "BYTES"])  # fmt: skip
def test_v2_binary_tensor_of_70_dimensions(client, path, name, datatype, data):
    """Binary tensors (tritonclient's default encoding) are shaped like JSON ones: same checks."""
    header = json.dumps({"inputs": [{"name": name, "shape": [1] * 70, "datatype": datatype,
                                     "parameters": {"binary_data_size": len(data)}}]}).encode()  # fmt: skip
    r = client.post(path, content=header + data, headers={"Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 400, r.text
    assert error_of(r, path)[1] == f"input {name!r}: shape has 70 dimensions; a tensor has at most 32"
    assert client.post(path, json=GOOD[path]).status_code == 200
