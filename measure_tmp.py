"""Throughput of /v1/embed (1 image per request) at concurrency 1 and 8 against a `vistas serve` subprocess."""
import base64, io, os, subprocess, sys, time, threading
from concurrent.futures import ThreadPoolExecutor
import httpx
from PIL import Image

bundle, N = sys.argv[1], int(sys.argv[2])
img = Image.new("RGB", (64, 64), (200, 30, 30)); buf = io.BytesIO(); img.save(buf, "PNG")
body = {"images": [base64.b64encode(buf.getvalue()).decode()]}

def run(url, conc):
    local = threading.local()
    def one(_):
        c = getattr(local, "c", None) or httpx.Client(timeout=60); local.c = c
        r = c.post(f"{url}/v1/embed", json=body); assert r.status_code == 200, r.text
    with ThreadPoolExecutor(conc) as pool:
        list(pool.map(one, range(20)))
        t = time.perf_counter(); list(pool.map(one, range(N))); return N / (time.perf_counter() - t)

for env in [{"VISTAS_BATCHING": "false"}, {"VISTAS_BATCH_MAX_DELAY_MS": "2"}, {"VISTAS_BATCHING": "false"}, {"VISTAS_BATCH_MAX_DELAY_MS": "2"}, {"VISTAS_BATCH_MAX_DELAY_MS": "0"}]:
    p = subprocess.Popen([sys.executable, "-m", "vistas.cli", "serve", bundle, "--port", "8799"], env={**os.environ, "VISTAS_LOG_LEVEL": "warning", **env}, stderr=subprocess.DEVNULL)
    url = "http://127.0.0.1:8799"
    while True:
        try:
            if httpx.get(url + "/ready").status_code == 200: break
        except httpx.TransportError: time.sleep(0.2)
    r1 = run(url, 1); r8 = run(url, 8)
    m = httpx.get(url + "/metrics").text
    s = [l for l in m.splitlines() if l.startswith("vistas_batch_requests_sum") or l.startswith("vistas_batch_requests_count")]
    print(env, f"c=1 {r1:.0f} req/s, c=8 {r8:.0f} req/s, ratio {r8/r1:.2f}", s)
    p.terminate(); p.wait()
