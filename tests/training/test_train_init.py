"""`vistas train` initialised from a Hugging Face checkpoint: LiT keeps the image tower exactly
(its embeddings still equal transformers'), trains the text tower, and the run's checkpoint
carries the imported tokenizer and preprocessing."""

from __future__ import annotations

import numpy as np
import torch

from support.hf_models import CONFIGS, save_tiny
from vistas.export.parity import CAPTIONS, parity_images, reference_embeddings, torch_embeddings
from vistas.training.checkpoint import load_checkpoint
from vistas.training.config import load_config
from vistas.training.convert.sources import load_source
from vistas.training.train import train

RECIPE = "configs/siglip_lit.py"


def _run(tmp_path, name: str, lock_image: bool):
    hf_dir = save_tiny(CONFIGS[name], tmp_path / "hf")
    config = load_config(f"{RECIPE}:init=hf:{hf_dir},lock_image={lock_image},quick=True,steps=2,"
                         "batch_size=8,eval_size=8,threads=1")
    return hf_dir, train(config, tmp_path / "run", progress=False)


def test_lit_from_hf_keeps_the_image_tower(tmp_path):
    hf_dir, final = _run(tmp_path, "siglip", lock_image=True)
    source, trained = load_source(f"hf:{hf_dir}"), load_source(str(final))
    assert trained.preprocess == source.preprocess and trained.config == source.config
    assert trained.tokenizer_json == source.tokenizer_json
    for (name, a), b in zip(source.model.image.state_dict().items(), trained.model.image.state_dict().values()):
        assert torch.equal(a, b), name
    assert not torch.equal(source.model.text.head.weight, trained.model.text.head.weight), "the text tower learned"
    images = parity_images()
    want = reference_embeddings(hf_dir, images, CAPTIONS, source.preprocess.text.length)
    got = torch_embeddings(trained, images, CAPTIONS)
    assert np.abs(got["image"] - want["image"]).max() <= 1e-4
    assert np.abs(got["text"] - want["text"]).max() > 1e-4


def test_fine_tuning_a_naflex_model_trains_both_towers(tmp_path):
    hf_dir, final = _run(tmp_path, "siglip2-naflex", lock_image=False)
    model, config, preprocess = load_checkpoint(final)
    source = load_source(f"hf:{hf_dir}")
    assert preprocess.image.mode == "naflex" and config == source.config
    assert not torch.equal(source.model.image.pos_embedding, model.image.pos_embedding)
    assert not torch.equal(source.model.text.head.weight, model.text.head.weight)
