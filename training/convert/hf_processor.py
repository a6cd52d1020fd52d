"""A checkpoint's reference preprocessing (transformers) -> vistas ImageSpec, TextSpec, tokenizer.json.

Serving needs neither transformers nor torch, so the reference tokenizer becomes a
`tokenizers` tokenizer.json plus a TextSpec, and that pair is VERIFIED to give the
reference's ids on `PROBE_TEXTS` before anything is written:

  * a `tokenizers`-backed reference (SigLIP 2's Gemma tokenizer, fixed-size SigLIP 2):
    its own tokenizer.json, with the post-processor that adds EOS, and its padding side;
  * SigLIP's SentencePiece `SiglipTokenizer` (spiece.model): transformers' slow->fast
    converter turns the model into a Unigram tokenizer.json; the Python canonicalisation
    (lowercase, drop punctuation, squeeze whitespace) becomes `TextSpec.lowercase` and
    `TextSpec.canonicalize`, and EOS is appended as `eos_id`.

Texts are padded to the model's text length with `padding="max_length"`, truncated, and
fed to the model without an attention mask, as big_vision trained it (transformers'
conversion scripts make the tokenizers return no mask for that reason).

Known difference: a text containing a special token literally ("</s>", "<unk>") maps to
that token's id in SiglipTokenizer but is tokenized as plain text by vistas (SigLIP's
SentencePiece path only; punctuation is dropped from it as from any text).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from vistas.images import ImageSpec
from vistas.tokenizer import TextSpec, Tokenizer

# PIL resampling filter ids (transformers stores `resample` as the PIL enum value).
_RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}

# Strings on which the exported tokenizer must reproduce the reference exactly: plain
# captions, case, punctuation, digits, whitespace variants, accents and compatibility
# characters (NFKC), CJK, emoji (unknown pieces / byte fallback), the empty string, and
# texts longer than any model's text length (truncation keeps EOS).
PROBE_TEXTS = (
    "a photo of a cat",
    "A Photo Of Two DOGS playing in the snow.",
    "the number seven",
    "a red circle, a blue square; a green triangle!",
    "What's this? It's a bird -- no, it's a plane (probably).",
    "12345 67 89.0 3.14159 1,000,000",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\r\nand   many    spaces",
    "café naïve façade Ångström Straße",
    "ﬁne ﬂowers in ＦＵＬＬＷＩＤＴＨ text",
    "日本の猫 中文 한국어 русский ελληνικά עברית العربية",
    "emoji 😀 🐈 🚀 done",
    "x",
    "",
    "!!!",
    "a very long caption that goes on and on, describing every single detail of the scene: "
    "the sky, the trees, the people walking their dogs, the cars parked along the street, "
    "the shop windows, the clouds, the birds and the light of a late afternoon in autumn",
)


class TokenizerMismatchError(ValueError):
    """The exported tokenizer does not reproduce the reference tokenizer."""


def image_spec(processor, patch_size: int) -> ImageSpec:
    """A transformers image processor (SiglipImageProcessor* or Siglip2ImageProcessor*) and the
    model's patch size -> ImageSpec."""
    name = type(processor).__name__
    resample = _RESAMPLE_NAMES.get(int(getattr(processor, "resample", 2)))
    if resample is None:
        raise ValueError(f"{name}.resample={processor.resample!r} is not a filter vistas knows ({_RESAMPLE_NAMES})")
    if getattr(processor, "do_center_crop", False) or getattr(processor, "do_pad", False):
        raise ValueError(f"{name} crops or pads images; vistas' SigLIP preprocessing only resizes")
    if not getattr(processor, "do_rescale", True) or abs(processor.rescale_factor - 1 / 255) > 1e-12:
        raise ValueError(f"{name} rescales by {processor.rescale_factor} (do_rescale={processor.do_rescale}); "
                         "vistas maps uint8 pixels to [0, 1] with 1/255")
    if getattr(processor, "do_normalize", True):
        mean, std = tuple(map(float, processor.image_mean)), tuple(map(float, processor.image_std))
    else:
        mean, std = (0.0,) * 3, (1.0,) * 3
    if not getattr(processor, "do_resize", True):
        raise ValueError(f"{name} does not resize; vistas needs a fixed size or a NaFlex patch budget")
    if getattr(processor, "max_num_patches", None) is not None:  # SigLIP 2 NaFlex
        if int(processor.patch_size) != patch_size:
            raise ValueError(f"{name}.patch_size={processor.patch_size} but the model's patch size is {patch_size}")
        budget = int(processor.max_num_patches)
        side = int(budget**0.5) * patch_size  # nominal only: every image gets its own size
        return ImageSpec(height=side, width=side, patch_size=patch_size, resample=resample, mean=mean, std=std,
                         mode="naflex", max_num_patches=budget)
    size = dict(processor.size)
    if not size.get("height") or not size.get("width"):
        raise ValueError(f"{name}.size={size} is not a fixed height x width, which SigLIP needs")
    return ImageSpec(height=int(size["height"]), width=int(size["width"]), patch_size=patch_size,
                     resample=resample, mean=mean, std=std)


