"""The SDK installs and works alone: `pip install ./clients` into a fresh venv brings httpx and numpy only.

The venv is made from this interpreter without --system-site-packages, so nothing of this
checkout's environment leaks in; the check runs in it with `python -I` against a real vistas
server (the tiny bundle under uvicorn in this process). A server dependency added to
clients/pyproject.toml, or an import of one inside vistas_client, fails this test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support.live_server import running_server
from support.tiny_bundle import DIM, build_bundle

CLIENTS = Path(__file__).resolve().parents[2] / "clients"
SERVER_SIDE = ["torch", "fastapi", "onnxruntime", "faiss", "pydantic", "starlette", "uvicorn", "vistas"]

# Runs inside the fresh venv and prints one JSON object.
CHECK = textwrap.dedent(
    """
    import importlib.metadata as md, importlib.util, json, re, sys

    import vistas_client
    from vistas_client import Client

    def norm(name):  # PEP 503 name
        return re.sub(r"[-_.]+", "-", name).lower()

    def requires(dist):  # the distributions `dist` needs, its extras left out
        reqs = md.distribution(dist).requires or []
        return {norm(re.match(r"[A-Za-z0-9._-]+", r).group()) for r in reqs if not re.search(r"extra\\s*==", r)}

    installed = {norm(d.metadata["Name"]) for d in md.distributions()}
    closure, todo = set(), ["httpx", "numpy"]
    while todo:  # what httpx and numpy need, transitively, as far as it is installed
        name = todo.pop()
        if name in installed and name not in closure:
            closure.add(name)
            todo += requires(name)

    with Client(sys.argv[1], max_retries=0) as client:
        result = client.embed_texts(["a photo of a red square"])
    vectors = result.text_array()
    print(json.dumps({
        "sdk_file": vistas_client.__file__,
        "importable": [m for m in sys.argv[2:] if importlib.util.find_spec(m) is not None],
        "sdk_requires": sorted(requires("vistas-client")),
        "unexpected": sorted(installed - closure - {"vistas-client", "pip", "setuptools"}),
        "dim": result.dim,
        "shape": list(vectors.shape),
        "norm": float((vectors**2).sum()) ** 0.5,
    }))
    """
)


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    from vistas.serving.app import create_app
    from vistas.serving.settings import Settings

    bundle = build_bundle(tmp_path_factory.mktemp("bundle") / "tiny", "tiny")
    with running_server(create_app(Settings(bundles=[str(bundle)], threads=1))) as live:
        yield live.url


def run(cmd: list, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_sdk_installs_and_runs_alone(tmp_path, server_url):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=tmp_path, timeout=120)
    python = venv / "bin" / "python"
    # pip builds a local directory in place: a copy keeps build/ out of the checkout, and a stale
    # build/lib there (files since deleted) out of what gets installed.
    skip = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    source = shutil.copytree(CLIENTS, tmp_path / "clients", ignore=skip)
    run([python, "-m", "pip", "install", "-q", source], cwd=tmp_path, timeout=600)
    (tmp_path / "check.py").write_text(CHECK)
    out = run([python, "-I", tmp_path / "check.py", server_url, *SERVER_SIDE], cwd=tmp_path, timeout=120)
    report = json.loads(out.stdout.strip().splitlines()[-1])

    assert Path(report["sdk_file"]).is_relative_to(venv)  # the installed copy, not this checkout
    assert report["sdk_requires"] == ["httpx", "numpy"]
    assert report["importable"] == [], "server packages in the SDK's venv"
    assert report["unexpected"] == [], "distributions beyond httpx's and numpy's dependencies"
    assert report["dim"] == DIM and report["shape"] == [1, DIM]
    assert report["norm"] == pytest.approx(1.0, abs=1e-5)
