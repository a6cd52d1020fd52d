"""Text -> fixed-length token ids, as SigLIP does it.

SigLIP's text tower sees no attention mask: every text is padded to the model's
fixed length and the *last* position is pooled (big_vision two_towers text
`pool_type="last"`; transformers SiglipTextTransformer pools `[:, -1]`).
So padding length and side are part of the model, and they live in TextSpec.

Two ways to add the end token:
  * vistas-trained tokenizers (format 1): `eos_id` is appended here, after truncating
    the text to length - 1, then the ids are padded.
  * imported tokenizers (`special_tokens=True`, format 2): the tokenizer.json's own
    post-processor adds BOS/EOS and `tokenizers` truncates and pads, exactly the pipeline
    transformers runs for the checkpoint's reference tokenizer.
SigLIP's SentencePiece tokenizer also canonicalises the text first (`canonicalize`).
"""

from __future__ import annotations

import re
import string
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

SIDES = ("right", "left")
_NO_PUNCTUATION = str.maketrans("", "", string.punctuation)
_WHITESPACE = re.compile(r"\s+")


def canonicalize(text: str) -> str:
    """SigLIP's text canonicalisation (big_vision; transformers `SiglipTokenizer.canonicalize_text`):
    the SentencePiece meta space becomes a space, ASCII punctuation is dropped, whitespace
    runs become one space, and the ends are stripped. "A cat, (sleeping)." -> "A cat sleeping"."""
    text = text.replace("\u2581", " ").translate(_NO_PUNCTUATION)
    return _WHITESPACE.sub(" ", text).strip()


@dataclass(frozen=True)
class TextSpec:
    length: int  # every text is padded / truncated to this many tokens
    pad_id: int
    eos_id: int | None = None  # appended after the text when set (kept on truncation)
    tokenizer_file: str = "tokenizer.json"
    lowercase: bool = False  # applied before the tokenizer (ours lowercases in its normalizer)
    # Format 2 (imported tokenizers); written only when they differ from these defaults.
    canonicalize: bool = False  # `canonicalize()` before the tokenizer (SigLIP's SentencePiece models)
    special_tokens: bool = False  # the tokenizer.json post-processor adds BOS/EOS (then eos_id is None)
    pad_side: str = "right"  # where padding goes; the model pools the LAST position either way
    truncation_side: str = "right"  # which end of a long text is cut

    def __post_init__(self):
        if self.length < 1:
            raise ValueError(f"text length must be >= 1, got {self.length}")
        if self.pad_side not in SIDES or self.truncation_side not in SIDES:
            raise ValueError(f"pad_side and truncation_side must be one of {SIDES}, got "
                             f"{self.pad_side!r}, {self.truncation_side!r}")
        if self.special_tokens and self.eos_id is not None:
            raise ValueError("special_tokens=True lets the tokenizer add EOS; eos_id must then be None")

    @property
    def format_version(self) -> int:
        """The oldest bundle format that can hold this spec."""
        return 1 if self.to_dict().keys() <= _FORMAT_1_FIELDS else 2

    def to_dict(self) -> dict:
        d = asdict(self)
        for f in fields(self):
            if f.name not in _FORMAT_1_FIELDS and d[f.name] == f.default:
                del d[f.name]  # as format 1 wrote it: old readers load it, space ids stay
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TextSpec":
        return cls(**d)


_FORMAT_1_FIELDS = {"length", "pad_id", "eos_id", "tokenizer_file", "lowercase"}


class Tokenizer:
    """Wraps a Hugging Face `tokenizers` tokenizer.json with SigLIP padding."""

    def __init__(self, spec: TextSpec, directory: str | Path):
        from tokenizers import Tokenizer as HFTokenizer

        path = Path(directory) / spec.tokenizer_file
        if not path.exists():
            raise FileNotFoundError(f"tokenizer file {path} not found; the bundle/checkpoint is incomplete")
        self.spec = s = spec
        self._tok = HFTokenizer.from_file(str(path))
        self._tok.no_padding()
        self._tok.no_truncation()
        if s.special_tokens:
            pad_token = self._tok.id_to_token(s.pad_id)
            if pad_token is None:
                raise ValueError(f"pad_id {s.pad_id} is not in the vocabulary of {path}")
            self._tok.enable_truncation(max_length=s.length, direction=s.truncation_side)
            self._tok.enable_padding(direction=s.pad_side, pad_id=s.pad_id, pad_token=pad_token, length=s.length)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, texts: list[str]) -> np.ndarray:
        """list of str -> int64 (B, length)."""
        s = self.spec
        out = np.full((len(texts), s.length), s.pad_id, dtype=np.int64)
        texts = [t.lower() for t in texts] if s.lowercase else list(texts)
        if s.canonicalize:
            texts = [canonicalize(t) for t in texts]
        encodings = self._tok.encode_batch(texts, add_special_tokens=s.special_tokens)
        for i, enc in enumerate(encodings):
            ids = list(enc.ids)
            if not s.special_tokens:  # truncate and pad here, keeping eos_id last
                keep = s.length - (s.eos_id is not None)
                ids = ids[:keep] if s.truncation_side == "right" else ids[max(0, len(ids) - keep):]
                ids = ids + ([s.eos_id] if s.eos_id is not None else [])
            if s.pad_side == "right":
                out[i, : len(ids)] = ids
            else:
                out[i, s.length - len(ids):] = ids
        return out
