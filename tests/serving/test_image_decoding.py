"""Request images over HTTP: memory grows with the pixels decoded at once, not with the pixels sent,
a request's pixel budget is a clear 413, and EXIF orientation is applied (issue 12, items 2 and 10)."""

from __future__ import annotations

import base64
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from support.components import missing
from support.live_server import running_server
from support.serve_process import start_serve

HUGE = 6000  # px a side: 36 M pixels, 36 MB as 8-bit grayscale, 144 MB as Pillow's RGB (4 bytes a pixel)
N_HUGE = 16
MB = 2**20


def _camera(side: int) -> Image.Image:
    """scikit-image's camera photo (512 x 512 grayscale), upscaled to side x side."""
    from skimage import data

    return Image.fromarray(data.camera()).resize((side, side), Image.Resampling.NEAREST)


def _png(img: Image.Image, orientation: int | None = None) -> bytes:
    buf = io.BytesIO()
    kw = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif
    img.save(buf, format="PNG", compress_level=1, **kw)
    return buf.getvalue()


def _proc_status(pid: int, field: str) -> int:
    """A /proc/PID/status memory field (VmRSS, VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _reset_peak(pid: int) -> None:
    """Linux: writing 5 to clear_refs resets VmHWM (the peak RSS) to the current RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@pytest.fixture(scope="module")
def serve_huge(bundles, tmp_path_factory):
    """`vistas serve` (a real process: its RSS is the server's alone) that accepts 16 huge images,
    with room for one huge image decoded at a time across all requests."""
    if not os.access("/proc/self/clear_refs", os.W_OK):
        missing("needs Linux /proc/PID/clear_refs to measure the peak RSS of requests")
    env = {
        "VISTAS_THREADS": "1",
        "VISTAS_MAX_REQUEST_PIXELS": str(N_HUGE * HUGE * HUGE),  # let the request in: it is the memory under test
        "VISTAS_MAX_PIXELS_IN_FLIGHT": str(HUGE * HUGE),
    }
    log = tmp_path_factory.mktemp("serve") / "server.log"
    proc, url = start_serve(bundles[0], env, log)
    try:
        with httpx.Client(base_url=url, timeout=300) as client:
            warm = client.post("/v1/embed", files=[("images", ("w.png", _png(_camera(600)), "image/png"))])
            assert warm.status_code == 200, warm.text  # lazy allocations (sessions, arenas) happen here
            yield proc, client
    finally:
        proc.kill()
        proc.wait()


# What the server may add while decoding: one huge image at 8 bits a pixel (decoded one at a time
# across all requests), and as much again for the decoder's buffers, the bodies, the reductions
# and the allocator. Measured: ~50 MB for one request and for four concurrent ones. Before the
# fix one request held all 16 images converted to RGB: 2250 MB; four concurrent requests with
# no pixel budget decode four images at once: ~150 MB.
BOUND = 2 * HUGE * HUGE


def test_sixteen_huge_grayscale_pngs_cost_less_than_one_image_of_memory(serve_huge):
    """The issue's request: 16 grayscale 6000 x 6000 PNGs. Before, every image was decoded at full
    size, converted to RGB and held until embedding: RSS grew by 2250 MB. Now each is decoded
    alone, reduced before its RGB conversion and released once preprocessed."""
    proc, client = serve_huge
    huge = _png(_camera(HUGE))
    _reset_peak(proc.pid)
    before = _proc_status(proc.pid, "VmRSS")
    r = client.post("/v1/embed", files=[("images", (f"{i}.png", huge, "image/png")) for i in range(N_HUGE)])
    growth = _proc_status(proc.pid, "VmHWM") - before
    assert r.status_code == 200, r.text
    rows = np.asarray(r.json()["image_embeddings"])
    assert rows.shape == (N_HUGE, 8) and np.allclose(rows, rows[0], atol=1e-6)
    # The same photo at its own 512 px, decoded at full size, embeds the same (the tiny tower
    # averages 8 x 8 cells of its 16 x 16 input, so both resizes of the photo land close).
    small = client.post("/v1/embed", files=[("images", ("s.png", _png(_camera(512)), "image/png"))])
    assert float(np.dot(small.json()["image_embeddings"][0], rows[0])) > 0.999
    print(f"peak RSS growth for {N_HUGE} x {HUGE}x{HUGE} grayscale PNGs: {growth / MB:.0f} MB")
    assert growth < BOUND, f"peak RSS grew by {growth / MB:.0f} MB for one request"


