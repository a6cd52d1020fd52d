"""The benchmarks run (`--quick`, never judged on speed) and count FLOPs right."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from vistas.bench.flops import vit_image_gflop
from vistas.cli import main as cli
from vistas.training.models.vit import ViT, ViTConfig


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
    [(ViTConfig(), (32, 32)), (ViTConfig(pool="gap", head_dim=64), (32, 48)), (ViTConfig(depth=2, patch_size=4), (16, 24))],
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
