"""Text -> fixed-length token ids, as SigLIP does it.

SigLIP's text tower sees no attention mask: every text is padded to the model's
fixed length and the *last* position is pooled (big_vision two_towers text
`pool_type="last"`; transformers SiglipTextTransformer pools `[:, -1]`).
So padding length and side are part of the model, and they live in TextSpec.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class TextSpec:
    length: int  # every text is padded / truncated to this many tokens
    pad_id: int
    eos_id: int | None = None  # appended after the text when set (kept on truncation)
    tokenizer_file: str = "tokenizer.json"
    lowercase: bool = False  # applied before the tokenizer (ours lowercases in its normalizer)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TextSpec":
        return cls(**d)


class Tokenizer:
    """Wraps a Hugging Face `tokenizers` tokenizer.json with SigLIP padding."""

    def __init__(self, spec: TextSpec, directory: str | Path):
        from tokenizers import Tokenizer as HFTokenizer

        path = Path(directory) / spec.tokenizer_file
        if not path.exists():
            raise FileNotFoundError(f"tokenizer file {path} not found; the bundle/checkpoint is incomplete")
        self.spec = spec
        self._tok = HFTokenizer.from_file(str(path))
        self._tok.no_padding()
        self._tok.no_truncation()

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, texts: list[str]) -> np.ndarray:
        """list of str -> int64 (B, length)."""
        s = self.spec
        out = np.full((len(texts), s.length), s.pad_id, dtype=np.int64)
        if s.lowercase:
            texts = [t.lower() for t in texts]
        for i, enc in enumerate(self._tok.encode_batch(list(texts), add_special_tokens=False)):
            ids = list(enc.ids)
            if s.eos_id is not None:
                ids = ids[: s.length - 1] + [s.eos_id]
            else:
                ids = ids[: s.length]
            out[i, : len(ids)] = ids
        return out
