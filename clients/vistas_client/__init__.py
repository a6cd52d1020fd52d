"""The vistas Python SDK. Depends on httpx and numpy only; nothing of the server (torch, FastAPI,
onnxruntime, FAISS, pydantic). Pillow and tqdm are optional: `pip install "./clients[images,progress]"`.

    from vistas_client import Client

    with Client("http://127.0.0.1:8000", api_key=None) as c:
        c.add_items([{"id": "cat1", "image": "cat.jpg", "metadata": {"kind": "cat"}}])
        hits = c.search(text="a photo of a cat", k=5, filter={"kind": "cat"}).results
        probs = c.classify("cat.jpg", ["cat", "dog"]).predictions

`AsyncClient` has the same methods, awaited.
"""

from vistas_client._core import RetryPolicy
from vistas_client.async_client import AsyncClient
from vistas_client.client import Client
from vistas_client.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    RateLimitError,
    ResponseValidationError,
    ServerError,
    VistasError,
)
from vistas_client.types import (
    ClassifyResult,
    CollectionInfo,
    DeleteResult,
    EmbedResult,
    Item,
    ModelInfo,
    Prediction,
    SearchHit,
    SearchResult,
    UpsertResult,
)

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "ClassifyResult",
    "Client",
    "CollectionInfo",
    "DeleteResult",
    "EmbedResult",
    "Item",
    "ModelInfo",
    "NotFoundError",
    "Prediction",
    "RateLimitError",
    "ResponseValidationError",
    "RetryPolicy",
    "SearchHit",
    "SearchResult",
    "ServerError",
    "UpsertResult",
    "VistasError",
]
