"""The search page at `/` in a real headless Chromium against a real uvicorn server.

Chromium loads `/?q=red&collection=...`, the page's JavaScript lists the collections, searches and
draws the result grid. Checked two ways: the DOM after the scripts ran (the results, best first,
with scores), and a screenshot (the red thumbnail is actually drawn, and is absent before a search).
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from html.parser import HTMLParser

import httpx
import numpy as np
import pytest
from PIL import Image

from support.browser import DevTools, run_chromium
from support.live_server import running_server
from support.tiny_bundle import COLOR_RGB, DIM, png


class Results(HTMLParser):
    """(id, score, has_thumbnail_img) of each result card in a dumped DOM, in page order."""

    def __init__(self):
        super().__init__()
        self.cards: list[list] = []
        self.state = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figure" and "result" in attrs.get("class", ""):
            self.cards.append([attrs["data-id"], float(attrs["data-score"]), False])
        elif tag == "img" and attrs.get("class") == "thumb" and self.cards:
            self.cards[-1][2] = True
        elif tag == "main":
            self.state = attrs.get("data-state")


def red_pixels(path) -> int:
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=int)
    return int(((rgb[..., 0] > 230) & (rgb[..., 1] < 30) & (rgb[..., 2] < 30)).sum())


@pytest.fixture(scope="module")
def page_server(bundles, tmp_path_factory):
    from vistas.serving.app import create_app
    from vistas.serving.settings import Settings

    settings = Settings(bundles=[str(bundles[0])], index_dir=str(tmp_path_factory.mktemp("page_index")), threads=1)
    with running_server(create_app(settings)) as live:
        items = [
            {"id": f"shapes/{name}.png", "image": base64.b64encode(png(rgb, (40, 30))).decode(),
             "metadata": {"c": name, "label": name, "caption": f"a plain {name} picture"}}
            for name, rgb in COLOR_RGB.items()
        ]
        items.append({"id": "only-a-vector", "vector": [1.0] * DIM})
        r = httpx.post(f"{live.url}/v1/collections/gallery/items", json={"items": items}, timeout=30)
        assert r.status_code == 200, r.text
        r = httpx.post(f"{live.url}/v1/collections/single/items", json={"items": items[:1]}, timeout=30)
        assert r.status_code == 200, r.text
        yield live


def test_page_and_static_files_are_served(page_server):
    html = httpx.get(page_server.url + "/")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert '<script src="/static/search.js">' in html.text and "http" not in html.text.replace("http-equiv", "")
    assert httpx.get(page_server.url + "/static/search.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(page_server.url + "/static/search.css").status_code == 200
    assert httpx.get(page_server.url + "/static/../serving/app.py").status_code == 404


def test_search_page_shows_results_in_chromium(page_server, tmp_path):
    expected = httpx.post(page_server.url + "/v1/search",
                          json={"collection": "gallery", "text": "red", "k": 24}).json()["results"]
    assert expected[0]["id"] == "shapes/red.png"
    url = f"{page_server.url}/?q=red&collection=gallery"

    dom = Results()
    dom.feed(run_chromium(["--dump-dom", url], tmp_path))
    assert dom.state == "done"
    assert [c[0] for c in dom.cards] == [r["id"] for r in expected]  # all four, best first
    np.testing.assert_allclose([c[1] for c in dom.cards], [r["score"] for r in expected], atol=1e-6)
    assert all(has_img for id, _, has_img in dom.cards if id != "only-a-vector")  # thumbnails for images
    assert not [c for c in dom.cards if c[0] == "only-a-vector"][0][2]  # a placeholder for the vector item

    before, after = tmp_path / "before.png", tmp_path / "after.png"
    run_chromium([f"--screenshot={before}", f"{page_server.url}/?collection=gallery"], tmp_path)
    run_chromium([f"--screenshot={after}", url], tmp_path)
    assert red_pixels(before) == 0
    assert red_pixels(after) > 60 * 60  # the red thumbnail, drawn ~150 px wide in the first cell


def test_dropping_an_image_searches_by_image(page_server, tmp_path):
    blue = png(COLOR_RGB["blue"], (30, 30))
    (tmp_path / "query.png").write_bytes(blue)
    expected = httpx.post(page_server.url + "/v1/search", json={
        "collection": "gallery", "image": base64.b64encode(blue).decode(), "k": 24}).json()["results"]
    assert expected[0]["id"] == "shapes/blue.png"
    browser = DevTools(tmp_path)
    try:
        browser.call("Page.enable")
        browser.call("Page.navigate", url=f"{page_server.url}/?collection=gallery")
        browser.wait_for("document.getElementById('collection').value === 'gallery'")
        box = browser.evaluate("JSON.stringify(document.getElementById('drop').getBoundingClientRect())")
        box = json.loads(box)
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        data = {"items": [], "files": [str(tmp_path / "query.png")], "dragOperationsMask": 1}
        for kind in ("dragEnter", "dragOver", "drop"):  # a real drag and drop onto the drop zone
            browser.call("Input.dispatchDragEvent", type=kind, x=x, y=y, data=data)
        browser.wait_for("document.getElementById('results').dataset.state === 'done'")
        ids = json.loads(browser.evaluate(
            "JSON.stringify([...document.querySelectorAll('.result')].map(e => e.dataset.id))"))
        assert ids == [r["id"] for r in expected]
        assert browser.evaluate("document.getElementById('query-image').hidden") is False  # the query is shown
        browser.wait_for("[...document.querySelectorAll('.result img.thumb')].length === 3 && "
                         "[...document.querySelectorAll('.result img.thumb')].every(i => i.complete && i.naturalWidth)")
        shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
        rgb = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"), dtype=int)
        blue_pixels = ((rgb[..., 2] > 230) & (rgb[..., 0] < 30) & (rgb[..., 1] < 30)).sum()
        assert blue_pixels > 60 * 60  # the blue thumbnail is drawn first in the grid
    finally:
        browser.close()


def test_page_on_a_server_with_api_keys(bundles, tmp_path):
    """The page itself is public (made so by settings); the API calls and thumbnails carry the key."""
    from vistas.serving.app import create_app
    from vistas.serving.settings import Settings

    settings = Settings(bundles=[str(bundles[0])], index_dir=str(tmp_path / "index"), threads=1, api_keys=["s3cret"],
                        public_paths=["/health", "/", "/static/*"])
    with running_server(create_app(settings)) as live:
        auth = {"authorization": "Bearer s3cret"}
        item = {"id": "red", "image": base64.b64encode(png(COLOR_RGB["red"])).decode()}
        assert httpx.post(f"{live.url}/v1/collections/keyed/items", json={"items": [item]}, headers=auth).status_code == 200
        assert httpx.get(f"{live.url}/v1/collections/keyed/images/red").status_code == 401
        browser = DevTools(tmp_path)
        try:
            browser.call("Page.navigate", url=f"{live.url}/?collection=keyed")
            browser.wait_for("!document.getElementById('api-key').hidden")  # 401: the page asks for a key
            browser.evaluate("const k = document.getElementById('api-key'); k.value = 's3cret';"
                             "k.dispatchEvent(new Event('change'))")
            browser.wait_for("document.getElementById('collection').value === 'keyed'")
            browser.evaluate("document.getElementById('text').value = 'red';"
                             "document.getElementById('form').requestSubmit()")
            browser.wait_for("document.getElementById('results').dataset.state === 'done'")
            browser.wait_for("[...document.querySelectorAll('.result img.thumb')].some(i => i.complete && i.naturalWidth)")
            assert browser.evaluate("document.querySelector('.result').dataset.id") == "red"
        finally:
            browser.close()


def status_of(dom: str) -> tuple[str, bool]:
    """(text, is_error) of the page's status line in a dumped DOM."""
    m = re.search(r'<p id="status" role="status"( class="([^"]*)")?>(.*?)</p>', dom, re.S)
    assert m, dom[-2000:]
    return html.unescape(m.group(3)), "error" in (m.group(2) or "")


