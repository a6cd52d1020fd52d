"""Liveness and readiness. Both answer from the event loop, never waiting on inference."""

from __future__ import annotations

from fastapi import APIRouter

from serving.schemas import HealthResponse

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse)
async def health() -> HealthResponse:
    return HealthResponse(status="ok")


@router.get("/ready", response_model=HealthResponse)
async def ready() -> HealthResponse:
    # The lifespan loads every model and collection before the server accepts
    # connections, so answering at all means ready.
    return HealthResponse(status="ready")
