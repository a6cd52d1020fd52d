"""Model source -> bundle: one ONNX graph per tower, verified against PyTorch before it is written.

    vistas export runs/siglip/final build/bundle
    vistas export hf:google/siglip-base-patch16-224 build/siglip-b16
    vistas export npz:webli_en_b16_224_63724782.npz build/b16 --processor hf:google/siglip-base-patch16-224

The graphs take preprocessed tensors and return L2-normalised embeddings, so serving only
decodes, resizes and tokenizes. Image tower inputs follow the ImageSpec (`vistas.inputs`):
`pixel_values` (B, 3, H, W) for fixed-size models; for SigLIP 2 NaFlex `pixel_values`
(B, N, p*p*3), `pixel_attention_mask` (B, N) and `spatial_shapes` (B, 2), with the
position embedding resized per image inside the graph. Text: `input_ids` (B, L).
Batch is the one dynamic axis; the other dims are fixed by the spec and checked in the
exported graph (the dynamo exporter can merge equal dims it believes identical).
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from vistas.bundle import (
    EMBED_OUTPUT,
    IMAGE_INPUT,
    MASK_INPUT,
    SHAPES_INPUT,
    TEXT_INPUT,
    BundleSpec,
    flexi_role,
    flexi_tower,
    save_bundle_spec,
    space_id,
)
from vistas.export.quiet import quiet_third_party
from vistas.images import ImageSpec
from vistas.naflex import size_for_patch_budget
from vistas.permissions import publish_tree
from vistas.training.convert.sources import LoadedModel, load_source
from vistas.training.models.flexi import check_patch_size, patch_flops, seq_len
from vistas.training.models.hybrid_stem import hybrid_stem_flops

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4  # max abs difference of fp32 embeddings, onnxruntime vs torch
# A protobuf message holds at most 2 GiB: towers with more weight bytes than this keep their
# weights in `<graph>.onnx.data` next to the graph (So400m's towers are 1.7 GB each, Giant's more).
EXTERNAL_DATA_BYTES = 1_500_000_000
# Aspect ratios (height / width) of the NaFlex parity inputs: wide, tall, square, extreme.
NAFLEX_ASPECTS = (0.5, 3.0, 1.0, 0.1, 1.7)


class ExportParityError(RuntimeError):
    pass


class _ImageTower(torch.nn.Module):
    """`patch_size` other than the model's (FlexiViT): the PI-resized kernel and the resized
    position grid are functions of the weights only, so they fold into the graph's constants."""

    def __init__(self, model, patch_size: int | None = None):
        super().__init__()
        self.model, self.patch_size = model, patch_size

    def forward(self, pixel_values):  # (B, 3, H, W) -> (B, D)
        return self.model.encode_image(pixel_values, normalize=True, patch_size=self.patch_size)


class _NaFlexTower(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values, pixel_attention_mask, spatial_shapes):  # (B, N, P), (B, N), (B, 2) -> (B, D)
        return self.model.encode_naflex(pixel_values, pixel_attention_mask, spatial_shapes, normalize=True)


class _TextTower(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):  # (B, L) -> (B, D)
        return self.model.encode_text(input_ids, normalize=True)


