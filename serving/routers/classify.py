"""POST /v1/classify: zero-shot classification of one image against a list of labels."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from vistas.inference.model import DEFAULT_TEMPLATES, ServedModel
from vistas.serving.deps import ImageDecodingDep, ModelsDep, PatchSizesDep, SettingsDep, pick_model
from vistas.serving.errors import APIError
from vistas.serving.parsing import (
    JSON,
    ImageDecoding,
    body_kind,
    check_count,
    check_form_fields,
    check_texts,
    decode_base64,
    decode_images,
    form_bytes,
    form_strings,
    read_form,
    read_json,
    validate,
)
from vistas.serving.schemas import ClassifyOptions, ClassifyRequest, ClassifyResponse, ErrorResponse, Prediction

router = APIRouter(tags=["classify"])

_MULTIPART_SCHEMA = {
    "type": "object",
    "required": ["image", "labels"],
    "properties": {
        "image": {"type": "string", "format": "binary"},
        "labels": {"type": "array", "items": {"type": "string"}, "description": "Repeated fields or one JSON list."},
        "templates": {"type": "array", "items": {"type": "string"}},
        "multi_label": {"type": "boolean"},
        "model": {"type": "string"},
        "patch_size": {"type": "integer"},
    },
}
OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": ClassifyRequest.model_json_schema()},
            "multipart/form-data": {"schema": _MULTIPART_SCHEMA},
        },
    }
}


async def _parse(request: Request) -> tuple[ClassifyOptions, bytes]:
    """-> (everything but the image, image bytes)."""
    if body_kind(request) == JSON:
        req = validate(ClassifyRequest, await read_json(request))
        return req, decode_base64(req.image, "image")
    async with read_form(request) as form:
        check_form_fields(form, {"image", "labels", "templates", "multi_label", "model", "patch_size"})
        parts = form.getlist("image")
        if len(parts) != 1:
            raise APIError(422, "validation_error", f"image: send exactly one `image` part, got {len(parts)}.")
        data = await form_bytes(parts[0], "image")
        fields = {
            "model": form.get("model"),
            "labels": form_strings(form, "labels", json_list=True) or [],
            "templates": form_strings(form, "templates", json_list=True),
            "multi_label": form.get("multi_label", False),
            "patch_size": form.get("patch_size"),
        }
    return validate(ClassifyOptions, fields), data


def check_expansion(n_labels: int, templates: list[str] | None, limit: int) -> None:
    """Each label is embedded once per template, so the work is labels x templates texts: bounded
    apart from max_labels and max_templates, whose product alone (100,000) is far too much."""
    n_templates = len(templates) if templates else len(DEFAULT_TEMPLATES)
    texts = n_labels * n_templates
    if texts > limit:
        which = "" if templates else " (the default ones)"
        raise APIError(
            400,
            "too_many_texts",
            f"{n_labels} labels x {n_templates} templates{which} = {texts} texts to embed, over this "
            f"server's limit of {limit} (max_classify_texts); send fewer labels or templates per request "
            "(each score is an independent sigmoid, so the labels can be split over several requests).",
        )


def _classify(model: ServedModel, data: bytes, req: ClassifyOptions, decoding: ImageDecoding,
              patch_size: int) -> list[tuple[str, float]]:
    (image,) = decode_images([("image", data)], decoding, model.image_need)
    return model.classify(image, req.labels, req.templates, multi_label=req.multi_label, patch_size=patch_size)


@router.post(
    "/v1/classify",
    response_model=ClassifyResponse,
    openapi_extra=OPENAPI,
    responses={400: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, 415: {"model": ErrorResponse}},
)
async def classify(
    request: Request, models: ModelsDep, settings: SettingsDep, decoding: ImageDecodingDep, patch_sizes: PatchSizesDep
) -> ClassifyResponse:
    """Sigmoid probability of each label for the image, best first (SigLIP zero-shot)."""
    req, data = await _parse(request)
    check_count("labels", len(req.labels), settings.max_labels, "max_labels")
    check_texts("labels", req.labels, settings.max_text_chars)
    check_count("templates", len(req.templates or ()), settings.max_templates, "max_templates")
    check_texts("templates", req.templates or [], settings.max_text_chars)
    check_expansion(len(req.labels), req.templates, settings.max_classify_texts)
    model = pick_model(models, req.model)
    patch_size = patch_sizes.choose(model, req.patch_size)
    ranked = await run_in_threadpool(_classify, model, data, req, decoding, patch_size)
    return ClassifyResponse(model=model.name, patch_size=patch_size,
                            predictions=[Prediction(label=lb, score=s) for lb, s in ranked])