def test_concurrent_requests_share_one_pixel_budget(serve_huge):
    """Four requests at once, four huge images each: max_pixels_in_flight (one image here) keeps
    the decoded images of all of them within the same bound as one request's (and the fixed
    mmap threshold, vistas.serving.malloc, gives each freed image back before the next)."""
    proc, client = serve_huge
    huge = _png(_camera(HUGE))
    files = [("images", (f"{i}.png", huge, "image/png")) for i in range(4)]
    _reset_peak(proc.pid)
    before = _proc_status(proc.pid, "VmRSS")
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: client.post("/v1/embed", files=files), range(4)))
    growth = _proc_status(proc.pid, "VmHWM") - before
    assert [r.status_code for r in answers] == [200] * 4, [r.text for r in answers]
    print(f"peak RSS growth for 4 concurrent requests of 4 x {HUGE}x{HUGE} grayscale PNGs: {growth / MB:.0f} MB")
    assert growth < BOUND, f"peak RSS grew by {growth / MB:.0f} MB for four concurrent requests"


@pytest.fixture(scope="module")
def budget_server(bundles, tmp_path_factory):
    """A server whose request pixel budget is two 1000 x 1000 images."""
    from vistas.serving.app import create_app
    from vistas.serving.settings import Settings

    settings = Settings(
        bundles=[str(bundles[0])],
        threads=1,
        max_image_pixels=1_000_000,
        max_request_pixels=2_000_000,
        max_pixels_in_flight=1_000_000,
    )
    with running_server(create_app(settings)) as live:
        with httpx.Client(base_url=live.url, timeout=60) as client:
            yield client


def test_a_request_over_its_pixel_budget_is_a_clear_413(budget_server):
    image = base64.b64encode(_png(_camera(1000))).decode()
    ok = budget_server.post("/v1/embed", json={"images": [image, image]})
    assert ok.status_code == 200, ok.text
    r = budget_server.post("/v1/embed", json={"images": [image, image, image]})
    assert r.status_code == 413
    error = r.json()["error"]
    assert error["code"] == "too_many_pixels"
    assert "3000000" in error["message"].replace(",", "") and "max_request_pixels" in error["message"]
    # Every route that decodes images keeps the same budget.
    r = budget_server.post("/v1/embeddings", json={"model": "tiny-a", "input": [f"data:image/png;base64,{image}"] * 3})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_pixels"
    # ... and the server keeps serving.
    again = budget_server.post("/v1/embed", json={"images": [image]})
    assert again.status_code == 200
    np.testing.assert_allclose(again.json()["image_embeddings"][0], ok.json()["image_embeddings"][0], atol=1e-6)


def test_exif_orientation_6_embeds_as_the_upright_photo(client):
    """A phone photo stored sideways with orientation 6 embeds as its upright original, before
    off by 90 degrees (cosine 0.71 with a real model). The server's images are at most 100,000 px."""
    from skimage import data

    upright = Image.fromarray(data.chelsea()).resize((180, 120), Image.Resampling.BICUBIC)
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # the pixels as the camera stored them
    got = {}
    for name, blob in (("upright", _png(upright)), ("sideways", _png(sideways, orientation=6))):
        r = client.post("/v1/embed", files=[("images", (f"{name}.png", blob, "image/png"))])
        assert r.status_code == 200, r.text
        got[name] = np.asarray(r.json()["image_embeddings"][0])
    np.testing.assert_allclose(got["sideways"], got["upright"], rtol=0, atol=1e-6)


def test_exif_orientation_6_is_thumbnailed_upright_over_http(client):
    from skimage import data

    upright = Image.fromarray(data.chelsea()).resize((180, 120), Image.Resampling.BICUBIC)
    sideways = _png(upright.transpose(Image.Transpose.ROTATE_90), orientation=6)
    items = [
        {"id": "upright", "image": base64.b64encode(_png(upright)).decode()},
        {"id": "sideways", "image": base64.b64encode(sideways).decode()},
    ]
    r = client.post("/v1/collections/exif/items", json={"items": items})
    assert r.status_code == 200, r.text
    thumbs = {}
    for id in ("upright", "sideways"):
        t = client.get(f"/v1/collections/exif/images/{id}")
        assert t.status_code == 200
        thumbs[id] = Image.open(io.BytesIO(t.content))
    assert thumbs["sideways"].size == thumbs["upright"].size == (128, 85)  # landscape, as the photo
    np.testing.assert_array_equal(np.asarray(thumbs["sideways"]), np.asarray(thumbs["upright"]))
