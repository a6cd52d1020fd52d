"""GET /v1/models: what this server can embed with."""

from __future__ import annotations

from fastapi import APIRouter

from vistas.serving.deps import ModelsDep
from vistas.serving.schemas import ModelInfo, ModelsResponse

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelsResponse)
async def list_models(models: ModelsDep) -> ModelsResponse:
    """Models in bundle order; the first is the default for requests that name none."""
    infos = []
    for i, m in enumerate(models.values()):
        image, text = m.spec.preprocess.image, m.spec.preprocess.text
        infos.append(
            ModelInfo(
                name=m.name,
                family=m.spec.family,
                space=m.space_id,
                dim=m.dim,
                image_size=(image.height, image.width),
                text_length=text.length,
                default=i == 0,
                patch_sizes=m.patch_sizes,
                default_patch_size=m.spec.default_patch_size,
            )
        )
    return ModelsResponse(models=infos)
