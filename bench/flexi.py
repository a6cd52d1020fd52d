"""Benchmark 5: FlexiViT's speed knob, a B/16-sized model at 240 px at patch sizes 16, 20, 30, 48.

One random-weight SigLIP B/16 tower (86M parameters; random weights run every FLOP of trained
ones) exported as a FlexiViT bundle (`vistas export --patch-sizes`), cached under build/bench/.
Each patch size's graph runs in onnxruntime in-process, batch 8, the sizes interleaved; the
row reports images/s per size and, for p30 : p16, the throughput ratio against the FLOP ratio
(issue 14 asks >= 0.8 x): how much of the compute a coarser patch saves turns into speed.

    vistas bench --only 5
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vistas.bench.harness import interleaved, median_seconds

SIZES = (16, 20, 30, 48)
IMAGE = 240
_KEY = "flexi-v1"


def flexi_b16_bundle(cache: Path) -> Path:
    """A random-weight B/16 SigLIP at 240 px exported at every patch size of SIZES (cached)."""
    import torch

    from vistas.bench.models import _tokenizer
    from vistas.bundle import Preprocess
    from vistas.export.onnx_export import export_checkpoint
    from vistas.images import ImageSpec
    from vistas.tokenizer import TextSpec
    from vistas.training.checkpoint import save_checkpoint
    from vistas.training.models.siglip import SigLIP, SigLIPConfig
    from vistas.training.models.text import TextConfig
    from vistas.training.models.vit import ViTConfig

    root = cache / "flexivit-b16-240"
    out, stamp = root / "bundle", root / "bundle" / "bench_key.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == {"key": _KEY}:
        return out
    image = ViTConfig.from_variant("B/16", IMAGE)
    text = TextConfig(vocab_size=64, length=16, width=128, depth=1, mlp_dim=256, heads=2, head_dim=image.out_dim)
    config = SigLIPConfig(image=image, text=text, embed_dim=image.out_dim)
    torch.manual_seed(0)
    model = SigLIP(config).eval()
    pre = Preprocess(image=ImageSpec(height=IMAGE, width=IMAGE, patch_size=16), text=TextSpec(length=16, pad_id=0, eos_id=1))
    (root / "tokenizer").mkdir(parents=True, exist_ok=True)
    _tokenizer(root / "tokenizer")
    save_checkpoint(root / "checkpoint", model, config.to_dict(), pre, root / "tokenizer")
    export_checkpoint(root / "checkpoint", out, name="flexivit-b16-240", patch_sizes=list(SIZES))
    stamp.write_text(json.dumps({"key": _KEY}))
    return out


def bench_flexi(cache: Path, threads: int, batch: int = 8, rounds: int = 3) -> dict:
    from vistas.bundle import load_bundle_spec
    from vistas.inference.onnx_runtime import OnnxRuntime

    bundle = flexi_b16_bundle(cache)
    spec = load_bundle_spec(bundle)
    rt = OnnxRuntime(bundle, threads=threads, max_batch=batch)
    pixels = np.random.default_rng(0).uniform(-1, 1, (batch, 3, IMAGE, IMAGE)).astype(np.float32)
    towers = {p: spec.image_tower(p) for p in SIZES}
    for tower in towers.values():
        rt.run(tower, {"pixel_values": pixels})  # first-call allocations out of the timing

    def ips(tower: str) -> float:
        return batch / median_seconds(lambda: rt.run(tower, {"pixel_values": pixels}), repeats=1, warmup=0)

    measured = interleaved({f"p{p}": (lambda t=t: ips(t)) for p, t in towers.items()}, rounds)
    flops = {p: spec.patch_sizes[p]["flops"] for p in SIZES}
    speed_ratio = measured["p30"] / measured["p16"]
    flop_ratio = flops[16] / flops[30]
    return {
        "name": f"FlexiViT B/16 @ {IMAGE}px, onnxruntime fp32, batch {batch}, {threads} threads",
        **{f"img_per_s_p{p}": round(measured[f"p{p}"], 2) for p in SIZES},
        **{f"gflop_p{p}": round(flops[p] / 1e9, 2) for p in SIZES},
        "p30_over_p16_speed": round(speed_ratio, 2),
        "p30_over_p16_flops": round(flop_ratio, 2),
        "speed_share_of_flop_ratio": round(speed_ratio / flop_ratio, 2),
    }
