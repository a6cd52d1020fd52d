"""Tiny random transformers SiglipModel / Siglip2Model checkpoints, saved as Hugging Face
directories (model + processor + tokenizer), built in-process: no hub, no download.

Tokenizers are trained here too: a SentencePiece unigram model (SigLIP's `spiece.model`,
read by SiglipTokenizer) or a byte-fallback BPE in Gemma's layout (Siglip2Tokenizer).
Every parameter gets noise added, so LayerNorm scales, biases and the logit scale/bias
are not at their init values and a mis-mapped tensor changes the outputs.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

CORPUS = [
    "a photo of a cat", "a dog on the grass", "the red car is fast", "two birds in the sky",
    "an astronaut in a white suit", "a cup of coffee", "a rocket on the launch pad", "hello world",
    "café au lait", "numbers 1 2 3 4 5 6 7 8 9 0", "the quick brown fox jumps over the lazy dog",
] * 20


@dataclass
class Tower:
    hidden: int = 32
    layers: int = 2
    heads: int = 4
    mlp: int = 48
    act: str = "gelu_pytorch_tanh"
    eps: float = 1e-6

    def hf(self) -> dict:
        return dict(hidden_size=self.hidden, num_hidden_layers=self.layers, num_attention_heads=self.heads,
                    intermediate_size=self.mlp, hidden_act=self.act, layer_norm_eps=self.eps)


@dataclass
class TinySiglip:
    """One test configuration. kind "siglip": fixed image_size; "siglip2": NaFlex."""

    kind: str = "siglip"
    vision: Tower = field(default_factory=Tower)
    text: Tower = field(default_factory=Tower)
    patch: int = 8
    image_size: int = 32  # siglip: the square training size (need not be a multiple of patch)
    num_patches: int = 16  # siglip2: learned position grid, a square
    max_num_patches: int = 30  # siglip2: the processor's patch budget
    text_length: int = 8
    projection: int | None = None  # text head output; None = text hidden size
    vision_head: bool = True
    tokenizer: str = "spiece"  # "spiece" (SiglipTokenizer) or "gemma" (Siglip2Tokenizer, BPE)
    byte_fallback: bool = False  # spiece: unknown characters become <0xNN> pieces (multilingual SigLIP)
    gemma_eos_right: bool = True  # gemma: add EOS and pad right, as released SigLIP 2 tokenizers do
    seed: int = 0


# The configurations the parity tests run (tests/training/test_convert_hf.py, tests/export).
CONFIGS = {
    # SigLIP as released: MAP head, tanh-GELU, SentencePiece tokenizer (canonicalised, EOS appended).
    "siglip": TinySiglip(),
    # No vision head (mean-pooled tokens), 30 px images with 7 px patches (the last 2 px rows and
    # columns are dropped, like So400m/14 at 384 px), exact GELU, LayerNorm eps 1e-5, odd text
    # length, a byte-fallback SentencePiece model (as multilingual SigLIP's).
    "siglip-headless-crop": TinySiglip(image_size=30, patch=7, vision_head=False, text_length=13, byte_fallback=True,
                                       vision=Tower(act="gelu", eps=1e-5), text=Tower(act="gelu", eps=1e-5)),
    # Towers of different sizes, quick_gelu, 4 px patches, a Gemma tokenizer (fixed-size SigLIP 2 layout).
    "siglip-gemma": TinySiglip(vision=Tower(hidden=24, layers=1, heads=2, mlp=40, act="quick_gelu"),
                               text=Tower(hidden=32, layers=3, heads=2, act="quick_gelu"), projection=24,
                               patch=4, image_size=20, text_length=5, tokenizer="gemma"),
    # SigLIP 2 NaFlex: a 4x4 learned grid resized per image, a budget of 30 patches.
    "siglip2-naflex": TinySiglip(kind="siglip2", patch=4, num_patches=16, max_num_patches=30, text_length=11,
                                 tokenizer="gemma"),
    # SigLIP 2 NaFlex without a head (masked mean), 2 px patches, a 5x5 grid shrunk to <= 12 patches,
    # Siglip2Tokenizer defaults (no EOS, LEFT padding: the pooled last token is the last word), gelu_new.
    "siglip2-headless-leftpad": TinySiglip(kind="siglip2", patch=2, num_patches=25, max_num_patches=12,
                                           vision_head=False, tokenizer="gemma", gemma_eos_right=False,
                                           vision=Tower(act="gelu_new"), text=Tower(act="gelu_new")),
}


def spiece_model(path: Path, byte_fallback: bool = False) -> Path:
    """A SentencePiece unigram model in SigLIP's layout: pad 0, eos 1, unk 2."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=buf, vocab_size=300 if byte_fallback else 48,
        hard_vocab_limit=False, byte_fallback=byte_fallback,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>",
        unk_piece="<unk>", normalization_rule_name="nmt_nfkc", minloglevel=2,
    )
    path.write_bytes(buf.getvalue())
    return path


def gemma_tokenizer(eos_right: bool):
    """A Siglip2Tokenizer (Gemma's BPE layout: pad 0, eos 1, bos 2, unk 3, byte fallback)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import Siglip2Tokenizer

    bpe = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    bpe.normalizer = normalizers.Replace(" ", "▁")
    bpe.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous")
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"] + [f"<0x{i:02X}>" for i in range(256)]
    bpe.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False))
    model = json.loads(bpe.to_str())["model"]
    extra = dict(add_eos_token=True, padding_side="right") if eos_right else {}
    return Siglip2Tokenizer(vocab=model["vocab"], merges=[tuple(m) for m in model["merges"]], **extra)


def save_tiny(cfg: TinySiglip, directory: Path) -> Path:
    """Build, perturb and save the model, its image processor and tokenizer to `directory`."""
    from transformers import (
        Siglip2Config,
        Siglip2Model,
        Siglip2Processor,
        SiglipConfig,
        SiglipModel,
        SiglipProcessor,
        SiglipTokenizer,
    )
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil
    from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil

    directory.mkdir(parents=True, exist_ok=True)
    if cfg.tokenizer == "spiece":
        tokenizer = SiglipTokenizer(vocab_file=str(spiece_model(directory / "spiece.model", cfg.byte_fallback)),
                                    model_max_length=cfg.text_length)
    else:
        tokenizer = gemma_tokenizer(cfg.gemma_eos_right)
    text = dict(cfg.text.hf(), vocab_size=len(tokenizer), max_position_embeddings=cfg.text_length,
                projection_size=cfg.projection, pad_token_id=tokenizer.pad_token_id,
                bos_token_id=None, eos_token_id=tokenizer.eos_token_id)
    vision = dict(cfg.vision.hf(), patch_size=cfg.patch, vision_use_head=cfg.vision_head)
    torch.manual_seed(cfg.seed)
    if cfg.kind == "siglip":
        model = SiglipModel(SiglipConfig(vision_config=dict(vision, image_size=cfg.image_size), text_config=text))
        image_processor = SiglipImageProcessorPil(size={"height": cfg.image_size, "width": cfg.image_size},
                                                  image_mean=[0.5] * 3, image_std=[0.5] * 3)
        processor = SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    else:
        model = Siglip2Model(Siglip2Config(vision_config=dict(vision, num_patches=cfg.num_patches), text_config=text))
        image_processor = Siglip2ImageProcessorPil(patch_size=cfg.patch, max_num_patches=cfg.max_num_patches)
        processor = Siglip2Processor(image_processor=image_processor, tokenizer=tokenizer)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.eval().save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
