"""KServe v2 / Open Inference Protocol under /v2, so NVIDIA's `tritonclient` can call vistas.

    client = tritonclient.http.InferenceServerClient("127.0.0.1:8000")
    x = tritonclient.http.InferInput("pixel_values", [2, 3, 224, 224], "FP32")
    x.set_data_from_numpy(pixels)
    client.infer("siglip.image_encoder", [x]).as_numpy("embeddings")  # (2, D)

Every served bundle is three v2 models (names and tensors in `vistas.v2_protocol`): its two
towers with the ONNX graphs' tensor names, and one that takes raw images / texts as BYTES. A
FlexiViT bundle adds one image tower per other patch size (`M.image_encoder_p16`, ...), with
the image tower's tensors, so a client picks the patch size by the model it calls.
Tower inference goes through `model.runtime.run`, the same path as /v1 (and its batching).

Errors follow the protocol, `{"error": "<message>"}`, which is what tritonclient reads.
"""

from __future__ import annotations

import json

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

import vistas
from vistas.bundle import EMBED_OUTPUT, TEXT_INPUT
from vistas.inference.model import ServedModel
from vistas.serving.deps import ImageDecodingDep, ModelsDep, SettingsDep
from vistas.serving.errors import APIError
from vistas.serving.parsing import ImageDecoding, check_count, check_texts, decode_base64, decode_images
from vistas.serving.settings import Settings
from vistas.serving.v2_tensors import (
    HEADER_LENGTH,
    InferRequest,
    Tensor,
    V2Error,
    encode_infer_response,
    parse_infer_request,
)
from vistas.v2_protocol import (
    RAW_IMAGES,
    RAW_OUTPUTS,
    RAW_TEXTS,
    SPACE_PARAMETER,
    V2_DATATYPES,
    embeddings_output,
    tower_model_name,
    v2_shape,
)

router = APIRouter(prefix="/v2", tags=["kserve-v2"])

VERSION = "1"  # a bundle is one version; "" (the default) and "1" name it
EXTENSIONS = ["binary_tensor_data", "model_configuration", "model_repository"]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _resolve(models: dict[str, ServedModel], name: str, version: str | None) -> tuple[ServedModel, str | None]:
    """A v2 model name -> (served model, tower or None for the raw-input model), or V2Error 404."""
    if version not in (None, "", VERSION):
        raise V2Error(f"model {name!r} has only version {VERSION}, not {version!r}", 404)
    if name in models:
        return models[name], None
    for model in models.values():
        for tower in model.spec.towers:
            if name == tower_model_name(model.name, tower):
                return model, tower
    known = [n for m in models.values() for n in _model_names(m)]
    raise V2Error(f"no model {name!r}; this server has {known}", 404)


def _model_names(model: ServedModel) -> list[str]:
    """The raw-input model, then one per tower: a FlexiViT bundle's other patch sizes included."""
    return [model.name, *(tower_model_name(model.name, t) for t in model.spec.towers)]


def _max_batch_setting(tower: str) -> str:
    """The Settings limit on one call's rows: every image tower ("image", "image@p16") takes
    images, so the per-patch-size towers share the image limit."""
    return "max_texts" if tower == "text" else "max_batch_images"


def _metadata(model: ServedModel, tower: str | None) -> dict:
    if tower is None:
        return {
            "name": model.name,
            "versions": [VERSION],
            "platform": "vistas",
            "inputs": [{"name": n, "datatype": "BYTES", "shape": [-1]} for n in RAW_OUTPUTS],
            "outputs": [{"name": o, "datatype": "FP32", "shape": [-1, model.dim]} for o in RAW_OUTPUTS.values()],
        }
    specs = model.runtime.inputs(tower)
    return {
        "name": tower_model_name(model.name, tower),
        "versions": [VERSION],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": s.name, "datatype": V2_DATATYPES[s.dtype], "shape": v2_shape(s.shape)} for s in specs],
        "outputs": [embeddings_output(model.dim)],
    }


def _config(model: ServedModel, tower: str | None, settings: Settings) -> dict:
    """Triton's model-configuration JSON (what `get_model_config` returns), batch dim left out."""
    meta = _metadata(model, tower)
    max_batch = getattr(settings, _max_batch_setting(tower)) if tower else 0

    def dims(t: dict) -> list[int]:
        return t["shape"][1:] if max_batch else t["shape"]

    return {
        "name": meta["name"],
        "platform": meta["platform"],
        "max_batch_size": max_batch,
        "input": [{"name": t["name"], "data_type": "TYPE_" + _config_type(t["datatype"]), "dims": dims(t)} for t in meta["inputs"]],
        "output": [{"name": t["name"], "data_type": "TYPE_" + _config_type(t["datatype"]), "dims": dims(t)} for t in meta["outputs"]],
        "parameters": {SPACE_PARAMETER: {"string_value": model.space_id}},
    }


