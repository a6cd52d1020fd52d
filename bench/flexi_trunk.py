"""Benchmark 7: a FlexiViT bundle as one graph per patch size, or a stem per size + one shared trunk?

Issue 14 leaves the export layout to a measurement: "a small stem graph per patch size plus one
trunk graph with a dynamic token axis, or one graph per patch size if you measure that the trunk
sharing costs more than it saves". What sharing would save is the trunk's weights, once per extra
patch size (disk, and the memory of every loaded session); what it may cost is speed: two
onnxruntime calls per batch with the tokens crossing between them, and a trunk planned for any
token count instead of a static one.

The model is bench 5's B/16-sized FlexiViT at 240 px (random weights; bench/flexi.py), whose
per-size graphs `vistas export --patch-sizes` writes. The shared layout is exported here from the
same checkpoint: per patch size a stem graph (pixels -> tokens with their position embedding,
`ViT.stem_tokens`) and one trunk graph (tokens (B, N, D), N dynamic -> embedding, `ViT.trunk`),
checked against the per-size graph (<= 1e-4). The row reports images/s of both at each patch
size (batch 8, interleaved, medians) and the bytes on disk of each layout.

    vistas bench --only 7
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from vistas.bench.flexi import IMAGE, SIZES, flexi_b16_bundle
from vistas.bench.harness import interleaved, median_seconds


def export_shared(checkpoint: Path, out: Path, sizes: tuple[int, ...]) -> dict[str, Path]:
    """Stem graphs per patch size and one trunk graph with a dynamic token axis -> their paths."""
    import torch

    from vistas.export.quiet import quiet_third_party
    from vistas.training.checkpoint import load_checkpoint

    model, _, pre = load_checkpoint(checkpoint)
    vit = model.eval().image

    class Stem(torch.nn.Module):
        def __init__(self, p: int):
            super().__init__()
            self.vit, self.p = vit, p  # a submodule: the exporter traces parameters it owns

        def forward(self, pixels):  # (B, 3, H, W) -> (B, N, D)
            return self.vit.stem_tokens(pixels, self.p)

    class Trunk(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vit = vit

        def forward(self, tokens):  # (B, N, D) -> (B, D), L2-normalised as the bundle's graphs are
            return torch.nn.functional.normalize(self.vit.trunk(tokens)[0], dim=-1)

    batch = torch.export.Dim("batch", min=1, max=4096)
    # At the checkpoint's own image size: each stem graph is for one patch grid.
    pixels = torch.randn(2, 3, pre.image.height, pre.image.width)
    paths = {}
    with quiet_third_party():
        for p in sizes:
            paths[f"stem_p{p}"] = out / f"stem_p{p}.onnx"
            torch.onnx.export(Stem(p).eval(), (pixels,), str(paths[f"stem_p{p}"]), dynamo=True,
                              input_names=["pixel_values"], output_names=["tokens"], dynamic_shapes=({0: batch},),
                              verbose=False)
        # Traced with a token count that is none of the patch sizes', so no size is baked in.
        tokens = torch.export.Dim("tokens", min=1, max=4096)
        paths["trunk"] = out / "trunk.onnx"
        torch.onnx.export(Trunk().eval(), (torch.randn(2, 50, vit.config.width),), str(paths["trunk"]), dynamo=True,
                          input_names=["tokens"], output_names=["embeddings"],
                          dynamic_shapes=({0: batch, 1: tokens},), verbose=False)
    return paths


def _bytes(paths) -> int:
    """Bytes of the graphs, their external weights (`NAME.onnx.data`) included."""
    files = [f for p in paths for f in (p, p.with_name(p.name + ".data")) if f.exists()]
    return sum(f.stat().st_size for f in files)


def bench_flexi_trunk(cache: Path, threads: int, batch: int = 8, rounds: int = 3) -> dict:
    import onnxruntime as ort

    from vistas.bundle import load_bundle_spec

    bundle = flexi_b16_bundle(cache)
    spec = load_bundle_spec(bundle)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1

    def session(path: Path):
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    pixels = np.random.default_rng(0).uniform(-1, 1, (batch, 3, IMAGE, IMAGE)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="vistas-bench-trunk-") as tmp:
        shared = export_shared(bundle.parent / "checkpoint", Path(tmp), SIZES)
        full = {p: session(bundle / spec.files[spec.role(spec.image_tower(p))]) for p in SIZES}
        stems = {p: session(shared[f"stem_p{p}"]) for p in SIZES}
        trunk = session(shared["trunk"])

        def run_full(p):
            return full[p].run(None, {"pixel_values": pixels})[0]

        def run_shared(p):
            tokens = stems[p].run(None, {"pixel_values": pixels})[0]
            return trunk.run(None, {"tokens": tokens})[0]

        parity = max(float(np.abs(run_full(p) - run_shared(p)).max()) for p in SIZES)
        if not parity <= 1e-4:
            raise RuntimeError(f"the shared-trunk graphs differ from the per-size graphs by {parity:.3g}")

        def ips(fn, p) -> float:
            return batch / median_seconds(lambda: fn(p), repeats=1, warmup=1)

        measures = {}
        for p in SIZES:
            measures[f"full_p{p}"] = lambda p=p: ips(run_full, p)
            measures[f"shared_p{p}"] = lambda p=p: ips(run_shared, p)
        measured = interleaved(measures, rounds)
        full_bytes = _bytes([bundle / spec.files[spec.role(spec.image_tower(p))] for p in SIZES])
        shared_bytes = _bytes(shared.values())
    return {
        "name": f"FlexiViT B/16 @ {IMAGE}px: per-size graphs vs stems + shared trunk, batch {batch}, {threads} threads",
        **{f"img_per_s_p{p}_per_size": round(measured[f"full_p{p}"], 2) for p in SIZES},
        **{f"img_per_s_p{p}_shared": round(measured[f"shared_p{p}"], 2) for p in SIZES},
        **{f"shared_over_per_size_p{p}": round(measured[f"shared_p{p}"] / measured[f"full_p{p}"], 3) for p in SIZES},
        "mb_per_size_graphs": round(full_bytes / 1e6, 1),
        "mb_stems_plus_trunk": round(shared_bytes / 1e6, 1),
        "max_abs_diff": parity,
    }
