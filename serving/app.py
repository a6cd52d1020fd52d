"""The FastAPI app: wiring only. Heavy objects are built once in the lifespan.

    app = create_app(Settings(bundles=["runs/bundle"], index_dir="runs/idx"))
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import FastAPI
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

import vistas
from vistas.index import Collections
from vistas.inference.model import ServedModel
from vistas.serving.admission import Admission
from vistas.serving.auth import APIKeys, BearerAuth
from vistas.serving.auth_throttle import FailedAuth
from vistas.serving.errors import install_error_handlers
from vistas.serving.lifecycle import LOADING, lifespan_for
from vistas.serving.limits import BodySizeLimit
from vistas.serving.malloc import return_large_frees_to_the_os
from vistas.serving.metrics import Metrics
from vistas.serving.observe import Observe
from vistas.serving.parsing import ImageDecoding
from vistas.serving.patch_size import PatchSizePolicy
from vistas.serving.routers import classify, docs, embed, health, kserve, openai_embeddings, page, search
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
    docs.router,
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
        docs_url=None,  # FastAPI's pages load their assets from a CDN: vistas.serving.routers.docs serves them
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.image_decoding = ImageDecoding.from_settings(settings)  # one pixel budget for all requests
    return_large_frees_to_the_os()  # else freed decode buffers stay with each request thread
    app.state.models = models
    app.state.collections = collections
    app.state.metrics = Metrics()
    app.state.patch_sizes = PatchSizePolicy(
        settings.patch_size_policy, settings.patch_size_queue_high, settings.patch_size_queue_low, app.state.metrics
    )
    app.state.phase = LOADING
    install_error_handlers(app)
    # Innermost first: each add_middleware wraps everything added before it.
    app.add_middleware(
        Admission,
        public_paths=settings.public_paths,
        max_concurrent=settings.max_concurrent_requests,
        rate_per_s=settings.rate_limit_per_s,
        burst=settings.rate_limit_burst,
        body_timeout_s=settings.body_timeout_s,
    )
    # Outside Admission, which reads the whole body before it takes a slot: bounded here.
    app.add_middleware(BodySizeLimit, max_body_bytes=settings.max_body_bytes)
    failed_auth = FailedAuth(settings.auth_failure_limit, settings.auth_failure_window_s)
    app.add_middleware(BearerAuth, keys=keys, public_paths=settings.public_paths, failed=failed_auth)
    app.add_middleware(Observe, metrics=app.state.metrics)
    if settings.trusted_proxies:
        # Outermost, so limits, the auth throttle and logs all see the client behind the proxy.
        # `vistas serve` turns uvicorn's own (which believes 127.0.0.1 by default) off.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    for router in ROUTERS:
        app.include_router(router)
    return app
