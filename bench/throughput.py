"""Benchmark 1: image-embedding throughput, vistas over HTTP vs transformers eager in-process.

Both sides start from the same encoded photos and include their preprocessing:
  * transformers: `SiglipImageProcessorPil` (torchvision-free) + `SiglipVisionModel` (eager PyTorch, its default
    attention), batches of `concurrency` images, `torch.set_num_threads(threads)`;
  * vistas: `vistas serve` (onnxruntime, `threads` intra-op threads) answering `concurrency`
    concurrent clients that each POST one image to /v1/embed, fp32 and int8 bundles.
"""

from __future__ import annotations

import time

from vistas.bench.harness import b64, concurrent_throughput, interleaved, photos, served


def _hf_images_per_second(model, processor, images, batch: int) -> float:
    import torch

    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            pixels = processor(images=images[i : i + batch], return_tensors="pt")["pixel_values"]
            _ = model(pixel_values=pixels).pooler_output  # transformers 5: .pooler_output, the embedding
    return len(images) / (time.perf_counter() - t0)


def bench_throughput(model, threads: int, concurrency: int = 8, requests: int = 32, rounds: int = 3) -> dict:
    import io

    import torch
    from PIL import Image
    from transformers import SiglipImageProcessorPil

    torch.set_num_threads(threads)
    h, w = model.image_size
    blobs = photos(requests)
    bodies = [{"images": [b64(b)]} for b in blobs]
    hf = model.hf_vision_model()
    processor = SiglipImageProcessorPil(size={"height": h, "width": w})
    pil = [Image.open(io.BytesIO(b)).convert("RGB") for b in blobs]
    _hf_images_per_second(hf, processor, pil[:concurrency], concurrency)  # warm-up

    with served(model.bundle, threads) as fp32_url, served(model.bundle_int8, threads) as int8_url:
        measured = interleaved(
            {
                "transformers_eager": lambda: _hf_images_per_second(hf, processor, pil, concurrency),
                "vistas_http_fp32": lambda: concurrent_throughput(fp32_url, bodies, concurrency),
                "vistas_http_int8": lambda: concurrent_throughput(int8_url, bodies, concurrency),
            },
            rounds,
        )
    base = measured["transformers_eager"]
    return {
        "name": "1. image embedding throughput (img/s)",
        "model": model.name,
        "threads": threads,
        "concurrency": concurrency,
        "images": requests,
        **measured,
        "ratio": measured["vistas_http_fp32"] / base,
        "ratio_int8": measured["vistas_http_int8"] / base,
        "target": ">= 1.5 x transformers eager",
    }
