"""HTTP request/response bodies of API v1 (the contract table in DESIGN.md).

Requests forbid unknown fields, so a misspelt field is an error rather than
silently ignored. Size limits (how many texts, labels, ...) are server
settings, checked by the routes at request time, not constants here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vistas.inference.model import LABEL_SLOT

Metadata = dict[str, Any]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- embed --------------------------------------------------------------------------------


class EmbedRequest(StrictModel):
    model: str | None = Field(None, description="Model name from /v1/models; default: the first one.")
    texts: list[str] | None = None
    images: list[str] | None = Field(None, description="Base64 images (a data: URL prefix is fine).")
    patch_size: int | None = Field(
        None, ge=1, description="FlexiViT bundles: the patch size images run at (one of the model's "
        "`patch_sizes` in /v1/models); default: the server's patch_size_policy. Every size embeds into one space."
    )


class EmbedResponse(BaseModel):
    model: str
    space: str = Field(description="Embedding-space id: vectors from different spaces never mix.")
    dim: int
    image_embeddings: list[list[float]] = Field(description="L2-normalised, in request order.")
    patch_size: int | None = Field(None, description="The patch size the images ran at (null: no images).")
    text_embeddings: list[list[float]] = Field(description="L2-normalised, in request order.")


# ---- classify -----------------------------------------------------------------------------


class ClassifyOptions(StrictModel):
    """Everything of a classify request but the image (multipart sends that as a file)."""

    model: str | None = None
    labels: list[str] = Field(min_length=1)
    patch_size: int | None = Field(
        None, ge=1, description="FlexiViT bundles: the patch size images run at (one of the model's "
        "`patch_sizes` in /v1/models); default: the server's patch_size_policy. Every size embeds into one space."
    )
    templates: list[str] | None = Field(
        None,
        min_length=1,
        description='Prompts with a "{}" slot for the label, averaged per label. '
        'Default: ["a photo of a {}.", "{}"].',
    )
    multi_label: bool = Field(
        False,
        description="Scores are independent sigmoid probabilities either way (SigLIP); "
        "accepted for clients of softmax APIs, it changes nothing.",
    )

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: list[str]) -> list[str]:
        if any(not label.strip() for label in labels):
            raise ValueError("labels must be non-empty strings")
        if len(set(labels)) != len(labels):
            dup = next(label for label in labels if labels.count(label) > 1)
            raise ValueError(f"labels must be unique; {dup!r} appears more than once")
        return labels

    @field_validator("templates")
    @classmethod
    def _templates(cls, templates: list[str] | None) -> list[str] | None:
        for t in templates or ():
            if LABEL_SLOT not in t:
                raise ValueError(f'every template needs a "{{}}" slot for the label; {t!r} has none')
        return templates


class ClassifyRequest(ClassifyOptions):
    image: str = Field(description="Base64 image.")


class Prediction(BaseModel):
    label: str
    score: float = Field(description="Sigmoid probability that the label fits the image.")


class ClassifyResponse(BaseModel):
    model: str
    patch_size: int = Field(description="The patch size the image ran at.")
    predictions: list[Prediction] = Field(description="Best first.")


# ---- search -------------------------------------------------------------------------------


class SearchRequest(StrictModel):
    model: str | None = Field(
        None, description="Embeds text/image queries; default: a model of the collection's space."
    )
    collection: str = "default"
    text: str | None = None
    image: str | None = Field(None, description="Base64 image.")
    vector: list[float] | None = None
    patch_size: int | None = Field(
        None, ge=1, description="FlexiViT bundles: the patch size images run at (one of the model's "
        "`patch_sizes` in /v1/models); default: the server's patch_size_policy. Every size embeds into one space."
    )
    k: int = Field(10, ge=1, description="Results wanted; at most the server's max_k (default 1000).")
    filter: Metadata | None = Field(
        None,
        description='Metadata filter: {"key": value} equality, {"key": {"$in": [...]}}, '
        '{"key": {"$gte": 1, "$lt": 5}} ranges; keys are ANDed. k results come back when k items match.',
    )


class SearchResult(BaseModel):
    id: str
    score: float
    metadata: Metadata = Field(default_factory=dict)


class SearchResponse(BaseModel):
    collection: str
    patch_size: int | None = Field(None, description="The patch size an image query ran at (null otherwise).")
    results: list[SearchResult] = Field(description="Best first.")


# ---- collections --------------------------------------------------------------------------


class UpsertItem(StrictModel):
    id: str = Field(min_length=1)
    image: str | None = Field(None, description="Base64 image.")
    text: str | None = None
    vector: list[float] | None = None
    patch_size: int | None = Field(
        None, ge=1, description="FlexiViT bundles: the patch size images run at (one of the model's "
        "`patch_sizes` in /v1/models); default: the server's patch_size_policy. Every size embeds into one space."
    )
    metadata: Metadata | None = None


class UpsertRequest(StrictModel):
    model: str | None = None
    items: list[UpsertItem] = Field(min_length=1, description="Each item has exactly one of image, text, vector.")


class UpsertResponse(BaseModel):
    collection: str
    upserted: int


class DeleteResponse(BaseModel):
    collection: str
    deleted: int


class CollectionInfo(BaseModel):
    name: str
    count: int = Field(description="Live items.")
    space: str
    index: str = Field(description='FAISS index type: "Flat", "HNSW32", "IVF4096,PQ64", ...')
    dim: int | None = None
    params: dict[str, int] = Field(default_factory=dict, description="Tuned search knob (efSearch / nprobe).")
    recall_at_10: float | None = Field(None, description="Recall@10 against exact search, measured at build.")
    target_recall: float | None = None
    tombstones: int = Field(0, description="Deleted vectors the index still holds (excluded from results).")


class CollectionsResponse(BaseModel):
    collections: list[CollectionInfo]
    unavailable: dict[str, str] = Field(
        default_factory=dict,
        description="Collections on disk this server could not open (damaged, or held by another process): "
        "name -> why. They answer 503 collection_unavailable.",
    )


class ItemResponse(BaseModel):
    id: str
    metadata: Metadata = Field(default_factory=dict)
    vector: list[float] | None = Field(None, description="The stored unit vector, with ?vector=true.")


# ---- models, health, errors ---------------------------------------------------------------


class ModelInfo(BaseModel):
    name: str
    family: str
    space: str
    dim: int
    image_size: tuple[int, int] = Field(description="(height, width) the image tower sees.")
    text_length: int = Field(description="Tokens per text.")
    patch_sizes: list[int] = Field(description="Patch sizes images may run at (FlexiViT bundles: several).")
    default_patch_size: int
    default: bool


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class HealthResponse(BaseModel):
    status: str


class ReadyResponse(HealthResponse):
    collections: dict[str, str] | None = Field(
        None,
        description="Only when some need attention: collection -> what is wrong (not opened, or acknowledged "
        "writes lost). The server is still ready: every other collection and every route is served.",
    )


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