def _config_type(datatype: str) -> str:
    return "STRING" if datatype == "BYTES" else datatype


@router.get("")
async def server_metadata() -> dict:
    return {"name": "vistas", "version": vistas.__version__, "extensions": EXTENSIONS}


@router.get("/health/live")
async def live() -> Response:
    return Response(status_code=200)


@router.get("/health/ready")
async def ready(models: ModelsDep) -> Response:
    return Response(status_code=200 if models else 503)  # the lifespan loaded every model before serving


# The JSON form of the protocol's requests, published in the OpenAPI schema (docs, fuzzing).
# The routes parse bodies themselves: the binary tensor extension puts raw bytes after the JSON.
_TENSOR_SCHEMA = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": ["BOOL", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"]},
        "parameters": {"type": "object"},
        "data": {"type": "array"},
    },
}
_INFER_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "id": {"type": "string"},
                "parameters": {"type": "object"},
                "inputs": {"type": "array", "minItems": 1, "items": _TENSOR_SCHEMA},
                "outputs": {"type": "array", "items": {"type": "object", "required": ["name"],
                                                       "properties": {"name": {"type": "string"}}}},
            },
        }}},
    }
}
_INDEX_OPENAPI = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": {"type": "object", "properties": {"ready": {"type": "boolean"}}}}},
    }
}


@router.post("/repository/index", openapi_extra=_INDEX_OPENAPI)
async def repository_index(request: Request, models: ModelsDep):
    """Every model; `{"ready": true}` asks for the ready ones only, which here is every one."""
    body = await request.body()
    if body.strip():
        try:
            doc = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            return _error(400, "the repository index request is not valid JSON")
        if not isinstance(doc, dict) or not isinstance(doc.get("ready", False), bool):
            return _error(400, 'a repository index request is a JSON object with an optional boolean "ready"')
    return [{"name": n, "version": VERSION, "state": "READY"} for m in models.values() for n in _model_names(m)]


@router.get("/models/{name}")
@router.get("/models/{name}/versions/{version}")
async def model_metadata(name: str, models: ModelsDep, version: str | None = None):
    try:
        return _metadata(*_resolve(models, name, version))
    except V2Error as e:
        return _error(e.status, e.message)


@router.get("/models/{name}/ready")
@router.get("/models/{name}/versions/{version}/ready")
async def model_ready(name: str, models: ModelsDep, version: str | None = None) -> Response:
    try:
        _resolve(models, name, version)
    except V2Error as e:
        return _error(e.status, e.message)
    return Response(status_code=200)


@router.get("/models/{name}/config")
@router.get("/models/{name}/versions/{version}/config")
async def model_config(name: str, models: ModelsDep, settings: SettingsDep, version: str | None = None):
    try:
        model, tower = _resolve(models, name, version)
    except V2Error as e:
        return _error(e.status, e.message)
    return _config(model, tower, settings)


@router.post("/models/{name}/infer", openapi_extra=_INFER_OPENAPI)
@router.post("/models/{name}/versions/{version}/infer", openapi_extra=_INFER_OPENAPI)
async def infer(
    name: str,
    request: Request,
    models: ModelsDep,
    settings: SettingsDep,
    decoding: ImageDecodingDep,
    version: str | None = None,
):
    """Named tensors in, named tensors out (JSON or Triton's binary tensor extension)."""
    try:
        model, tower = _resolve(models, name, version)
        req = parse_infer_request(await request.body(), request.headers.get(HEADER_LENGTH))
        if tower is None:
            outputs = await _infer_raw(model, req, settings, decoding)
        else:
            outputs = await _infer_tower(model, tower, req, settings)
        body, headers = encode_infer_response(name, req, outputs)
    except V2Error as e:
        return _error(e.status, e.message)
    except APIError as e:  # limits and image errors of the shared parsing helpers
        return _error(e.status_code, e.message)
    return Response(body, headers=headers)


