"""Benchmark 4: achieved GFLOP/s of the image tower vs a measured matrix-multiply rate.

FLOPs are counted as 2 x multiply-accumulates of the matrix products (what `torch.utils
.flop_counter` counts; LayerNorm, softmax and GELU are left out, ~1 % of a ViT's work). A
B/16 at 224 px is 35.4 GFLOP per image. The reference rate is torch's fp32 matmul of two
2048 x 2048 matrices on the same threads; a bf16 matmul is measured too, to see whether that
reduced precision could pay on this CPU (on AVX2-only CPUs it is emulated and far slower).
"""

from __future__ import annotations

import numpy as np

from vistas.bench.harness import interleaved, median_seconds


def vit_image_gflop(image_config: dict, height: int, width: int) -> float:
    """GFLOP of one image through vistas' ViT (training/models/vit.py): stem, blocks, MAP head, head."""
    d, m, depth, p = image_config["width"], image_config["mlp_dim"], image_config["depth"], image_config["patch_size"]
    n = (height // p) * (width // p)  # tokens
    if image_config.get("stem", "patch") == "conv":  # stride-2 3x3 convolutions, then a 1x1 to the width
        from vistas.training.models.conv_stem import conv_stem_channels

        macs, c_in, h, w = 0, 3, height // p * p, width // p * p
        for c in conv_stem_channels(d, p):
            h, w = (h + 1) // 2, (w + 1) // 2
            macs += h * w * 9 * c_in * c
            c_in = c
        macs += n * c_in * d
    elif image_config.get("stem", "patch") == "hybrid":  # two 3x3 convolutions to a stride-2 map, then its patches
        from vistas.training.models.hybrid_stem import hybrid_stem_flops

        macs = hybrid_stem_flops((height, width), p, d) // 2
    else:
        macs = n * (p * p * 3) * d  # patch embedding
    macs += depth * (n * 4 * d * d + n * 2 * d * m + 2 * n * n * d)  # q,k,v,out; fc1,fc2; QK^T and AV
    if image_config.get("pool", "map") == "map":
        macs += 2 * d * d + 2 * n * d * d + 2 * n * d + 2 * d * m  # probe q + out; k,v of n tokens; attention; MLP
    if image_config.get("head_dim"):
        macs += d * image_config["head_dim"]
    return 2 * macs / 1e9


def matmul_gflops(threads: int, size: int = 2048, dtype: str = "float32", repeats: int = 5) -> float:
    import torch

    torch.set_num_threads(threads)
    dt = getattr(torch, dtype)
    a, b = torch.randn(size, size, dtype=dt), torch.randn(size, size, dtype=dt)
    seconds = median_seconds(lambda: a @ b, repeats)
    return 2 * size**3 / seconds / 1e9


def bench_flops(model, threads: int, batch: int = 8, rounds: int = 3) -> dict:
    """Image tower img/s (bare onnxruntime, fp32 and int8) -> GFLOP/s vs torch's matmul rate."""
    from vistas.inference.onnx_runtime import OnnxRuntime

    h, w = model.image_size
    gflop = vit_image_gflop(model.image_config, h, w)
    pixels = np.random.default_rng(0).uniform(-1, 1, (batch, 3, h, w)).astype(np.float32)
    runtimes = {
        "fp32": OnnxRuntime(model.bundle, threads=threads, max_batch=batch),
        "int8": OnnxRuntime(model.bundle_int8, threads=threads, max_batch=batch),
    }
    for rt in runtimes.values():
        rt.run("image", {"pixel_values": pixels})  # first-call allocations out of the timing

    def images_per_second(rt) -> float:
        return batch / median_seconds(lambda: rt.run("image", {"pixel_values": pixels}), repeats=1, warmup=0)

    measured = interleaved(
        {"matmul_fp32": lambda: matmul_gflops(threads), **{k: (lambda rt=rt: images_per_second(rt)) for k, rt in runtimes.items()}},
        rounds,
    )
    # Once and small: without native bf16 (AVX2-only CPUs) torch emulates it ~70x slower than fp32.
    measured["matmul_bf16"] = matmul_gflops(threads, size=512, dtype="bfloat16", repeats=1)
    peak = measured["matmul_fp32"]
    return {
        "name": "4. image tower GFLOP/s vs fp32 matmul",
        "model": model.name,
        "threads": threads,
        "batch": batch,
        "gflop_per_image": round(gflop, 3),
        "matmul_fp32_gflops": peak,
        "matmul_bf16_gflops": measured["matmul_bf16"],
        "onnx_fp32_img_per_s": measured["fp32"],
        "onnx_fp32_gflops": measured["fp32"] * gflop,
        "onnx_int8_img_per_s": measured["int8"],
        "onnx_int8_fp32_equivalent_gflops": measured["int8"] * gflop,
        "ratio": measured["fp32"] * gflop / peak,
        "target": ">= 0.70 (fp32 graph)",
    }
