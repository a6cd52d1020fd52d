"""The asyncio SDK client: `async with AsyncClient() as c: await c.search(text="a red circle")`.

Mirrors Client method for method; bodies, batching and retry decisions come from the
same core (_core.py, _payloads.py). Image files are read synchronously while a batch
is encoded: fine for a client, noted in case an event loop serves other work.
"""

from __future__ import annotations

import asyncio
import itertools
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
)


class AsyncClient:
    """Non-blocking client of a vistas server; the arguments are Client's."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: str | None = None,
        timeout: float = 60,
        max_retries: int | RetryPolicy = 2,
        http_client: httpx.AsyncClient | None = None,
    ):
        self._core = RequestCore(base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=self._core.timeout)

    # --- embed, classify, search -------------------------------------------------------

    async def embed_texts(
        self, texts: str | Sequence[str], *, model: str | None = None, batch_size: int = 256, progress: bool = False
    ) -> EmbedResult:
        texts = P.as_texts(texts)
        return await self._embed(
            P.embed_bodies("texts", texts, model=model, batch_size=batch_size), len(texts), progress
        )

    async def embed_images(
        self, images: ImageInput | Sequence[ImageInput], *, model: str | None = None, batch_size: int = 32,
        progress: bool = False,
    ) -> EmbedResult:
        images = P.as_images(images)
        return await self._embed(
            P.embed_bodies("images", images, model=model, batch_size=batch_size), len(images), progress
        )

    async def classify(
        self, image: ImageInput, labels: Sequence[str], *, templates: Sequence[str] | None = None,
        multi_label: bool = False, model: str | None = None,
    ) -> ClassifyResult:
        body = P.classify_body(image, labels, templates=templates, multi_label=multi_label, model=model)
        return ClassifyResult.model_validate(await self._request("POST", "/v1/classify", body))

    async def search(
        self, *, text: str | None = None, image: ImageInput | None = None, vector: Sequence[float] | None = None,
        k: int = 10, filter: dict | None = None, collection: str = "default", model: str | None = None,
    ) -> SearchResult:
        body = P.search_body(
            text=text, image=image, vector=vector, k=k, filter=filter, collection=collection, model=model
        )
        return SearchResult.model_validate(await self._request("POST", "/v1/search", body))

    # --- collections ---------------------------------------------------------------------

    async def add_items(
        self, items: Sequence[dict], *, collection: str = "default", batch_size: int = 64,
        model: str | None = None, progress: bool = False,
    ) -> int:
        items = list(items)
        total = 0
        with P.progress_bar(len(items), progress, f"add to {collection}") as bar:
            for n, body in P.item_bodies(items, batch_size=batch_size, model=model):
                reply = await self._request("POST", P.items_path(collection), body)
                total += UpsertResult.model_validate(reply).upserted
                bar.update(n)
        return total

    async def delete_item(self, id: str, *, collection: str = "default") -> DeleteResult:
        return DeleteResult.model_validate(await self._request("DELETE", P.item_path(collection, id)))

    async def get_item(self, id: str, *, collection: str = "default", vector: bool = False) -> Item:
        """One item's metadata (and stored unit vector with `vector=True`); NotFoundError if absent."""
        path = P.item_path(collection, id) + ("?vector=true" if vector else "")
        return Item.model_validate(await self._request("GET", path))

    async def count(self, collection: str = "default") -> int:
        """Live items in the collection."""
        return (await self.get_collection(collection)).count

    async def list_collections(self) -> list[CollectionInfo]:
        body = await self._request("GET", "/v1/collections")
        return [CollectionInfo.model_validate(c) for c in body["collections"]]

    async def get_collection(self, name: str = "default") -> CollectionInfo:
        return CollectionInfo.model_validate(await self._request("GET", P.collection_path(name)))

    async def models(self) -> list[ModelInfo]:
        return [ModelInfo.model_validate(m) for m in (await self._request("GET", "/v1/models"))["models"]]

    async def health(self) -> dict[str, Any]:
        return await self._request("GET", "/health")

    # --- plumbing --------------------------------------------------------------------------

    async def _embed(self, bodies, total: int, progress: bool) -> EmbedResult:
        parts = []
        with P.progress_bar(total, progress, "embed") as bar:
            for n, body in bodies:
                parts.append(await self._request("POST", "/v1/embed", body))
                bar.update(n)
        return P.merge_embeds(parts)

    async def _request(self, method: str, path: str, body: dict | None = None):
        core = self._core
        for attempt in itertools.count():
            try:
                response = await self._http.request(
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
            await asyncio.sleep(delay)

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
