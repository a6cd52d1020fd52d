"""Fixtures for serving tests: a real uvicorn server over the two tiny `bundles` (tests/conftest.py)."""

from __future__ import annotations

import pytest

from support.live_server import LiveServer, running_server


@pytest.fixture(scope="session")
def server(bundles, tmp_path_factory):
    """A real uvicorn server on a free 127.0.0.1 port, in a background thread, with small limits."""
    from vistas.serving.app import create_app
    from vistas.serving.settings import Settings

    settings = Settings(
        bundles=[str(b) for b in bundles],
        index_dir=str(tmp_path_factory.mktemp("index")),
        threads=1,
        max_body_bytes=200_000,
        max_image_pixels=100_000,
        max_batch_images=4,
        max_texts=8,
        max_text_chars=200,
        max_labels=10,
        max_templates=3,
        max_items=5,
        max_k=50,
    )
    with running_server(create_app(settings)) as live:
        yield live


@pytest.fixture
def client(server: LiveServer):
    import httpx

    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def flexi_server(small_flexi_bundle, tmp_path_factory):
    """A real uvicorn server over the FlexiViT bundle "flexi" (patch sizes 8 and 16)."""
    from vistas.serving.app import create_app
    from vistas.serving.settings import Settings

    settings = Settings(
        bundles=[str(small_flexi_bundle)], index_dir=str(tmp_path_factory.mktemp("flexi_index")), threads=1,
        max_batch_images=4,
    )
    with running_server(create_app(settings)) as live:
        yield live
