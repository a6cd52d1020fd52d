"""GET /: the search page (static HTML + JS + CSS shipped in serving/static/, no build step).

The page calls the public API only: GET /v1/collections, POST /v1/search and the item
thumbnails at GET /v1/collections/{name}/images/{id}. Nothing is fetched from the network.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from vistas.serving.errors import APIError

STATIC = Path(__file__).resolve().parents[1] / "static"
FILES = {"search.js": "text/javascript", "search.css": "text/css"}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/static/{name}")
async def static_file(name: str) -> FileResponse:
    if name not in FILES:  # a fixed list: no path from the URL ever reaches the filesystem
        raise APIError(404, "not_found", f"No static file {name!r}.")
    return FileResponse(STATIC / name, media_type=FILES[name])
