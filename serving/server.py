"""`vistas serve`: run the app under uvicorn."""

from __future__ import annotations

import logging


def serve(
    bundles: list[str],
    index_dir: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    **settings_overrides,
) -> None:
    """Serve `bundles` (the first is the default model) and the collections under `index_dir`.

    `settings_overrides` are `serving.settings.Settings` fields (max_body_bytes=..., threads=...);
    fields not given come from VISTAS_* environment variables, then the defaults.
    """
    import uvicorn

    from serving.app import create_app
    from serving.settings import Settings

    settings = Settings(bundles=list(bundles), index_dir=index_dir, host=host, port=port, **settings_overrides)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)
