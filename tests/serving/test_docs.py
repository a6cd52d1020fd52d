"""/docs and /redoc work offline: every asset comes from this server, none from a CDN.

FastAPI's own pages load Swagger UI / ReDoc from cdn.jsdelivr.net, so a server without internet
(or a browser behind a strict proxy) showed a blank page. Checked three ways: the HTML names no
other host; every asset it names answers 200 here; and headless Chromium, with every host but
127.0.0.1 unresolvable, renders Swagger UI's list of operations.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from support.browser import run_chromium


class Assets(HTMLParser):
    """Every URL an HTML page loads by itself: <script src>, <link href>, <img src>."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "img") and attrs.get("src"):
            self.urls.append(attrs["src"])
        elif tag == "link" and attrs.get("href"):
            self.urls.append(attrs["href"])


def assets_of(html: str) -> list[str]:
    parser = Assets()
    parser.feed(html)
    return parser.urls


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_nothing_from_another_host(client, server, page):
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    urls = assets_of(r.text)
    assert any(u.endswith(".js") for u in urls), urls  # the page does load its UI ...
    hosts = {urlsplit(urljoin(server.url + page, u)).netloc for u in urls}
    assert hosts == {urlsplit(server.url).netloc}, urls  # ... from this server only
    # No URL in inline scripts either (fonts, validators, the spec itself).
    assert not re.findall(r"https?://", r.text), re.findall(r"https?://\S+", r.text)
    for u in urls:
        asset = client.get(urljoin(page, u))
        assert asset.status_code == 200, (u, asset.text[:200])
        assert len(asset.content) > 0


def test_docs_assets_are_a_fixed_list(client):
    assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
    for bad in ("/docs/assets/nope.js", "/docs/assets/..%2F__init__.py", "/docs/assets/core.py"):
        r = client.get(bad)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", bad


def test_docs_are_public_on_a_server_with_api_keys(bundles, tmp_path):
    from support.live_server import running_server
    from vistas.serving.app import create_app
    from vistas.serving.settings import Settings

    settings = Settings(bundles=[str(bundles[0])], index_dir=str(tmp_path / "index"), threads=1, api_keys=["k"])
    with running_server(create_app(settings)) as live:
        html = httpx.get(live.url + "/docs")
        assert html.status_code == 200
        for u in assets_of(html.text):  # the page would be blank if its assets needed a key
            assert httpx.get(urljoin(live.url + "/docs", u)).status_code == 200, u
        assert httpx.get(live.url + "/v1/models").status_code == 401  # the API itself still does


def test_swagger_ui_renders_the_operations_offline_in_chromium(server, tmp_path):
    # Every host name but the server's resolves to nothing: a CDN asset would fail to load.
    offline = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
    dom = run_chromium([offline, "--dump-dom", server.url + "/docs"], tmp_path)
    # Swagger UI draws one `opblock` per operation, with its path in `data-path`.
    paths = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    assert {"/v1/embed", "/v1/classify", "/v1/search", "/health"} <= paths, dom[-3000:]


def test_redoc_renders_the_operations_offline_in_chromium(server, tmp_path):
    offline = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
    dom = run_chromium([offline, "--dump-dom", server.url + "/redoc"], tmp_path)
    # The page itself names no route: they are in the DOM only once ReDoc has run and read the spec.
    assert "/v1/embed" not in httpx.get(server.url + "/redoc").text
    assert all(path in dom for path in ("/v1/embed", "/v1/classify", "/v1/search")), dom[-3000:]