def test_tiles_show_the_label_and_caption(page_server, tmp_path):
    dom = run_chromium(["--dump-dom", f"{page_server.url}/?q=red&collection=gallery"], tmp_path)
    figures = re.finditer(r'<figure class="result" data-id="([^"]+)".*?</figure>', dom, re.S)
    cards = {m.group(1): m.group(0) for m in figures}
    def shown(card: str) -> list[str]:  # the text a reader sees (not attributes)
        return [html.unescape(t) for t in re.split(r"<[^>]+>", card) if t.strip()]

    for name in COLOR_RGB:
        texts = shown(cards[f"shapes/{name}.png"])
        assert name in texts and f"a plain {name} picture" in texts, texts
    assert shown(cards["only-a-vector"])[-1] == "only-a-vector"  # no metadata: score and id only


def test_one_result_is_singular(page_server, tmp_path):
    dom = run_chromium(["--dump-dom", f"{page_server.url}/?q=red&collection=single"], tmp_path)
    text, error = status_of(dom)
    assert re.fullmatch(r"1 result from single in \d+ ms", text) and not error, text


def test_an_unknown_collection_is_refused_visibly(page_server, tmp_path):
    dom = run_chromium(["--dump-dom", f"{page_server.url}/?q=red&collection=nope"], tmp_path)
    text, error = status_of(dom)
    assert error and '"nope"' in text and "gallery" in text and "single" in text, text
    parsed = Results()
    parsed.feed(dom)
    assert parsed.cards == [] and parsed.state == "error"  # no search of another collection instead


def test_an_empty_server_and_an_empty_collection_say_what_to_do(bundles, tmp_path):
    from vistas.serving.app import create_app
    from vistas.serving.settings import Settings

    settings = Settings(bundles=[str(bundles[0])], index_dir=str(tmp_path / "index"), threads=1)
    with running_server(create_app(settings)) as live:
        text, _ = status_of(run_chromium(["--dump-dom", f"{live.url}/"], tmp_path))
        assert "no collections yet" in text and "vistas index build" in text and "/v1/collections/" in text, text

        item = {"id": "gone", "vector": [1.0] * DIM}
        assert httpx.post(f"{live.url}/v1/collections/emptied/items", json={"items": [item]}).status_code == 200
        assert httpx.delete(f"{live.url}/v1/collections/emptied/items/gone").status_code == 200
        text, _ = status_of(run_chromium(["--dump-dom", f"{live.url}/?q=red&collection=emptied"], tmp_path))
        assert '"emptied" has no items' in text and "/v1/collections/emptied/items" in text, text
