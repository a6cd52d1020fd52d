"""Where a model comes from: a vistas checkpoint, `hf:DIR_OR_HUB_ID` or `npz:FILE`.

    loaded = load_source("hf:google/siglip-base-patch16-224")
    loaded.model        SigLIP in eval mode, fp32
    loaded.preprocess   ImageSpec + TextSpec that reproduce the checkpoint's reference processor
    loaded.tokenizer_json, loaded.weight_files, loaded.name, loaded.reference

Export, training initialisation and `vistas check-parity` all start here, so the three
read a checkpoint the same way. A `.npz` holds only weights: its tokenizer and image
preprocessing come from a processor directory (`processor=`, default: the .npz's own
folder) that transformers can load, such as the Hugging Face checkpoint of the same model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from vistas.bundle import Preprocess
from vistas.training.checkpoint import load_checkpoint
from vistas.training.convert import big_vision, hf_processor, hf_siglip
from vistas.training.convert.hub import SourceNotFoundError, resolve_hf
from vistas.training.models.siglip import SigLIP, SigLIPConfig

PREFIXES = ("hf:", "npz:")


@dataclass
class LoadedModel:
    model: SigLIP
    config: dict  # vistas config.json
    preprocess: Preprocess
    tokenizer_json: str  # the tokenizer.json that `preprocess.text` reads
    weight_files: list[Path]  # what the embedding-space id hashes
    name: str  # default model name
    reference: Path | None = None  # a directory transformers loads the same model from (hf: sources)

    def write_tokenizer(self, directory: str | Path) -> Path:
        path = Path(directory) / self.preprocess.text.tokenizer_file
        path.write_text(self.tokenizer_json)
        return path


def load_source(source: str | Path, *, processor: str | None = None) -> LoadedModel:
    """'runs/x/final' | 'hf:google/siglip-base-patch16-224' | 'hf:/path/dir' | 'npz:/path/ckpt.npz'."""
    source = str(source)
    if source.startswith("hf:"):
        return load_hf(source[3:])
    if source.startswith("npz:"):
        return load_npz(source[4:], processor=processor)
    return load_vistas(source)


def load_vistas(directory: str | Path) -> LoadedModel:
    directory = Path(directory)
    if not directory.is_dir():
        raise SourceNotFoundError(
            f"{directory} is not a directory. A model source is a vistas checkpoint directory, "
            "hf:DIR_OR_HUB_ID (a Hugging Face SiglipModel / Siglip2Model) or npz:FILE (big_vision)"
        )
    model, config, preprocess = load_checkpoint(directory)
    tokenizer_json = (directory / preprocess.text.tokenizer_file).read_text()
    # runs/siglip/final -> "siglip"; runs/x/checkpoints/step_000100 -> "step_000100".
    name = directory.resolve().parent.name if directory.name == "final" else directory.name
    return LoadedModel(model, config, preprocess, tokenizer_json, [directory / "model.safetensors"], name)


def load_hf(ref: str) -> LoadedModel:
    """A Hugging Face SiglipModel / Siglip2Model directory or cached hub id."""
    from transformers import AutoConfig

    directory = resolve_hf(ref)
    config = hf_siglip.siglip_config(AutoConfig.from_pretrained(directory, local_files_only=True))
    hf_state, files = hf_siglip.read_weights(directory)
    model = _build(config, hf_siglip.convert_state(hf_state, config), f"hf:{ref}")
    preprocess, tokenizer_json = _processor(directory, config)
    return LoadedModel(model, config.to_dict(), preprocess, tokenizer_json, files, _hf_name(ref, directory),
                       reference=directory)


def load_npz(path: str, *, processor: str | None = None) -> LoadedModel:
    """A big_vision two-tower .npz, with the tokenizer and image processor of `processor`."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise SourceNotFoundError(f"npz:{path}: no such file")
    params = big_vision.read_npz(file)
    config = big_vision.npz_config(params)
    model = _build(config, big_vision.convert_npz(params, config), f"npz:{path}")
    proc_dir = resolve_hf(processor.removeprefix("hf:")) if processor else file.parent
    preprocess, tokenizer_json = _processor(proc_dir, config)
    return LoadedModel(model, config.to_dict(), preprocess, tokenizer_json, [file], file.stem)


def _build(config: SigLIPConfig, state: dict[str, torch.Tensor], source: str) -> SigLIP:
    model = SigLIP(config)
    hf_siglip.check_state(state, model, source)
    model.load_state_dict(state)
    return model.eval()


def _processor(directory: Path, config: SigLIPConfig) -> tuple[Preprocess, str]:
    """The reference image processor and tokenizer of `directory` -> (Preprocess, verified tokenizer.json)."""
    from transformers import AutoImageProcessor, AutoTokenizer

    try:
        image_processor = AutoImageProcessor.from_pretrained(directory, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise SourceNotFoundError(
            f"{directory} has no image processor and tokenizer transformers can load ({e.__class__.__name__}: "
            f"{str(e)[:300]}). vistas needs the checkpoint's preprocessor_config.json (or processor_config.json) "
            "and tokenizer files (spiece.model or tokenizer.json with tokenizer_config.json); for a .npz, "
            "pass --processor with the Hugging Face checkpoint directory of the same model."
        ) from None
    image = hf_processor.image_spec(image_processor, config.image.patch_size)
    text, tokenizer_json = hf_processor.text_spec_and_json(tokenizer, config.text.length)
    hf_processor.verify_tokenizer(tokenizer, text, tokenizer_json)
    return Preprocess(image=image, text=text), tokenizer_json


def _hf_name(ref: str, directory: Path) -> str:
    """google/siglip-base-patch16-224 -> siglip-base-patch16-224; a directory -> its name."""
    if Path(ref).expanduser().is_dir():
        return Path(ref).expanduser().resolve().name
    return ref.rstrip("/").split("/")[-1]

