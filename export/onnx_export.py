"""Checkpoint -> bundle: one ONNX graph per tower, verified against PyTorch before it is written.

    vistas export runs/siglip/final build/bundle

The graphs take preprocessed tensors (`pixel_values` (B, 3, H, W), `input_ids` (B, L)) and
return L2-normalised embeddings, so serving only decodes, resizes and tokenizes.
Batch is the one dynamic axis; H and W are fixed by the preprocessing spec and checked in the
exported graph (the dynamo exporter can merge equal dims it believes identical).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from training.checkpoint import load_checkpoint
from vistas.bundle import EMBED_OUTPUT, IMAGE_INPUT, TEXT_INPUT, BundleSpec, save_bundle_spec, space_id

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4  # max abs difference of fp32 embeddings, onnxruntime vs torch


class ExportParityError(RuntimeError):
    pass


class _ImageTower(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):  # (B, 3, H, W) -> (B, D)
        return self.model.encode_image(pixel_values, normalize=True)


class _TextTower(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):  # (B, L) -> (B, D)
        return self.model.encode_text(input_ids, normalize=True)


def _export(module: torch.nn.Module, example: torch.Tensor, input_name: str, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(
        module,
        (example,),
        str(path),
        dynamo=True,
        input_names=[input_name],
        output_names=[EMBED_OUTPUT],
        dynamic_shapes=({0: batch},),
        external_data=False,
        verbose=False,
    )


def _check_input_dims(path: Path, expected: list) -> None:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    if dims != expected:
        raise ExportParityError(f"{path.name}: exported input dims {dims} != expected {expected}")


def _max_abs_diff(path: Path, module: torch.nn.Module, inputs: torch.Tensor, input_name: str) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run([EMBED_OUTPUT], {input_name: inputs.numpy()})[0]
    with torch.no_grad():
        want = module(inputs).numpy()
    if got.shape != want.shape:
        raise ExportParityError(f"{path.name}: onnx output shape {got.shape} != torch {want.shape}")
    return float(np.abs(got - want).max())


def _default_name(checkpoint: Path) -> str:
    """runs/siglip/final -> "siglip"; runs/x/checkpoints/step_000100 -> "step_000100"."""
    return checkpoint.resolve().parent.name if checkpoint.name == "final" else checkpoint.name


def export_checkpoint(
    checkpoint: str | Path, out_dir: str | Path, *, name: str | None = None, tolerance: float = PARITY_TOLERANCE
) -> BundleSpec:
    """Write a bundle to `out_dir`; raises ExportParityError (and writes nothing) if parity fails."""
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    model, config, preprocess = load_checkpoint(checkpoint)
    model.eval()
    img, txt = preprocess.image, preprocess.text
    gen = torch.Generator().manual_seed(0)

    with tempfile.TemporaryDirectory(prefix="vistas-export-") as tmp:
        tmp = Path(tmp)
        image_tower, text_tower = _ImageTower(model).eval(), _TextTower(model).eval()
        vocab = config["text"]["vocab_size"]
        _export(image_tower, torch.randn(2, 3, img.height, img.width, generator=gen), IMAGE_INPUT, tmp / "image_encoder.onnx")
        _export(text_tower, torch.randint(0, vocab, (2, txt.length), generator=gen), TEXT_INPUT, tmp / "text_encoder.onnx")
        _check_input_dims(tmp / "image_encoder.onnx", ["batch", 3, img.height, img.width])
        _check_input_dims(tmp / "text_encoder.onnx", ["batch", txt.length])

        # Parity on inputs the export never saw, at a batch size it was not traced with.
        pixels = torch.rand(5, 3, img.height, img.width, generator=gen) * 2 - 1
        ids = torch.randint(0, vocab, (5, txt.length), generator=gen)
        parity = {
            "image_max_abs_diff": _max_abs_diff(tmp / "image_encoder.onnx", image_tower, pixels, IMAGE_INPUT),
            "text_max_abs_diff": _max_abs_diff(tmp / "text_encoder.onnx", text_tower, ids, TEXT_INPUT),
        }
        for tower, diff in parity.items():
            if not diff <= tolerance:
                raise ExportParityError(
                    f"{tower}={diff:.3g} exceeds the tolerance {tolerance:g}: the ONNX graph does not "
                    "reproduce the PyTorch model, so no bundle was written. Report this with the checkpoint's config.json."
                )
        shutil.copyfile(checkpoint / txt.tokenizer_file, tmp / txt.tokenizer_file)
        spec = BundleSpec(
            name=name or _default_name(checkpoint),
            family=config.get("family", "siglip"),
            embed_dim=int(config["embed_dim"]),
            logit_scale=float(model.t.detach().exp()),
            logit_bias=float(model.b.detach()),
            preprocess=preprocess,
            space_id=space_id([checkpoint / "model.safetensors"], preprocess),
            parity=parity,
        )
        save_bundle_spec(spec, tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(tmp, out_dir)
    log.info("wrote bundle %s (parity %s)", out_dir, parity)
    return spec


