"""The `vistas` command line as a user runs it: real subprocesses, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from vistas.index import Collections

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "models" / "siglip-shapes-digits"


def vistas(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vistas.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_index_build_on_a_folder_with_a_corrupt_file(tmp_path, quick_bundle):
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    for i, color in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        Image.new("RGB", (30 + i, 40), color).save(src / ("sub" if i == 2 else "") / f"img{i}.png")
    (src / "img1.txt").write_text("a green square")
    (src / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    out = tmp_path / "idx"
    res = vistas("index", "build", "--bundle", str(quick_bundle), "--source", str(src), "--out", str(out), "--no-progress")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "indexed 3 items" in res.stdout and "skipped 1 bad items" in res.stdout, res.stdout
    report = json.loads((out / "default" / "build_report.json").read_text())
    assert report["failed"] == 1 and "corrupt.jpg" in report["failure_examples"][0]
    with Collections(out) as colls:
        coll = colls.get("default")
        assert coll.count == 3
        assert coll.get("img1.png")["metadata"] == {"caption": "a green square"}
        assert coll.get("sub/img2.png") is not None


def test_index_build_on_a_missing_source_is_a_clear_error(tmp_path, quick_bundle):
    res = vistas("index", "build", "--bundle", str(quick_bundle), "--source", str(tmp_path / "nope"), "--out", str(tmp_path / "i"))
    assert res.returncode == 2 and "error" in res.stderr and "Traceback" not in res.stderr


def test_eval_of_the_bundle_matches_the_torch_eval(quick_run, quick_bundle):
    """`vistas eval` measures the ONNX bundle; it must agree with the PyTorch model's figures."""
    from vistas.training.config import load_config
    from vistas.training.train import evaluate_checkpoint

    config = f"{ROOT}/configs/siglip_shapes_digits.py:quick=True,eval_size=60"
    res = vistas("eval", str(quick_bundle), "--config", config)
    assert res.returncode == 0, res.stderr[-2000:]
    onnx_metrics = json.loads(res.stdout)
    torch_metrics = evaluate_checkpoint(quick_run / "final", load_config(config))
    assert onnx_metrics.keys() == torch_metrics.keys()
    for k, v in torch_metrics.items():
        assert onnx_metrics[k] == pytest.approx(v, abs=0.02), k  # an argmax may flip on a near-tie


def test_export_cli_prints_parity(tmp_path, quick_run):
    res = vistas("export", str(quick_run / "final"), str(tmp_path / "b"), "--name", "cli-model")
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout[res.stdout.index("{"):])
    assert out["name"] == "cli-model" and max(out["parity"].values()) <= 1e-4


def test_demo_prepares_gallery_and_index(tmp_path):
    res = vistas("demo", "--no-serve", "--workdir", str(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    with Collections(tmp_path / "index") as colls:
        assert colls.get("default").count == 180 + 60 + 359  # vistas.demo.GALLERY_SIZES + the digits test split
