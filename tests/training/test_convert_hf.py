"""Hugging Face SiglipModel / Siglip2Model directories loaded into vistas' PyTorch SigLIP:
image and text embeddings and logits equal transformers' to <= 1e-4 in fp32, in several
configurations, with vistas' own preprocessing against the checkpoint's processor."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from support.hf_models import CONFIGS, save_tiny
from vistas.export.parity import CAPTIONS, compare, parity_images, reference_embeddings, torch_embeddings
from vistas.training.convert import hf_processor
from vistas.training.convert.sources import load_source


@pytest.fixture(scope="module")
def images():
    return parity_images()


@pytest.fixture(scope="module", params=list(CONFIGS))
def checkpoint(request, tmp_path_factory):
    return request.param, save_tiny(CONFIGS[request.param], tmp_path_factory.mktemp(request.param))


def test_embeddings_and_logits_match_transformers(checkpoint, images):
    name, directory = checkpoint
    loaded = load_source(f"hf:{directory}")
    ours = torch_embeddings(loaded, images, CAPTIONS)
    want = reference_embeddings(directory, images, CAPTIONS, loaded.preprocess.text.length)
    diffs = compare(ours, want)
    assert max(diffs.values()) <= 1e-4, (name, diffs)
    assert ours["image"].shape == (len(images), loaded.config["embed_dim"])
    cfg = CONFIGS[name]
    assert loaded.preprocess.image.mode == ("naflex" if cfg.kind == "siglip2" else "fixed")
    assert loaded.preprocess.text.length == cfg.text_length
    assert loaded.config["image"]["pool"] == ("map" if cfg.vision_head else "gap")


def test_reference_is_transformers_forward(tmp_path, images):
    """`reference_embeddings` (what every parity test compares with) is SiglipModel's own forward."""
    from transformers import AutoProcessor, SiglipModel

    directory = save_tiny(CONFIGS["siglip"], tmp_path)
    model = SiglipModel.from_pretrained(directory).eval()
    processor = AutoProcessor.from_pretrained(directory)
    inputs = processor(images=images, text=list(CAPTIONS), padding="max_length", max_length=8, truncation=True,
                       return_tensors="pt")
    with torch.no_grad():
        out = model(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"])
    ref = reference_embeddings(directory, images, CAPTIONS, 8)
    np.testing.assert_allclose(ref["image"], out.image_embeds.numpy(), atol=1e-6)
    np.testing.assert_allclose(ref["text"], out.text_embeds.numpy(), atol=1e-6)
    logits = ref["scale"] * ref["image"] @ ref["text"].T + ref["bias"]
    np.testing.assert_allclose(logits, out.logits_per_image.numpy(), atol=1e-5)


def test_tokenizer_is_verified_against_the_reference(tmp_path):
    from transformers import AutoTokenizer

    directory = save_tiny(CONFIGS["siglip"], tmp_path)
    reference = AutoTokenizer.from_pretrained(directory)
    spec, tokenizer_json = hf_processor.text_spec_and_json(reference, 8)
    assert spec.canonicalize and spec.lowercase and spec.eos_id == reference.eos_token_id
    hf_processor.verify_tokenizer(reference, spec, tokenizer_json)  # the real pair passes
    from dataclasses import replace

    with pytest.raises(hf_processor.TokenizerMismatchError, match="the reference SiglipTokenizer gives"):
        hf_processor.verify_tokenizer(reference, replace(spec, canonicalize=False), tokenizer_json)


def test_unsupported_configs_are_refused_with_reasons(tmp_path):
    directory = save_tiny(CONFIGS["siglip"], tmp_path)
    config = json.loads((directory / "config.json").read_text())
    config["vision_config"]["hidden_act"] = "mish"
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="vision_config.hidden_act='mish' is not supported"):
        load_source(f"hf:{directory}")
    (directory / "config.json").write_text(json.dumps({**config["vision_config"], "model_type": "siglip_vision_model"}))
    with pytest.raises(ValueError, match="not a single tower"):
        load_source(f"hf:{directory}")


def test_weights_that_do_not_fit_the_config_are_named(tmp_path):
    from safetensors.torch import load_file, save_file

    directory = save_tiny(CONFIGS["siglip"], tmp_path)
    state = load_file(str(directory / "model.safetensors"))
    state["text_model.head.weight"] = state["text_model.head.weight"][:, :16].contiguous()
    del state["vision_model.post_layernorm.bias"]
    save_file(state, str(directory / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing=\['image.encoder.norm.bias'\].*"
                                         r"text.head.weight: \(32, 16\) != \(32, 32\)"):
        load_source(f"hf:{directory}")
    state["vision_model.extra.weight"] = torch.zeros(3)
    save_file(state, str(directory / "model.safetensors"))
    with pytest.raises(ValueError, match="'vision_model.extra.weight' has no counterpart"):
        load_source(f"hf:{directory}")


def test_one_patch_wide_naflex_images_follow_the_filter_not_torch_cpu(tmp_path, images):
    """The documented difference: a 40:1 image gets a (30, 1) patch grid; transformers resizes the
    position grid with F.interpolate(antialias=True), whose CPU kernel is wrong for one output
    column (tests/training/test_models.py), so only that image differs; vistas follows PIL."""
    directory = save_tiny(CONFIGS["siglip2-naflex"], tmp_path)
    loaded = load_source(f"hf:{directory}")
    tall = Image.fromarray(np.asarray(images[0])[:400, :10])
    both = [images[1], tall]
    ours = torch_embeddings(loaded, both, CAPTIONS[:1])["image"]
    want = reference_embeddings(directory, both, CAPTIONS[:1], loaded.preprocess.text.length)["image"]
    assert np.abs(ours[0] - want[0]).max() <= 1e-4
    assert np.abs(ours[1] - want[1]).max() > 1e-3
