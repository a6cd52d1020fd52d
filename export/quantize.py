"""Dynamic int8 quantisation of a bundle's graphs, with the accuracy it costs measured.

    vistas export runs/x/final build/bundle-int8 --quantize int8 [--eval-config configs/x.py]

onnxruntime's dynamic quantisation (weights int8 ahead of time, activations uint8 with a
scale computed per call) of every MatMul/Gemm that multiplies by a *weight*. Products of two
activations (attention's Q K^T and A V, ~4 % of a B/16's FLOPs) stay fp32: both operands
would be quantised on the fly, for little speed and a larger error.

The report that goes into bundle.json `quantization` and is printed:
  cosine_to_fp32   per tower, mean and min cosine between int8 and fp32 embeddings of the
                   eval images and texts (random inputs when there is no eval config), both
                   bundles run as serving runs them (`vistas.inference.model`)
  eval             each eval metric (`vistas eval`'s suites) for fp32, int8 and the change
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from vistas.bundle import TEXT_INPUT, BundleSpec, load_bundle_spec, save_bundle_spec
from vistas.export.quiet import quiet_third_party
from vistas.inference.model import ServedModel, load_model
from vistas.permissions import publish_tree

METHODS = ("int8",)


def quantize_graph(src: Path, dst: Path) -> int:
    """fp32 ONNX -> dynamic-int8 ONNX; returns how many MatMul/Gemm were quantised."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    graph = model.graph
    weights = {i.name for i in graph.initializer}
    nodes = [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm") and any(i in weights for i in n.input)]
    if not nodes:
        raise ValueError(f"{src.name} has no MatMul/Gemm with a weight: nothing to quantise")
    # The quantiser re-infers shapes strictly. The dynamo exporter's intermediate annotations can
    # disagree with inference (seen: a text tower whose head_dim != width), and they are optional.
    del graph.value_info[:]
    cleaned = dst.with_name(dst.name + ".fp32-tmp")
    onnx.save(model, str(cleaned))
    # reduce_range: 7-bit weights. x86 without VNNI (AVX2) multiplies u8 x s8 pairs into int16
    # lanes that saturate (onnxruntime's quantization docs); measured on the bundled model's digits
    # this is the difference between mean cosine 0.93 (min 0.52) and 0.9999 (min 0.998).
    # per_channel: one scale per output column, for columns of unequal range.
    try:
        quantize_dynamic(
            str(cleaned), str(dst), weight_type=QuantType.QInt8, nodes_to_quantize=nodes, per_channel=True, reduce_range=True
        )
    finally:
        cleaned.unlink(missing_ok=True)
    return len(nodes)


def _open(bundle: Path, threads: int | None) -> ServedModel:
    """A bundle as serving runs it (onnxruntime, CPU), for the report. Larger inputs run in chunks
    of serving's default inference batch: dynamic int8 scales activations per call, so a vector
    depends (slightly) on the rows it is computed with."""
    return load_model(str(bundle), threads=threads, providers=["CPUExecutionProvider"], max_batch=32)


def _cosines(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    cos = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"mean": float(cos.mean()), "min": float(cos.min()), "n": int(len(cos))}


def accuracy_report(
    fp32: ServedModel, int8: ServedModel, suites: Sequence | None, run_suites: Callable | None, seed: int = 0
) -> dict:
    """Cosine int8 vs fp32 per tower and, given eval suites, every metric for both."""
    if suites:
        images = [e.image for s in suites for e in s.examples][:2000]
        texts = [p for s in suites for name in s.class_names for p in s.prompts(name)][:2000]
        texts += [e.caption for s in suites for e in s.examples if getattr(e, "caption", None)][:1000]
        inputs = {"image": fp32.image_inputs(images), "text": fp32.text_inputs(texts)}
    else:  # no eval data: uniform noise images of the nominal size and random token ids
        rng = np.random.default_rng(seed)
        img, txt = fp32.spec.preprocess.image, fp32.spec.preprocess.text
        noise = [Image.fromarray(rng.integers(0, 256, (img.height, img.width, 3), dtype=np.uint8)) for _ in range(16)]
        ids = rng.integers(0, fp32.tokenizer.vocab_size, (64, txt.length))  # (64, L)
        inputs = {"image": fp32.image_inputs(noise), "text": {TEXT_INPUT: ids}}
    # The same tensors through both bundles (they share their preprocessing); a FlexiViT bundle's
    # image graph at every patch size ("image@p16") takes the same pixels as "image".
    towers = {t: inputs["image" if t.startswith("image") else t] for t in fp32.spec.towers}
    cos = {t: _cosines(fp32.runtime.run(t, x), int8.runtime.run(t, x)) for t, x in towers.items()}
    report: dict = {"cosine_to_fp32": cos}
    if suites and run_suites is not None:
        before = run_suites(fp32.embed_images, fp32.embed_texts, suites)
        after = run_suites(int8.embed_images, int8.embed_texts, suites)
        report["eval"] = {k: {"fp32": before[k], "int8": after[k], "change": after[k] - before[k]} for k in before}
    return report


def quantize_bundle(
    fp32_dir: Path, out_dir: Path, method: str = "int8", *, suites: Sequence | None = None,
    run_suites: Callable | None = None, threads: int | None = None,
) -> BundleSpec:
    """An fp32 bundle -> a quantised copy in `out_dir` with its report in bundle.json; returns its spec.

    The quantised bundle is its own embedding space: its vectors are close to fp32's, not equal.
    """
    if method not in METHODS:
        raise ValueError(f"unknown quantisation {method!r}; supported: {list(METHODS)}")
    spec = load_bundle_spec(fp32_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    shutil.copytree(fp32_dir, out_dir)
    quantised = {}
    with quiet_third_party():  # onnxruntime's advice for static quantization
        for role in map(spec.role, spec.towers):  # a FlexiViT bundle: the image graph of every patch size
            quantised[role] = quantize_graph(fp32_dir / spec.files[role], out_dir / spec.files[role])
    report = accuracy_report(_open(fp32_dir, threads), _open(out_dir, threads), suites, run_suites)
    report = {"method": "dynamic int8 (onnxruntime): weights 7-bit int8 per channel, activations uint8 per call",
              "quantized_matmuls": quantised, **report}
    space = "sha256:" + hashlib.sha256(f"{spec.space_id}|{method}".encode()).hexdigest()[:32]
    out = dataclasses.replace(spec, space_id=space, quantization=report)
    save_bundle_spec(out, out_dir)
    publish_tree(out_dir)  # copied from a temp directory (700): the modes the umask gives instead
    return out


def export_quantized(
    source: str | Path, out_dir: str | Path, method: str = "int8", *, name: str | None = None,
    eval_config: str | None = None, threads: int | None = None, processor: str | None = None,
    patch_sizes: list[int] | None = None,
) -> BundleSpec:
    """Any export source -> parity-checked fp32 export -> quantised bundle in `out_dir`, measured
    on the eval suites of the recipe `eval_config` (None: cosine on random inputs only).
    `patch_sizes`: a FlexiViT bundle, every patch size's graph quantised; with an eval config each
    size's int8 accuracy goes into bundle.json `patch_sizes` (`flexi_eval.measure_patch_sizes`)."""
    from vistas.export.onnx_export import export_checkpoint

    with tempfile.TemporaryDirectory(prefix="vistas-quantize-") as tmp:
        fp32 = Path(tmp) / "fp32"
        spec = export_checkpoint(source, fp32, name=name, processor=processor, patch_sizes=patch_sizes)
        suites, run_suites = None, None
        if eval_config:
            from vistas.training.batches import BatchMaker
            from vistas.training.config import load_config
            from vistas.training.evaluate import run_suites

            suites = BatchMaker(load_config(eval_config), spec.preprocess.image).eval_suites()
        out = quantize_bundle(fp32, Path(out_dir), method, suites=suites, run_suites=run_suites, threads=threads)
    if out.patch_sizes and eval_config:
        from vistas.export.flexi_eval import measure_patch_sizes

        measure_patch_sizes(out_dir, eval_config, threads=threads)
        out = load_bundle_spec(Path(out_dir))
    return out


def format_report(report: dict) -> str:
    """The report as a few readable lines (what `vistas export --quantize` prints)."""
    lines = [report["method"]]
    for tower, c in report["cosine_to_fp32"].items():
        lines.append(f"  {tower:<5} cosine to fp32: mean {c['mean']:.5f}, min {c['min']:.5f} over {c['n']} inputs")
    for metric, v in report.get("eval", {}).items():
        lines.append(f"  {metric:<28} fp32 {v['fp32']:.4f}  int8 {v['int8']:.4f}  change {v['change']:+.4f}")
    return "\n".join(lines)
