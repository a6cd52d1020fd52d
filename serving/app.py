"""The FastAPI app: wiring only. Heavy objects are built once in the lifespan.

    app = create_app(Settings(bundles=["runs/bundle"], index_dir="runs/idx"))
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import FastAPI

import vistas
from vistas.index import Collections
from vistas.inference.model import ServedModel
from vistas.serving.admission import Admission
from vistas.serving.auth import APIKeys, BearerAuth
from vistas.serving.errors import install_error_handlers
from vistas.serving.lifecycle import LOADING, lifespan_for
from vistas.serving.limits import BodySizeLimit
from vistas.serving.metrics import Metrics
from vistas.serving.observe import Observe
from vistas.serving.routers import classify, embed, health, kserve, openai_embeddings, page, search
from vistas.serving.routers import collections as collection_routes
from vistas.serving.routers import models as model_routes
from vistas.serving.settings import Settings

ROUTERS = (
    embed.router,
    classify.router,
    search.router,
    collection_routes.router,
    model_routes.router,
    health.router,
    openai_embeddings.router,
    kserve.router,
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
    keys = APIKeys(settings.api_keys, settings.api_keys_file)  # a bad keys file fails here, at start

    app = FastAPI(
        title="vistas",
        version=vistas.__version__,
        summary="Embed, zero-shot classify and search images and texts with SigLIP-family models.",
        lifespan=lifespan_for(settings),
    )
    app.state.settings = settings
    app.state.models = models
    app.state.collections = collections
    app.state.metrics = Metrics()
    app.state.phase = LOADING
    install_error_handlers(app)
    # Innermost first: each add_middleware wraps everything added before it.
    app.add_middleware(BodySizeLimit, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(
        Admission,
        public_paths=settings.public_paths,
        max_concurrent=settings.max_concurrent_requests,
        rate_per_s=settings.rate_limit_per_s,
        burst=settings.rate_limit_burst,
    )
    app.add_middleware(BearerAuth, keys=keys, public_paths=settings.public_paths)
    app.add_middleware(Observe, metrics=app.state.metrics)
    for router in ROUTERS:
        app.include_router(router)
    return app
