"""`vistas check-parity SOURCE`: vistas against transformers on fixed real inputs.

    vistas check-parity hf:google/siglip-base-patch16-224
    vistas check-parity npz:ckpt.npz --processor hf:DIR --reference hf:DIR

Three pipelines embed the same photos (scikit-image's, at several aspect ratios) and
captions, each with its own preprocessing:
  * transformers: the checkpoint's image processor and tokenizer, then SiglipModel /
    Siglip2Model (`get_image_features` / `get_text_features`, input_ids only, as
    big_vision trained it);
  * vistas torch: `vistas.inputs` + `vistas.tokenizer`, then the converted model;
  * vistas served: the exported ONNX bundle through `vistas.inference.model` (what `vistas serve` runs).
The report is the max abs difference of the L2-normalised embeddings per tower and of the
logits, vistas minus transformers; parity holds when every one is <= 1e-4.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vistas.inputs import image_inputs
from vistas.tokenizer import Tokenizer
from vistas.training.convert.sources import LoadedModel, load_source

TOLERANCE = 1e-4
CAPTIONS = (
    "a photo of an astronaut",
    "a cup of coffee on a table",
    "a cat lying on a rug.",
    "A ROCKET ON THE LAUNCH PAD!",
    "two dogs playing in the snow, at night",
    "",
)


def parity_images() -> list[Image.Image]:
    """Real photos (scikit-image) and crops of them: square, 3:2, tall, very wide, tiny."""
    from skimage import data

    astronaut, coffee = data.astronaut(), data.coffee()
    arrays = [astronaut, coffee, data.chelsea(), data.rocket(), astronaut[:, 200:328], coffee[150:210], coffee[:7, :5]]
    return [Image.fromarray(np.ascontiguousarray(a)) for a in arrays]


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def reference_embeddings(directory: Path, images, texts, length: int) -> dict[str, np.ndarray]:
    """transformers' own pipeline -> {"image": (B, D), "text": (T, D), "scale", "bias"}, normalised.

    A vision tower without its MAP head (vision_use_head=False) has no pooled output in
    transformers; its image embedding is the masked mean of the last hidden state, as
    Siglip*ForImageClassification pools it (vistas' pool="gap")."""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(directory, local_files_only=True).eval()
    pixels = AutoImageProcessor.from_pretrained(directory, local_files_only=True)(images, return_tensors="pt")
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    ids = tokenizer(list(texts), padding="max_length", max_length=length, truncation=True, return_tensors="pt")
    with torch.no_grad():
        vision = model.get_image_features(**pixels)
        if model.config.vision_config.vision_use_head:
            img = vision.pooler_output
        else:
            mask = pixels.get("pixel_attention_mask", torch.ones(vision.last_hidden_state.shape[:2]))[..., None]
            img = (vision.last_hidden_state * mask).sum(1) / mask.sum(1)
        txt = model.get_text_features(input_ids=ids["input_ids"]).pooler_output
        scale, bias = model.logit_scale.exp().item(), model.logit_bias.item()
    return {"image": _normalize(img.numpy()), "text": _normalize(txt.numpy()), "scale": scale, "bias": bias}


def torch_embeddings(loaded: LoadedModel, images, texts) -> dict[str, np.ndarray]:
    """vistas preprocessing + the converted PyTorch model."""
    with tempfile.TemporaryDirectory(prefix="vistas-parity-") as tmp:
        loaded.write_tokenizer(tmp)
        ids = Tokenizer(loaded.preprocess.text, tmp).encode(list(texts))
    inputs = {k: torch.from_numpy(v) for k, v in image_inputs(images, loaded.preprocess.image).items()}
    with torch.no_grad():
        img = loaded.model.encode_image_inputs(inputs).numpy()
        txt = loaded.model.encode_text(torch.from_numpy(ids)).numpy()
    m = loaded.model
    return {"image": img, "text": txt, "scale": m.t.exp().item(), "bias": m.b.item()}


def served_embeddings(bundle: Path, images, texts) -> dict[str, np.ndarray]:
    """The exported bundle through the serving runtime (onnxruntime, no torch)."""
    from vistas.inference.model import load_model

    served = load_model(str(bundle))
    return {"image": served.embed_images(images), "text": served.embed_texts(list(texts)),
            "scale": served.spec.logit_scale, "bias": served.spec.logit_bias}


def compare(got: dict, want: dict) -> dict[str, float]:
    """Max abs differences: image and text embeddings, and the image x text logits."""
    def logits(e):
        return e["scale"] * e["image"] @ e["text"].T + e["bias"]

    return {
        "image": float(np.abs(got["image"] - want["image"]).max()),
        "text": float(np.abs(got["text"] - want["text"]).max()),
        "logits": float(np.abs(logits(got) - logits(want)).max()),
    }


def check_parity(source: str, *, processor: str | None = None, reference: str | None = None,
                 bundle: str | Path | None = None) -> dict[str, dict[str, float]]:
    """-> {"torch_vs_transformers": {...}, "onnx_vs_transformers": {...}, "onnx_vs_torch": {...}}.

    The reference is the source itself for hf: sources, or `reference` (an hf: directory of the
    same weights, e.g. for an npz); without one only ONNX vs torch is reported. `bundle`: an
    already exported bundle of `source` to check; by default one is exported to a temp dir."""
    from vistas.bundle import load_bundle_spec, space_id
    from vistas.export.onnx_export import export_model
    from vistas.training.convert.hub import resolve_hf

    loaded = load_source(source, processor=processor)
    ref_dir = resolve_hf(reference.removeprefix("hf:")) if reference else loaded.reference
    images, texts = parity_images(), CAPTIONS
    report = {}
    ours = torch_embeddings(loaded, images, texts)
    with tempfile.TemporaryDirectory(prefix="vistas-parity-bundle-") as tmp:
        if bundle is None:
            bundle = Path(tmp) / "bundle"
            export_model(loaded, bundle)
        elif load_bundle_spec(bundle).space_id != space_id(loaded.weight_files, loaded.preprocess):
            raise ValueError(f"the bundle {bundle} was not exported from {source} (its space_id differs); "
                             "export it again or leave out --bundle")
        served = served_embeddings(Path(bundle), images, texts)
    if ref_dir is not None:
        want = reference_embeddings(ref_dir, images, texts, loaded.preprocess.text.length)
        report["torch_vs_transformers"] = compare(ours, want)
        report["onnx_vs_transformers"] = compare(served, want)
    report["onnx_vs_torch"] = compare(served, ours)
    return report


def passed(report: dict[str, dict[str, float]], tolerance: float = TOLERANCE) -> bool:
    return all(v <= tolerance for row in report.values() for v in row.values())
