"""Benchmark models: a SigLIP B/16 at 224 px with random weights, exported once and cached.

    python -m vistas.bench.models            # builds build/bench/siglip-b16/{checkpoint,bundle,bundle-int8}

Random weights are fine for speed: every FLOP of a trained B/16 is there (86M parameters in
the image tower, 196 patches + MAP head). The text tower is tiny because no benchmark uses it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / "bench"
B16 = dict(variant="B/16", image_size=224, name="siglip-b16")
TEXT_LENGTH = 16
_KEY = "v1"  # bump when the model or export changes, so the cache is rebuilt


def _tokenizer(directory: Path) -> None:
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from tokenizers.trainers import WordLevelTrainer

    tok = Tokenizer(WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["a photo of a cat dog car"], WordLevelTrainer(special_tokens=["[PAD]", "[EOS]", "[UNK]"]))
    tok.save(str(directory / "tokenizer.json"))


def siglip_b16_checkpoint(cache: Path = CACHE) -> Path:
    """A random-weight SigLIP B/16 @ 224 checkpoint (vistas' own ViTConfig.from_variant), cached."""
    import torch

    from vistas.bundle import Preprocess
    from vistas.images import ImageSpec
    from vistas.tokenizer import TextSpec
    from vistas.training.checkpoint import save_checkpoint
    from vistas.training.models.siglip import SigLIP, SigLIPConfig
    from vistas.training.models.text import TextConfig
    from vistas.training.models.vit import ViTConfig

    out = cache / B16["name"] / "checkpoint"
    stamp = out / "bench_key.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == {"key": _KEY, **B16}:
        return out
    image = ViTConfig.from_variant(B16["variant"], B16["image_size"])
    width = image.out_dim
    text = TextConfig(vocab_size=64, length=TEXT_LENGTH, width=128, depth=1, mlp_dim=256, heads=2, head_dim=width)
    config = SigLIPConfig(image=image, text=text, embed_dim=width)
    torch.manual_seed(0)
    model = SigLIP(config).eval()
    size = B16["image_size"]
    pre = Preprocess(
        image=ImageSpec(height=size, width=size, patch_size=image.patch_size),
        text=TextSpec(length=TEXT_LENGTH, pad_id=0, eos_id=1),
    )
    tok_dir = cache / B16["name"] / "tokenizer"
    tok_dir.mkdir(parents=True, exist_ok=True)
    _tokenizer(tok_dir)
    save_checkpoint(out, model, config.to_dict(), pre, tok_dir)
    stamp.write_text(json.dumps({"key": _KEY, **B16}))
    return out


def siglip_b16_bundle(cache: Path = CACHE) -> Path:
    """The exported (parity-checked) bundle of `siglip_b16_checkpoint`, cached under build/bench/."""
    from vistas.export.onnx_export import export_checkpoint

    ckpt = siglip_b16_checkpoint(cache)
    out = cache / B16["name"] / "bundle"
    stamp = out / "bench_key.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == {"key": _KEY, **B16}:
        return out
    export_checkpoint(ckpt, out, name=B16["name"])
    stamp.write_text(json.dumps({"key": _KEY, **B16}))
    return out


def int8_bundle(fp32_bundle: Path) -> Path:
    """The dynamic-int8 twin of a bundle (export/quantize.py), cached beside it."""
    from vistas.export.quantize import quantize_bundle

    out = fp32_bundle.with_name(fp32_bundle.name + "-int8")
    key = {"key": _KEY, "source": json.loads((fp32_bundle / "bundle.json").read_text())["space_id"]}
    stamp = out / "bench_key.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == key:
        return out
    quantize_bundle(fp32_bundle, out, "int8")  # no eval suites: random weights have nothing to measure
    stamp.write_text(json.dumps(key))
    return out


@dataclass(frozen=True)
class BenchModel:
    """A checkpoint and its fp32 and int8 bundles."""

    name: str
    checkpoint: Path
    bundle: Path
    bundle_int8: Path

    @property
    def image_config(self) -> dict:
        return json.loads((self.checkpoint / "config.json").read_text())["image"]

    @property
    def image_size(self) -> tuple[int, int]:
        pre = json.loads((self.checkpoint / "preprocess.json").read_text())["image"]
        return pre["height"], pre["width"]

    def hf_vision_model(self):
        """transformers' SiglipVisionModel of the same shape (random weights): the eager baseline."""
        from transformers import SiglipVisionConfig, SiglipVisionModel

        c, (h, w) = self.image_config, self.image_size
        if h != w:
            raise ValueError(f"SiglipVisionConfig takes square images; {self.name} is {h}x{w}")
        config = SiglipVisionConfig(
            hidden_size=c["width"],
            intermediate_size=c["mlp_dim"],
            num_hidden_layers=c["depth"],
            num_attention_heads=c["heads"],
            patch_size=c["patch_size"],
            image_size=h,
            vision_use_head=c.get("pool", "map") == "map",  # SigLIP's MAP head, as ours
        )
        return SiglipVisionModel(config).eval()


def siglip_b16(cache: Path = CACHE) -> BenchModel:
    bundle = siglip_b16_bundle(cache)
    return BenchModel(B16["name"], siglip_b16_checkpoint(cache), bundle, int8_bundle(bundle))


def bundled_tiny(cache: Path = CACHE) -> BenchModel:
    """The trained model that ships in models/ (48 px, 4 layers): for --quick runs."""
    src = ROOT / "models" / "siglip-shapes-digits"
    fp32 = cache / "siglip-shapes-digits" / "bundle"
    if not (fp32 / "bundle.json").is_file() or (fp32 / "bundle.json").read_bytes() != (src / "bundle" / "bundle.json").read_bytes():
        shutil.rmtree(fp32, ignore_errors=True)
        shutil.copytree(src / "bundle", fp32)
    return BenchModel("siglip-shapes-digits", src / "checkpoint", fp32, int8_bundle(fp32))


if __name__ == "__main__":
    print(siglip_b16())