def text_spec_and_json(reference, length: int) -> tuple[TextSpec, str]:
    """The reference tokenizer -> (TextSpec, tokenizer.json text) that reproduce it at `length`."""
    if reference.pad_token_id is None:
        raise ValueError(f"the checkpoint's {type(reference).__name__} has no pad token; SigLIP pads every "
                         "text to the model's text length, so it needs one")
    backend = getattr(reference, "backend_tokenizer", None)
    if backend is not None:  # a `tokenizers` tokenizer already: keep its pipeline as it is
        data = json.loads(backend.to_str())
        data["truncation"] = data["padding"] = None  # TextSpec carries them
        spec = TextSpec(
            length=length,
            pad_id=int(reference.pad_token_id),
            special_tokens=True,
            pad_side=reference.padding_side,
            truncation_side=reference.truncation_side,
        )
        return spec, json.dumps(data, ensure_ascii=False)
    if type(reference).__name__ != "SiglipTokenizer":
        raise ValueError(f"the checkpoint's tokenizer is a {type(reference).__name__}; vistas converts "
                         "`tokenizers`-backed tokenizers and SigLIP's SentencePiece SiglipTokenizer")
    from transformers.convert_slow_tokenizer import SpmConverter

    class SiglipSpmConverter(SpmConverter):
        # SentencePiece models with byte fallback (multilingual SigLIP) spell unknown characters
        # as <0xNN> byte pieces; the base converter would map them to <unk> instead.
        handle_byte_fallback = True

    fast = SiglipSpmConverter(reference).converted()  # Unigram + NFKC charsmap + Metaspace, no special tokens
    spec = TextSpec(
        length=length,
        pad_id=int(reference.pad_token_id),
        eos_id=int(reference.eos_token_id),
        lowercase=bool(reference.do_lower_case),
        canonicalize=True,
        pad_side=reference.padding_side,
        truncation_side=reference.truncation_side,
    )
    return spec, fast.to_str()


def verify_tokenizer(reference, spec: TextSpec, tokenizer_json: str, texts=PROBE_TEXTS) -> None:
    """Raise TokenizerMismatchError unless vistas' Tokenizer gives the reference's ids on `texts`."""
    want = reference(list(texts), padding="max_length", max_length=spec.length, truncation=True)["input_ids"]
    with tempfile.TemporaryDirectory(prefix="vistas-tok-") as tmp:
        Path(tmp, spec.tokenizer_file).write_text(tokenizer_json)
        got = Tokenizer(spec, tmp).encode(list(texts)).tolist()
    for text, g, w in zip(texts, got, want):
        if g != list(w):
            raise TokenizerMismatchError(
                f"the exported tokenizer gives {g} for {text!r}, the reference {type(reference).__name__} "
                f"gives {list(w)}; nothing was written. Report this with the checkpoint's tokenizer files."
            )
