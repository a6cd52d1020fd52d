"""Checkpoints: a directory that export can read without the training run.

    config.json        model config (with "family")
    model.safetensors  weights
    tokenizer.json     the text tokenizer
    preprocess.json    vistas.bundle.Preprocess (image + text spec)
    train_state.pt     optimizer / schedule / step, only in resumable run checkpoints

Writes go to a temporary sibling directory that is renamed into place, so a kill
during a save never leaves a half-written checkpoint where `latest` looks.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from vistas.bundle import Preprocess
from vistas.permissions import publish_tree
from vistas.training.models import build_model

STEP_PREFIX = "step_"


def save_checkpoint(
    directory: str | Path,
    model: torch.nn.Module,
    model_config: dict,
    preprocess: Preprocess,
    tokenizer_dir: str | Path,
    train_state: dict | None = None,
) -> Path:
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "config.json").write_text(json.dumps(model_config, indent=2, sort_keys=True) + "\n")
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp / "model.safetensors"))
    src_tok = Path(tokenizer_dir) / preprocess.text.tokenizer_file
    shutil.copyfile(src_tok, tmp / preprocess.text.tokenizer_file)
    preprocess.save(tmp / "preprocess.json")
    if train_state is not None:
        torch.save(train_state, tmp / "train_state.pt")
    publish_tree(tmp)  # safetensors writes 600: give every file the mode the umask gives
    if directory.exists():
        old = directory.with_name(directory.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, directory)
    return directory


REQUIRED = ("config.json", "model.safetensors", "preprocess.json")


def is_checkpoint(directory: str | Path) -> bool:
    return all((Path(directory) / name).is_file() for name in REQUIRED)


def load_checkpoint(directory: str | Path) -> tuple[torch.nn.Module, dict, Preprocess]:
    """-> (model in eval mode, config dict, preprocess)."""
    directory = Path(directory)
    for name in REQUIRED:
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory} is not a vistas checkpoint: {name} is missing")
    config = json.loads((directory / "config.json").read_text())
    model = build_model(config)
    state = load_file(str(directory / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint {directory} does not fit its config: missing={missing} unexpected={unexpected}")
    model.eval()
    return model, config, Preprocess.load(directory / "preprocess.json")


def step_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete step checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.name.startswith(STEP_PREFIX) and p.suffix == "" and (p / "train_state.pt").is_file()]
    return sorted(done, key=checkpoint_step)


def checkpoint_step(path: str | Path) -> int:
    """checkpoints/step_000150 -> 150."""
    return int(Path(path).name.removeprefix(STEP_PREFIX))


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    for old in step_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