async def _infer_tower(model: ServedModel, tower: str, req: InferRequest, settings: Settings) -> dict[str, np.ndarray]:
    specs = {s.name: s for s in model.runtime.inputs(tower)}
    where = tower_model_name(model.name, tower)
    if sorted(req.inputs) != sorted(specs):
        raise V2Error(f"model {where!r} takes inputs {sorted(specs)}, got {sorted(req.inputs)}")
    feeds = {}
    for name, t in req.inputs.items():
        want = V2_DATATYPES[specs[name].dtype]
        if t.datatype != want:
            raise V2Error(f"model {where!r} input {name!r} is {want}, got {t.datatype}")
        # The rank here (the runtime checks the sizes): the batching queue needs the batch dimension.
        if t.array.ndim != len(specs[name].shape):
            shape = v2_shape(specs[name].shape)
            raise V2Error(f"model {where!r} input {name!r} has shape {shape} (-1: any size), got {list(t.array.shape)}")
        feeds[name] = t.array
    batches = {name: a.shape[0] for name, a in feeds.items()}
    if len(set(batches.values())) > 1:
        raise V2Error(f"model {where!r}: every input needs the same batch size (first dimension), got {batches}")
    batch = next(iter(batches.values()))
    setting = _max_batch_setting(tower)
    check_count(f"{where} batch", batch, getattr(settings, setting), setting)
    if TEXT_INPUT in feeds:
        _check_token_ids(feeds[TEXT_INPUT], model, where)
    try:
        embeddings = await run_in_threadpool(model.runtime.run, tower, feeds)
    except ValueError as e:  # shapes the runtime's tensor specs reject, named by the runtime
        raise V2Error(f"model {where!r}: {e}") from None
    return {EMBED_OUTPUT: embeddings}


def _check_token_ids(ids: np.ndarray, model: ServedModel, where: str) -> None:
    """Ids outside the vocabulary are refused here: onnxruntime's Gather fails on ids past the
    embedding table (a 500) and, per the ONNX spec, counts negative ones from its end (a silent 200)."""
    vocab_size = model.tokenizer.vocab_size
    bad = np.flatnonzero((ids < 0) | (ids >= vocab_size))
    if len(bad):
        at = np.unravel_index(bad[0], ids.shape)
        raise V2Error(
            f"model {where!r} input {TEXT_INPUT!r}: token id {ids[at]} at {list(map(int, at))} is outside this "
            f"bundle's vocabulary [0, {vocab_size}); tokenize with the bundle's tokenizer.json, or send the texts "
            f"to model {model.name!r} as BYTES, which tokenizes them."
        )


async def _infer_raw(
    model: ServedModel, req: InferRequest, settings: Settings, decoding: ImageDecoding
) -> dict[str, np.ndarray]:
    unknown = sorted(set(req.inputs) - set(RAW_OUTPUTS))
    if unknown:
        raise V2Error(f"model {model.name!r} takes inputs {sorted(RAW_OUTPUTS)} (BYTES), got {unknown}")
    for t in req.inputs.values():
        if t.datatype != "BYTES" or t.array.ndim != 1:
            raise V2Error(f"model {model.name!r} input {t.name!r} must be BYTES of shape [-1], got {t.datatype} {list(t.array.shape)}")
    outputs = {}
    if (images := req.inputs.get(RAW_IMAGES)) is not None:
        check_count(RAW_IMAGES, len(images.array), settings.max_batch_images, "max_batch_images")
        blobs = [(f"{RAW_IMAGES}[{i}]", _image_bytes(images, i)) for i in range(len(images.array))]
        prepared = await run_in_threadpool(
            decode_images, blobs, decoding, model.image_need, lambda im: model.image_inputs([im])
        )
        outputs[RAW_OUTPUTS[RAW_IMAGES]] = await run_in_threadpool(model.embed_image_inputs, prepared)
    if (texts := req.inputs.get(RAW_TEXTS)) is not None:
        check_count(RAW_TEXTS, len(texts.array), settings.max_texts, "max_texts")
        try:
            strings = [b.decode("utf-8") for b in texts.array]
        except UnicodeDecodeError:
            raise V2Error(f"{RAW_TEXTS}: every element must be UTF-8 text") from None
        check_texts(RAW_TEXTS, strings, settings.max_text_chars)
        outputs[RAW_OUTPUTS[RAW_TEXTS]] = await run_in_threadpool(model.embed_texts, strings)
    if req.outputs is None:
        return outputs
    # Asked-for outputs whose input was not sent: an error that names the missing input.
    for name in req.outputs:
        source = next((i for i, o in RAW_OUTPUTS.items() if o == name), None)
        if source is not None and name not in outputs:
            raise V2Error(f"output {name!r} needs the input {source!r}, which this request does not have")
    return outputs


def _image_bytes(t: Tensor, i: int) -> bytes:
    """Binary BYTES carry the image file; JSON BYTES are strings, so there the image is base64."""
    value = t.array[i]
    return decode_base64(value.decode("ascii", "replace"), f"{RAW_IMAGES}[{i}]") if t.from_json else value

