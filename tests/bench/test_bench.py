"""The benchmarks run (`--quick`, never judged on speed) and count FLOPs right."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from vistas.bench.flexi_policy import bench_flexi_policy
from vistas.bench.flops import vit_image_gflop
from vistas.cli import main as cli
from vistas.training.models.vit import ViT, ViTConfig

ROOT = Path(__file__).resolve().parents[2]


def test_quick_bench_runs_every_benchmark_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert cli(["bench", "--quick", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    names = [r["name"][:2] for r in report["results"]]
    assert names == ["1.", "2.", "3.", "4."] and report["quick"]
    for r in report["results"]:
        assert r["ratio"] > 0 and r["target"]
        numbers = [v for v in r.values() if isinstance(v, float)]
        assert all(v > 0 for v in numbers), r
    batching = report["results"][2]  # the compute ceiling: the model alone at the matmul rate
    assert batching["ceiling_ratio"] == pytest.approx(
        batching["matmul_fp32_gflops"] / batching["gflop_per_image"] / batching["sequential_req_per_s"], rel=1e-2
    )
    printed = capsys.readouterr().out
    assert "1. image embedding throughput" in printed and str(out) in printed


@pytest.mark.parametrize(
    "config,hw",
    [(ViTConfig(), (32, 32)), (ViTConfig(pool="gap", head_dim=64), (32, 48)), (ViTConfig(depth=2, patch_size=4), (16, 24)),
     (ViTConfig(depth=2, stem="conv"), (48, 40)), (ViTConfig(depth=2, stem="hybrid"), (48, 40))],
)
def test_vit_flops_formula_matches_torch_flop_counter(config: ViTConfig, hw: tuple[int, int]):
    # At its own patch grid, as an exported tower runs: a resized position embedding would be
    # computed here but folds into a constant in the ONNX graph, so the formula leaves it out.
    config = dataclasses.replace(config, posemb_grid=(hw[0] // config.patch_size, hw[1] // config.patch_size))
    with FlopCounterMode(display=False) as counter:
        ViT(config).eval()(torch.randn(1, 3, *hw))
    # torch's counter has no formula for the CPU kernel of scaled_dot_product_attention:
    # add the attention products (QK^T and AV: 2 x N^2 x D MACs per block) it leaves out.
    n = (hw[0] // config.patch_size) * (hw[1] // config.patch_size)
    attention = config.depth * 2 * (2 * n * n * config.width)
    if config.pool == "map":
        attention += 2 * (2 * n * config.width)  # the MAP probe's single query
    assert vit_image_gflop(config.to_dict(), *hw) * 1e9 == pytest.approx(counter.get_total_flops() + attention, rel=1e-9)


def test_flexi_policy_bench_overloads_both_policies_and_adaptive_goes_coarser():
    # A real `vistas serve` per policy, two seconds of load each: the row's shape, and that over
    # the fixed policy's capacity the adaptive one ran images at coarser patches than p=8. 3x, not
    # the benchmark's 2x: a capacity measured while the host's other load peaks must still overload.
    row = bench_flexi_policy(threads=2, duration=2.0, overload=3.0, capacity_requests=16)
    assert row["name"].startswith("6.") and row["offered_req_per_s"] == pytest.approx(3 * row["capacity_req_per_s"], abs=0.2)
    for policy in ("fixed", "adaptive"):
        assert 0 < row[f"{policy}_p50_ms"] <= row[f"{policy}_p99_ms"], row
        assert row[f"{policy}_failed"] == 0 and 0 <= row[f"{policy}_refused"] < 1 and row[f"{policy}_req_per_s"] > 0, row
        shares = [row[f"{policy}_share_p{p}"] for p in (8, 12, 16)]
        assert sum(shares) == pytest.approx(1, abs=0.002), row
    assert row["fixed_share_p8"] == 1 and row["fixed_digits_points_given_up"] == 0, row
    assert row["adaptive_share_p12"] + row["adaptive_share_p16"] > 0, row
    # p=12 and p=16 score below p=8 on seen shapes (bundle.json: 95.8 / 93.1 against 98.7 %); on digits
    # the distilled FlexiViT scores higher at the coarse sizes, so that figure may be negative.
    assert row["adaptive_shapes_seen_points_given_up"] > 0 and row["fixed_shapes_seen_points_given_up"] == 0, row


def test_shared_trunk_layout_reproduces_the_model_at_every_patch_size(tmp_path):
    """Bench 7's other export layout, on the committed FlexiViT: a stem graph per patch size and one
    trunk graph with a dynamic token axis give the model's embeddings (<= 1e-4) at every size."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    from vistas.bench.flexi_trunk import export_shared
    from vistas.training.checkpoint import load_checkpoint

    checkpoint = ROOT / "models" / "flexivit-shapes-digits" / "checkpoint"
    paths = export_shared(checkpoint, tmp_path, (8, 16))
    dims = [d.dim_param or d.dim_value for d in onnx.load(str(paths["trunk"])).graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] != dims[1] and all(isinstance(d, str) for d in dims[:2]) and dims[2] == 128, dims
    model, _, _ = load_checkpoint(checkpoint)
    pixels = np.random.default_rng(0).uniform(-1, 1, (3, 3, 48, 48)).astype(np.float32)
    trunk = ort.InferenceSession(str(paths["trunk"]), providers=["CPUExecutionProvider"])
    for p in (8, 16):
        stem = ort.InferenceSession(str(paths[f"stem_p{p}"]), providers=["CPUExecutionProvider"])
        tokens = stem.run(None, {"pixel_values": pixels})[0]
        assert tokens.shape == (3, (48 // p) ** 2, 128)
        got = trunk.run(None, {"tokens": tokens})[0]
        with torch.no_grad():
            want = model.eval().encode_image(torch.from_numpy(pixels), patch_size=p).numpy()
        np.testing.assert_allclose(got, want, atol=1e-4)
