"""Train a small BPE tokenizer for our own models (Hugging Face `tokenizers`).

Released SigLIP checkpoints bring their own SentencePiece model; models we train
from scratch get this one. The normaliser lowercases and strips accents, so the
TextSpec needs no extra lowercasing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from vistas.tokenizer import TextSpec

PAD, UNK, EOS = "[PAD]", "[UNK]", "[EOS]"  # ids 0, 1, 2 by construction (trainer order)


def train_tokenizer(texts: Iterable[str], out_dir: str | Path, *, vocab_size: int = 1000, length: int = 16) -> TextSpec:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase(), normalizers.StripAccents()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)])
    tok.decoder = decoders.BPEDecoder()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, UNK, EOS], show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    assert tok.token_to_id(PAD) == 0 and tok.token_to_id(EOS) == 2, "special token ids moved"
    return TextSpec(length=length, pad_id=0, eos_id=2, tokenizer_file="tokenizer.json")
