"""POST /v1/embeddings through the real `openai` package against a real uvicorn server."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest

from support.tiny_bundle import COLOR_RGB, DIM, png


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def oai(server):
    with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=30) as c:
        yield c


def test_embeddings_equal_vistas_own_vectors(oai: openai.OpenAI, client: httpx.Client):
    red, blue = png(COLOR_RGB["red"]), png(COLOR_RGB["blue"])
    inputs = ["red", data_url(red), "a blue car", data_url(blue)]
    ours = client.post(
        "/v1/embed", json={"model": "tiny-b", "texts": ["red", "a blue car"], "images": [data_url(red), data_url(blue)]}
    ).json()
    want = np.asarray(
        [ours["text_embeddings"][0], ours["image_embeddings"][0], ours["text_embeddings"][1], ours["image_embeddings"][1]],
        np.float32,
    )
    for fmt in ("float", "base64"):
        res = oai.embeddings.create(model="tiny-b", input=inputs, encoding_format=fmt, user="tester")
        if fmt == "base64":  # asked for explicitly, openai hands the strings over as they came
            got = np.stack([np.frombuffer(base64.b64decode(d.embedding), "<f4") for d in res.data])
        else:
            got = np.asarray([d.embedding for d in res.data], np.float32)
        np.testing.assert_array_equal(got, want)  # same runtime, same float32 bits
        assert [d.index for d in res.data] == [0, 1, 2, 3] and res.model == "tiny-b" and res.object == "list"
        assert res.data[0].object == "embedding"
    # Left out, openai asks for base64 and decodes it itself: still our vectors.
    default = oai.embeddings.create(model="tiny-b", input=inputs)
    np.testing.assert_array_equal(np.asarray([d.embedding for d in default.data], np.float32), want)
    # Usage: text tokens incl. EOS (non-padding ids) + image patches (16x16 image, 8x8 patches = 4).
    assert default.usage.prompt_tokens == default.usage.total_tokens
    assert default.usage.prompt_tokens == (1 + 1) + (3 + 1) + 2 * 4  # "red", "a blue car", two images


def test_base64_is_little_endian_float32(server):
    r = httpx.post(server.url + "/v1/embeddings", json={"model": "tiny-a", "input": "green", "encoding_format": "base64"})
    assert r.status_code == 200, r.text
    body = r.json()
    vec = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), "<f4")
    assert vec.shape == (DIM,) and np.isclose(np.linalg.norm(vec), 1, atol=1e-5)
    assert body["usage"] == {"prompt_tokens": 2, "total_tokens": 2}  # "green" + EOS


def test_errors_have_openai_shape_and_right_status(oai: openai.OpenAI):
    with pytest.raises(openai.BadRequestError) as e:
        oai.embeddings.create(model="tiny-a", input="red", dimensions=DIM // 2)
    assert e.value.code == "unsupported_dimensions" and e.value.param == "dimensions" and e.value.type == "invalid_request_error"
    assert str(DIM) in e.value.message
    assert len(oai.embeddings.create(model="tiny-a", input="red", dimensions=DIM).data[0].embedding) == DIM

    with pytest.raises(openai.NotFoundError) as e:
        oai.embeddings.create(model="text-embedding-3-small", input="red")
    assert e.value.code == "model_not_found" and "tiny-a" in e.value.message

    with pytest.raises(openai.BadRequestError) as e:
        oai.embeddings.create(model="tiny-a", input=["red", "data:image/png;base64," + base64.b64encode(b"not a png").decode()])
    assert e.value.code == "invalid_image" and "input[1]" in e.value.message and e.value.param == "input"

    with pytest.raises(openai.BadRequestError) as e:
        oai.embeddings.create(model="tiny-a", input=[[1, 2, 3]])
    assert e.value.code == "unsupported_input"

    with pytest.raises(openai.UnprocessableEntityError) as e:  # the server's max_batch_images is 4
        oai.embeddings.create(model="tiny-a", input=[data_url(png())] * 5)
    assert e.value.code == "too_many_items"

    with pytest.raises(openai.UnprocessableEntityError) as e:
        oai.embeddings.create(model="tiny-a", input="red", encoding_format="int8")  # type: ignore[arg-type]
    assert e.value.code == "validation_error" and e.value.param == "encoding_format"


def test_pathological_bodies_are_400_not_500(server):
    deep = b"[" * 100_000 + b"]" * 100_000
    for path in ("/v1/embeddings", "/v1/embed", "/v2/models/tiny-a/infer"):
        r = httpx.post(server.url + path, content=deep, headers={"content-type": "application/json"})
        assert r.status_code == 400, (path, r.status_code, r.text[:200])
