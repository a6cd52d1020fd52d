"""Operations: liveness, readiness, Prometheus metrics. All answer from the event loop,
never waiting on inference, and are public by default (`public_paths`)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from vistas.serving.errors import APIError
from vistas.serving.lifecycle import DRAINING, READY
from vistas.serving.metrics import CONTENT_TYPE
from vistas.serving.schemas import ErrorResponse, HealthResponse, ReadyResponse

router = APIRouter(tags=["operations"])


# HEAD too (kept out of the OpenAPI schema): load balancers and uptime checks probe with it, and
# a 405 reads as down. uvicorn sends a HEAD answer's headers without its body.
@router.api_route("/health", methods=["HEAD"], include_in_schema=False)
@router.get("/health", response_model=HealthResponse)
async def health() -> HealthResponse:
    """Liveness: the process serves HTTP. 200 while loading and draining too."""
    return HealthResponse(status="ok")


@router.api_route("/ready", methods=["HEAD"], include_in_schema=False)
@router.get(
    "/ready", response_model=ReadyResponse, response_model_exclude_none=True, responses={503: {"model": ErrorResponse}}
)
async def ready(request: Request) -> ReadyResponse:
    """Readiness: 200 once the models are loaded; 503 while loading and while draining.

    A collection that could not be opened, or that lost acknowledged writes, is named in
    `collections` with what is wrong; it does not make the server unready (the rest is served)."""
    state = request.app.state
    if state.phase == READY:
        collections = state.collections
        problems = collections.problems() if collections is not None else {}
        return ReadyResponse(status="ready", collections=problems or None)
    if state.phase == DRAINING:
        raise APIError(503, "draining", "The server is shutting down: it finishes what it has and takes no new work.")
    if state.load_error:
        raise APIError(503, "load_failed", f"Loading the models failed: {state.load_error}")
    raise APIError(503, "loading", "The models are still loading.", headers={"Retry-After": "1"})


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
async def metrics(request: Request) -> Response:
    """Prometheus metrics in the text exposition format (see serving/metrics.py for the list)."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
