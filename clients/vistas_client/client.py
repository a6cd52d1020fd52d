"""The synchronous SDK client: `with Client("http://127.0.0.1:8000") as c: c.search(text="a red circle")`."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import httpx

from vistas_client import _payloads as P
from vistas_client._core import DEFAULT_BASE_URL, RequestCore, RetryPolicy
from vistas_client._images import ImageInput
from vistas_client.types import (
    ClassifyResult,
    CollectionInfo,
    DeleteResult,
    EmbedResult,
    Item,
    ModelInfo,
    SearchResult,
    UpsertResult,
    list_from_json,
)


class Client:
    """Blocking client of a vistas server. Thread-safe; reuse one per process.

    max_retries: retries after the first attempt on connection errors, 408, 429 and
        5xx (see RetryPolicy); pass a RetryPolicy to tune the backoff as well.
    http_client: an httpx.Client to send with (a proxy, custom TLS, or Starlette's
        TestClient); the caller keeps ownership and closes it.

    Every call that reaches the server raises, once the retries are used up, an APIError
    subclass for an error reply (BadRequestError, NotFoundError, ServerError, ...: errors.py)
    or APIConnectionError / APITimeoutError when it does not answer; a 2xx reply without a
    field the result needs raises ResponseValidationError.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: str | None = None,
        timeout: float = 60,
        max_retries: int | RetryPolicy = 2,
        http_client: httpx.Client | None = None,
    ):
        self._core = RequestCore(base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=self._core.timeout)

    # --- embed, classify, search -------------------------------------------------------

    def embed_texts(
        self, texts: str | Sequence[str], *, model: str | None = None, batch_size: int = 256, progress: bool = False
    ) -> EmbedResult:
        """Embeddings of one or more texts, `batch_size` per request -> EmbedResult (request order).

        ValueError/TypeError for no texts or non-strings, before anything is sent."""
        texts = P.as_texts(texts)
        return self._embed(P.embed_bodies("texts", texts, model=model, batch_size=batch_size), len(texts), progress)

    def embed_images(
        self, images: ImageInput | Sequence[ImageInput], *, model: str | None = None, batch_size: int = 32,
        progress: bool = False, patch_size: int | None = None,
    ) -> EmbedResult:
        """Embeddings of paths, file bytes or PIL images, `batch_size` per request -> EmbedResult.

        FileNotFoundError for a missing file, TypeError for anything else that is not an image.
        `patch_size`: a FlexiViT bundle's patch size (see `models()`); default: the server's choice."""
        images = P.as_images(images)
        return self._embed(P.embed_bodies("images", images, model=model, batch_size=batch_size, patch_size=patch_size), len(images), progress)

    def classify(
        self, image: ImageInput, labels: Sequence[str], *, templates: Sequence[str] | None = None,
        multi_label: bool = False, model: str | None = None, patch_size: int | None = None,
    ) -> ClassifyResult:
        """Zero-shot scores of `labels` for one image -> ClassifyResult, predictions best first.

        `templates` phrase each label ("{}" marks where it goes), and the label's text embedding
        is the mean over its templates. Without them the server uses "a photo of a {}." and "{}".
        Phrase templates as the model's training captions were: with the bundled model, a
        handwritten four scores 0.42 for "four" with the defaults, 0.998 with
        templates=["a photo of the digit {}", "the number {}"]. Scores are sigmoid
        probabilities, one per label, independent of each other (they need not sum to 1).

        ValueError for no labels; BadRequestError for a template without "{}" or a bad image."""
        body = P.classify_body(image, labels, templates=templates, multi_label=multi_label, model=model,
                               patch_size=patch_size)
        return ClassifyResult.from_json(self._request("POST", "/v1/classify", body))

    def search(
        self, *, text: str | None = None, image: ImageInput | None = None, vector: Sequence[float] | None = None,
        k: int = 10, filter: dict | None = None, collection: str = "default", model: str | None = None,
        patch_size: int | None = None,
    ) -> SearchResult:
        """Nearest items to exactly one of text, image or vector -> SearchResult, best first.

        `filter` matches metadata. ValueError unless exactly one query is given;
        NotFoundError for an unknown collection."""
        body = P.search_body(
            text=text, image=image, vector=vector, k=k, filter=filter, collection=collection, model=model,
            patch_size=patch_size,
        )
        return SearchResult.from_json(self._request("POST", "/v1/search", body))

    # --- collections ---------------------------------------------------------------------

    def add_items(
        self, items: Sequence[dict], *, collection: str = "default", batch_size: int = 64,
        model: str | None = None, progress: bool = False,
    ) -> int:
        """Upserts items {"id", one of "image"|"text"|"vector", "metadata"?}, `batch_size` per request.

        Returns how many were upserted. ValueError/TypeError for a malformed item, before sending."""
        items = list(items)
        total = 0
        with P.progress_bar(len(items), progress, f"add to {collection}") as bar:
            for n, body in P.item_bodies(items, batch_size=batch_size, model=model):
                reply = self._request("POST", P.items_path(collection), body)
                total += UpsertResult.from_json(reply).upserted
                bar.update(n)
        return total

    def delete_item(self, id: str, *, collection: str = "default") -> DeleteResult:
        """Deletes one item -> DeleteResult (`deleted` is 0 if it was not there).

        NotFoundError for an unknown collection."""
        return DeleteResult.from_json(self._request("DELETE", P.item_path(collection, id)))

    def get_item(self, id: str, *, collection: str = "default", vector: bool = False) -> Item:
        """One item's metadata (and stored unit vector with `vector=True`) -> Item; NotFoundError if absent."""
        path = P.item_path(collection, id) + ("?vector=true" if vector else "")
        return Item.from_json(self._request("GET", path))

    def count(self, collection: str = "default") -> int:
        """Live items in the collection (int); NotFoundError for an unknown collection."""
        return self.get_collection(collection).count

    def list_collections(self) -> list[CollectionInfo]:
        """Every collection of the server -> list of CollectionInfo."""
        return list_from_json(CollectionInfo, self._request("GET", "/v1/collections"), "collections")

    def get_collection(self, name: str = "default") -> CollectionInfo:
        """One collection's size, space and index -> CollectionInfo; NotFoundError if absent."""
        return CollectionInfo.from_json(self._request("GET", P.collection_path(name)))

    def models(self) -> list[ModelInfo]:
        """The models the server serves -> list of ModelInfo (extra fields such as `default` kept)."""
        return list_from_json(ModelInfo, self._request("GET", "/v1/models"), "models")

    def health(self) -> dict[str, Any]:
        """GET /health -> its JSON body, e.g. {"status": "ok"}."""
        return self._request("GET", "/health")

    # --- plumbing --------------------------------------------------------------------------

    def _embed(self, bodies, total: int, progress: bool) -> EmbedResult:
        parts = []
        with P.progress_bar(total, progress, "embed") as bar:
            for n, body in bodies:
                parts.append(self._request("POST", "/v1/embed", body))
                bar.update(n)
        return P.merge_embeds(parts)

    def _request(self, method: str, path: str, body: dict | None = None):
        core = self._core
        for attempt in itertools.count():
            try:
                response = self._http.request(
                    method, core.url(path), json=body, headers=core.headers, timeout=core.timeout
                )
            except httpx.TransportError as exc:
                delay = core.retry_delay(attempt, None, method, path)
                if delay is None:
                    raise core.connection_error(exc, attempt + 1) from exc
            else:
                delay = core.retry_delay(attempt, response, method, path)
                if delay is None:
                    return core.parse(response)
            time.sleep(delay)

    def close(self) -> None:
        """Closes the connection pool, unless the caller passed its own http_client."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