def naflex_example(spec: ImageSpec, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """NaFlex inputs for images of the NAFLEX_ASPECTS in turn: random real patches, zero padding."""
    n, p = spec.max_num_patches, spec.patch_size
    pixels = torch.zeros(batch, n, p * p * 3)
    mask = torch.zeros(batch, n, dtype=torch.int32)
    shapes = torch.zeros(batch, 2, dtype=torch.int64)
    for i in range(batch):
        aspect = NAFLEX_ASPECTS[i % len(NAFLEX_ASPECTS)]
        height, width = size_for_patch_budget(round(100 * aspect), 100, p, n)
        h, w = height // p, width // p
        pixels[i, : h * w] = torch.rand(h * w, p * p * 3, generator=gen) * 2 - 1
        mask[i, : h * w] = 1
        shapes[i] = torch.tensor([h, w])
    return {IMAGE_INPUT: pixels, MASK_INPUT: mask, SHAPES_INPUT: shapes}


def _image_io(model, spec: ImageSpec, batch: int, gen: torch.Generator) -> tuple[torch.nn.Module, dict, dict]:
    """-> (export wrapper, example inputs by name, expected graph input dims by name)."""
    if spec.mode == "naflex":
        n, dim = spec.max_num_patches, spec.patch_size * spec.patch_size * 3
        dims = {IMAGE_INPUT: ["batch", n, dim], MASK_INPUT: ["batch", n], SHAPES_INPUT: ["batch", 2]}
        return _NaFlexTower(model).eval(), naflex_example(spec, batch, gen), dims
    # rand in [-1, 1], the value range of every ImageSpec with SigLIP's mean = std = 0.5.
    pixels = torch.rand(batch, 3, spec.height, spec.width, generator=gen) * 2 - 1
    return _ImageTower(model).eval(), {IMAGE_INPUT: pixels}, {IMAGE_INPUT: ["batch", 3, spec.height, spec.width]}


def _export(module: torch.nn.Module, example: dict[str, torch.Tensor], path: Path, tower: torch.nn.Module) -> None:
    batch = torch.export.Dim("batch", min=1, max=4096)
    weight_bytes = sum(p.numel() * p.element_size() for p in tower.parameters())
    torch.onnx.export(
        module,
        tuple(example.values()),
        str(path),
        dynamo=True,
        input_names=list(example),
        output_names=[EMBED_OUTPUT],
        dynamic_shapes=tuple({0: batch} for _ in example),
        external_data=weight_bytes > EXTERNAL_DATA_BYTES,
        verbose=False,
    )


def _check_input_dims(path: Path, expected: dict[str, list]) -> None:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    found = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    if found != expected:
        raise ExportParityError(f"{path.name}: exported inputs {found} != expected {expected}")


def _max_abs_diff(path: Path, module: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run([EMBED_OUTPUT], {k: v.numpy() for k, v in inputs.items()})[0]
    with torch.no_grad():
        want = module(*inputs.values()).numpy()
    if got.shape != want.shape:
        raise ExportParityError(f"{path.name}: onnx output shape {got.shape} != torch {want.shape}")
    return float(np.abs(got - want).max())


def export_checkpoint(
    source: str | Path,
    out_dir: str | Path,
    *,
    name: str | None = None,
    tolerance: float = PARITY_TOLERANCE,
    processor: str | None = None,
    patch_sizes: list[int] | None = None,
) -> BundleSpec:
    """Write a bundle of `source` (see `vistas.training.convert.sources.load_source`) to `out_dir`;
    raises ExportParityError (and writes nothing) if parity fails. `patch_sizes`: a FlexiViT
    bundle (see `export_model`)."""
    with quiet_third_party():  # transformers' notes on the source's config, torch.onnx's on torchvision
        return export_model(load_source(source, processor=processor), out_dir, name=name, tolerance=tolerance,
                            patch_sizes=patch_sizes)


def export_model(
    loaded: LoadedModel, out_dir: str | Path, *, name: str | None = None, tolerance: float = PARITY_TOLERANCE,
    patch_sizes: list[int] | None = None,
) -> BundleSpec:
    """`patch_sizes` (fixed-size image models): a FlexiViT bundle with one image graph per patch
    size of the same weights (arXiv 2212.08013), each parity-checked; the preprocessing's patch
    size is always among them and keeps `image_encoder.onnx`. One graph per size rather than a
    shared trunk: each graph has static token counts that onnxruntime plans for, and the weights
    of a small model are cheap to repeat (bundle.json lists each size's tokens and FLOPs)."""
    out_dir = Path(out_dir)
    model, config, preprocess = loaded.model.eval(), loaded.config, loaded.preprocess
    img, txt = preprocess.image, preprocess.text
    flexi = _flexi_sizes(patch_sizes, img)
    if flexi and config.get("image", {}).get("stem") == "conv":
        raise ValueError("patch_sizes (a FlexiViT bundle) needs a patch map that PI-resize resizes (stem 'patch' or "
                         "'hybrid'); this model has a conv stem, which runs at its own patch size only")
    gen = torch.Generator().manual_seed(0)
    vocab = config["text"]["vocab_size"]

    with tempfile.TemporaryDirectory(prefix="vistas-export-") as tmp, quiet_third_party():
        tmp = Path(tmp)
        image_tower, image_example, image_dims = _image_io(model, img, 2, gen)
        text_tower = _TextTower(model).eval()
        _export(image_tower, image_example, tmp / "image_encoder.onnx", model.image)
        _export(text_tower, {TEXT_INPUT: torch.randint(0, vocab, (2, txt.length), generator=gen)},
                tmp / "text_encoder.onnx", model.text)
        _check_input_dims(tmp / "image_encoder.onnx", image_dims)
        _check_input_dims(tmp / "text_encoder.onnx", {TEXT_INPUT: ["batch", txt.length]})

        # Parity on inputs the export never saw, at a batch size it was not traced with.
        unseen_images = _image_io(model, img, 5, gen)[1]
        unseen_ids = {TEXT_INPUT: torch.randint(0, vocab, (5, txt.length), generator=gen)}
        parity = {
            "image_max_abs_diff": _max_abs_diff(tmp / "image_encoder.onnx", image_tower, unseen_images),
            "text_max_abs_diff": _max_abs_diff(tmp / "text_encoder.onnx", text_tower, unseen_ids),
        }
        flexi_info = {}
        for p in flexi:
            if p != img.patch_size:
                tower, role = _ImageTower(model, p).eval(), flexi_role(p)
                _export(tower, {IMAGE_INPUT: image_example[IMAGE_INPUT]}, tmp / f"{role}.onnx", model.image)
                _check_input_dims(tmp / f"{role}.onnx", image_dims)
                parity[f"image_p{p}_max_abs_diff"] = _max_abs_diff(tmp / f"{role}.onnx", tower, unseen_images)
            c = config["image"]
            flexi_info[p] = {
                "tower": "image" if p == img.patch_size else flexi_tower(p),
                "tokens": seq_len((img.height, img.width), p),
                "flops": patch_flops((img.height, img.width), p, c["width"], c["depth"], c["mlp_dim"],
                                     stem_flops=_stem_flops(c, (img.height, img.width), p)),
                "max_abs_diff": parity["image_max_abs_diff" if p == img.patch_size else f"image_p{p}_max_abs_diff"],
            }
        for tower, diff in parity.items():
            if not diff <= tolerance or math.isnan(diff):
                raise ExportParityError(
                    f"{tower}={diff:.3g} exceeds the tolerance {tolerance:g}: the ONNX graph does not "
                    "reproduce the PyTorch model, so no bundle was written. Report this with the checkpoint's config.json."
                )
        loaded.write_tokenizer(tmp)
        files = {"image_encoder": "image_encoder.onnx", "text_encoder": "text_encoder.onnx"}
        files |= {flexi_role(p): f"{flexi_role(p)}.onnx" for p in flexi if p != img.patch_size}
        for role, graph in list(files.items()):  # external weights travel with the bundle and are checked at load
            if (tmp / f"{graph}.data").is_file():
                files[f"{role}_data"] = f"{graph}.data"
        spec = BundleSpec(
            name=name or loaded.name,
            family=config.get("family", "siglip"),
            embed_dim=int(config["embed_dim"]),
            logit_scale=float(model.t.detach().exp()),
            logit_bias=float(model.b.detach()),
            preprocess=preprocess,
            space_id=space_id(loaded.weight_files, preprocess),
            files=files,
            parity=parity,
            patch_sizes=flexi_info,
        )
        save_bundle_spec(spec, tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(tmp, out_dir)
    publish_tree(out_dir)  # copytree kept the temp directory's 700: readable by the serving user too
    log.info("wrote bundle %s (parity %s)", out_dir, parity)
    return spec


def _stem_flops(image_config: dict, image_hw: tuple[int, int], patch_size: int) -> int | None:
    """The stem's FLOPs where it is not the linear patchify that `patch_flops` counts."""
    if image_config.get("stem", "patch") == "hybrid":
        return hybrid_stem_flops(image_hw, patch_size, image_config["width"])
    return None


def _flexi_sizes(patch_sizes: list[int] | None, img: ImageSpec) -> list[int]:
    """The sorted patch sizes of a FlexiViT export (the preprocessing's own added), or [] for none."""
    if not patch_sizes:
        return []
    if img.mode != "fixed":
        raise ValueError("patch_sizes (a FlexiViT bundle) needs a fixed-size image model; this one is NaFlex")
    sizes = sorted({int(p) for p in patch_sizes} | {img.patch_size})
    for p in sizes:
        check_patch_size((img.height, img.width), p)
    return sizes
