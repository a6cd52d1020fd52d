"""The FastAPI app: wiring only. Heavy objects are built once in the lifespan.

    app = create_app(Settings(bundles=["runs/bundle"], index_dir="runs/idx"))
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

import vistas
from index import Collections
from serving.errors import install_error_handlers
from serving.limits import BodySizeLimit
from serving.model import ServedModel, load_models
from serving.routers import classify, embed, health, page, search
from serving.routers import collections as collection_routes
from serving.routers import models as model_routes
from serving.settings import Settings

ROUTERS = (
    embed.router,
    classify.router,
    search.router,
    collection_routes.router,
    model_routes.router,
    health.router,
    page.router,
)


def create_app(
    settings: Settings,
    models: dict[str, ServedModel] | Iterable[ServedModel] | None = None,
    collections: Collections | None = None,
) -> FastAPI:
    """An app serving `settings.bundles` and `settings.index_dir`.

    `models` / `collections` given here are used instead of loading from settings
    (tests, embedding the app in another process); the caller then owns them.
    """
    if models is None and not settings.bundles:
        raise ValueError(
            "no model to serve: give at least one bundle directory (VISTAS_BUNDLES or `vistas serve BUNDLE`)"
        )
    if models is not None and not isinstance(models, dict):
        models = {m.name: m for m in models}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state = app.state
        if state.models is None:
            state.models = await run_in_threadpool(
                load_models,
                settings.bundles,
                threads=settings.threads,
                providers=settings.providers,
                max_batch=settings.inference_batch_size,
                cache_size=settings.classify_cache_size,
            )
        owned = state.collections is None and settings.index_dir is not None
        if owned:
            state.collections = await run_in_threadpool(Collections, settings.index_dir)
        try:
            yield
        finally:
            if owned:
                state.collections.close()  # writes the FAISS snapshots: a fast start next time

    app = FastAPI(
        title="vistas",
        version=vistas.__version__,
        summary="Embed, zero-shot classify and search images and texts with SigLIP-family models.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.models = models
    app.state.collections = collections
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_body_bytes=settings.max_body_bytes)
    for router in ROUTERS:
        app.include_router(router)
    return app
