"""The one training loop: SigLIP-style contrastive training of two towers.

    vistas train --config configs/siglip_shapes_digits.py:quick=True --workdir runs/quick

Every batch is a pure function of (seed, step) (see `training/batches.py`), so resuming
from a checkpoint replays exactly the batches the killed run would have seen.
"""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from vistas.atomic import atomic_write
from vistas.bundle import Preprocess
from vistas.images import ImageSpec
from vistas.inputs import image_inputs
from vistas.tokenizer import TextSpec, Tokenizer
from vistas.training.batches import BatchMaker
from vistas.training.checkpoint import (
    STEP_PREFIX,
    checkpoint_step,
    is_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    step_checkpoints,
)
from vistas.training.config import Config
from vistas.training.distill import distill_loss, distillation_setup
from vistas.training.evaluate import run_suites
from vistas.training.losses import sigmoid_loss
from vistas.training.models import build_model
from vistas.training.patch_sizes import PatchSizes
from vistas.training.plots import plot_metrics
from vistas.training.tokenizer_train import train_tokenizer


def warmup_cosine(step: int, *, total: int, warmup: int) -> float:
    """LR multiplier: linear warmup then cosine decay to 0 (as big_vision `warmup_cosine_decay`)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def warmup_stable_decay(step: int, *, total: int, warmup: int, cooldown: float = 0.2) -> float:
    """LR multiplier: linear warmup, constant, then a linear cooldown to 0 over the last `cooldown`
    fraction of the run ("WSD", Hägele et al. 2024, arXiv 2405.18392). Keeps the rate high while
    the model is still escaping a plateau, where a cosine schedule has already decayed."""
    if step < warmup:
        return (step + 1) / warmup
    decay_start = total - int(cooldown * total)
    if step < decay_start:
        return 1.0
    return max(0.0, (total - step) / max(1, total - decay_start))


SCHEDULES = {"cosine": warmup_cosine, "wsd": warmup_stable_decay}


def lr_schedule(config: Config):
    """config.schedule ("cosine" default | "wsd", with config.cooldown) -> step -> LR multiplier."""
    kind = config.get("schedule", "cosine")
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; expected one of {sorted(SCHEDULES)}")
    kwargs = {"cooldown": config.cooldown} if kind == "wsd" and "cooldown" in config else {}
    return lambda s: SCHEDULES[kind](s, total=config.steps, warmup=config.warmup_steps, **kwargs)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases, norms, position embeddings, probes and the scalars t, b."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and "pos" not in name and "probe" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class Encoders:
    """Torch model -> the numpy encoders the evaluators take."""

    def __init__(self, model, tokenizer: Tokenizer, image_spec: ImageSpec, patch_size: int | None = None):
        self.model, self.tokenizer, self.spec, self.patch_size = model, tokenizer, image_spec, patch_size

    @torch.no_grad()
    def images(self, pil_images) -> np.ndarray:
        inputs = {k: torch.from_numpy(v) for k, v in image_inputs(list(pil_images), self.spec).items()}
        if self.patch_size is None:
            return self.model.encode_image_inputs(inputs).numpy()
        return self.model.encode_image_inputs(inputs, patch_size=self.patch_size).numpy()

    @torch.no_grad()
    def texts(self, texts) -> np.ndarray:
        ids = torch.from_numpy(self.tokenizer.encode(list(texts)))
        return self.model.encode_text(ids).numpy()


def run_evals(model, tokenizer: Tokenizer, image_spec: ImageSpec, suites: list,
              patch_sizes: PatchSizes | None = None) -> dict[str, float]:
    """The suites' metrics; for a FlexiViT run at every patch size, named "<metric>@p<size>"."""
    was_training = model.training
    model.eval()
    if patch_sizes is None:
        enc = Encoders(model, tokenizer, image_spec)
        out = run_suites(enc.images, enc.texts, suites)
    else:
        out = {}
        for p in patch_sizes.sizes:
            enc = Encoders(model, tokenizer, image_spec, patch_size=p)
            out |= {f"{k}@p{p}": v for k, v in run_suites(enc.images, enc.texts, suites).items()}
    model.train(was_training)
    return out


def _from_scratch(
    config: Config, tok_dir: Path, batches: BatchMaker, image_spec: ImageSpec
) -> tuple[torch.nn.Module, dict, Preprocess]:
    """A new model of `config.model`, with a tokenizer trained on the training captions."""
    # The tokenizer is trained once per run from training captions only, then reused on resume.
    if (tok_dir / "tokenizer.json").is_file() and (tok_dir / "text_spec.json").is_file():
        text_spec = TextSpec.from_dict(json.loads((tok_dir / "text_spec.json").read_text()))
    else:
        text_spec = train_tokenizer(batches.tokenizer_corpus(), tok_dir, **config.tokenizer)
        (tok_dir / "text_spec.json").write_text(json.dumps(text_spec.to_dict()))
    model_config = dict(config.model)
    model_config["text"] = dict(model_config["text"], vocab_size=Tokenizer(text_spec, tok_dir).vocab_size,
                                length=text_spec.length)
    model_config["image"] = dict(model_config["image"], patch_size=image_spec.patch_size,
                                 posemb_grid=[image_spec.height // image_spec.patch_size,
                                              image_spec.width // image_spec.patch_size])
    return build_model(model_config), model_config, Preprocess(image=image_spec, text=text_spec)


def _from_source(config: Config, tok_dir: Path) -> tuple[torch.nn.Module, dict, Preprocess]:
    """Fine-tuning / LiT: the model, tokenizer and preprocessing of `config.init` (a vistas
    checkpoint, hf:DIR_OR_HUB_ID or npz:FILE); the recipe's model, image and tokenizer
    entries are not used."""
    from vistas.training.convert.sources import load_source

    loaded = load_source(config.init, processor=config.get("init_processor"))
    tok_dir.mkdir(parents=True, exist_ok=True)
    loaded.write_tokenizer(tok_dir)
    model = build_model(loaded.config)
    model.load_state_dict(loaded.model.state_dict())
    return model, loaded.config, loaded.preprocess


def _finished(workdir: Path, steps: int) -> Path | None:
    """`workdir/final` if the run has already trained all `steps` steps, else None.

    The end of a run writes `final` and then the step checkpoint at `steps`, so the two together
    mean `final` holds the model after exactly `steps` steps."""
    done = step_checkpoints(workdir)
    final = workdir / "final"
    if not done or checkpoint_step(done[-1]) != steps or not is_checkpoint(final):
        return None
    print(f"run already finished: {final} is the model at step {steps} of steps={steps} (checkpoint {done[-1]}); "
          f"to train further raise steps= in --config, to start over use a new --workdir")
    return final


def _drop_metrics_after(metrics_file: Path, step: int) -> None:
    """Keep the rows of steps <= `step`: a run resumed from checkpoint `step` writes the later ones
    again. A last row torn by a kill (no newline) goes too. The file is replaced atomically
    (`vistas.atomic`), so a kill here leaves the old file or the new one."""
    if not metrics_file.exists():
        return
    text = metrics_file.read_text()
    whole = text[: text.rfind("\n") + 1].splitlines(keepends=True)
    kept = "".join(line for line in whole if line.strip() and json.loads(line)["step"] <= step)
    if kept != text:
        atomic_write(metrics_file, lambda tmp: tmp.write_text(kept))


def train(config: Config, workdir: str | Path, *, resume: bool = True, progress: bool = True) -> Path:
    """Train per `config`; returns the final checkpoint directory (`workdir/final`).

    With `resume`, a run continues from its newest step checkpoint, and a run that has already
    trained `config.steps` steps is not trained again (one line says so).
    `config.init` (optional) starts from an existing model instead of `config.model`:
    a vistas checkpoint, `hf:DIR_OR_HUB_ID` or `npz:FILE` (`vistas.training.convert.sources`);
    `config.lock_image` freezes the image tower (LiT). `config.distill` (teacher=CHECKPOINT) trains a
    student image tower on the teacher's image embeddings instead (training/distill.py)."""
    workdir = Path(workdir)
    if resume and (final := _finished(workdir, config.steps)):
        return final
    workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    if config.get("threads"):
        torch.set_num_threads(config.threads)

    tok_dir = workdir / "tokenizer"
    teacher = None
    if config.get("distill"):  # flexifying by distillation (training/distill.py)
        model, model_config, preprocess, teacher = distillation_setup(config, tok_dir)
        batches = BatchMaker(config, preprocess.image)
    elif config.get("init"):
        model, model_config, preprocess = _from_source(config, tok_dir)
        batches = BatchMaker(config, preprocess.image)
    else:
        batches = BatchMaker(config, ImageSpec(**config.image))
        model, model_config, preprocess = _from_scratch(config, tok_dir, batches, batches.image_spec)
    image_spec = preprocess.image
    tokenizer = Tokenizer(preprocess.text, tok_dir)
    patch_sizes = PatchSizes.from_config(config.get("flexi"), (image_spec.height, image_spec.width), config.seed,
                                         image_spec.patch_size)
    if patch_sizes and image_spec.mode != "fixed":
        raise ValueError("config.flexi (FlexiViT patch sizes) needs fixed-size images; this model's inputs are NaFlex")
    stem = model_config.get("image", {}).get("stem", "patch")
    if patch_sizes and stem == "conv":
        raise ValueError("config.flexi (FlexiViT patch sizes) needs a stem PI-resize can resize ('patch' or 'hybrid'); "
                         "this model has a conv stem, which runs at its own patch size only")
    if patch_sizes and stem == "hybrid" and (odd := [p for p in patch_sizes.sizes if p % 2]):
        raise ValueError(f"flexi.patch_sizes {odd}: a hybrid stem cuts patches from a stride-2 map, so only even "
                         "patch sizes")
    if config.get("lock_image"):
        model.lock_image_tower()  # LiT (arXiv 2111.07991): only the text tower learns
    opt = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr, betas=(0.9, 0.95))
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lr_schedule(config))

    start = 0
    metrics_file = workdir / "metrics.jsonl"
    done = step_checkpoints(workdir)
    if resume and done:
        last = done[-1]
        loaded, _, _ = load_checkpoint(last)
        model.load_state_dict(loaded.state_dict())
        state = torch.load(last / "train_state.pt", weights_only=False)
        opt.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start = state["step"]
        print(f"resuming from {last} at step {start}")
        _drop_metrics_after(metrics_file, start)

    evals = batches.eval_suites()
    if start == 0 and metrics_file.exists():
        metrics_file.unlink()

    def log(record: dict) -> None:
        with open(metrics_file, "a") as f:
            f.write(json.dumps(record) + "\n")

    def checkpoint(step: int, final: bool = False) -> Path:
        path = workdir / ("final" if final else "checkpoints") / ("" if final else f"{STEP_PREFIX}{step:06d}")
        state = None if final else {"optimizer": opt.state_dict(), "schedule": schedule.state_dict(), "step": step}
        save_checkpoint(path, model, model_config, preprocess, tok_dir, state)
        if not final:
            prune_checkpoints(workdir, config.keep_checkpoints)
        return path

    model.train()
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, disable=not progress,
               desc="train", unit="step", dynamic_ncols=True)
    t0, seen = time.perf_counter(), 0

    def prepare(step: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
        """Data for one step, made in a worker thread while the previous step computes
        (torch releases the GIL in its kernels, so generation and decoding overlap it)."""
        batch = batches.batch(step)
        images = {k: torch.from_numpy(v) for k, v in image_inputs(batch.images, image_spec).items()}
        return images, torch.from_numpy(tokenizer.encode(batch.captions)), torch.from_numpy(batch.pair_labels)

    prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batches")
    upcoming = prefetch.submit(prepare, start)
    for step in bar:
        images, ids, labels = upcoming.result()  # {name: (B, ...)}, (B, L), (B, B)
        if step + 1 < config.steps:
            upcoming = prefetch.submit(prepare, step + 1)
        patch_size = patch_sizes.at(step) if patch_sizes else None  # FlexiViT: one size per step
        if teacher is None:
            zimg, ztxt, out = model(images, ids, patch_size=patch_size)
            loss = sigmoid_loss(zimg, ztxt, out["t"], out["b"], labels=labels)
        else:  # the teacher at its own patch size, the student at this step's
            with torch.no_grad():
                target = teacher.encode_image_inputs(images)
            loss = distill_loss(model.encode_image_inputs(images, patch_size=patch_size), target)
            out = {"t": model.t, "b": model.b}
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        schedule.step()
        seen += len(ids)

        done_step = step + 1
        if done_step % config.log_every == 0 or done_step == config.steps:
            rec = {"step": done_step, "loss": loss.item(), "grad_norm": grad_norm.item(),
                   "lr": schedule.get_last_lr()[0], "t": float(out["t"].detach().exp()), "b": float(out["b"].detach()),
                   "img_per_s": seen / (time.perf_counter() - t0)}
            log(rec)
            bar.set_postfix(loss=f"{rec['loss']:.3f}", img_s=f"{rec['img_per_s']:.0f}")
        if done_step % config.eval_every == 0 or done_step == config.steps:
            res = run_evals(model, tokenizer, image_spec, evals, patch_sizes)
            log({"step": done_step, **res})
            bar.write(f"step {done_step}: " + ", ".join(f"{k}={v:.3f}" for k, v in res.items()))
            plot_metrics(metrics_file, workdir / "curves.png")
        if done_step % config.checkpoint_every == 0 and done_step < config.steps:
            checkpoint(done_step)
    bar.close()
    prefetch.shutdown()
    final = checkpoint(config.steps, final=True)
    checkpoint(config.steps)  # after `final`: together they mark the run finished (see `_finished`)
    plot_metrics(metrics_file, workdir / "curves.png")
    return final


def evaluate_checkpoint(path: str | Path, config: Config) -> dict[str, float]:
    """Re-run the recipe's evals on a saved checkpoint (torch)."""
    model, _, preprocess = load_checkpoint(path)
    tokenizer = Tokenizer(preprocess.text, path)
    spec = preprocess.image
    patch_sizes = PatchSizes.from_config(config.get("flexi"), (spec.height, spec.width), config.seed, spec.patch_size)
    return run_evals(model, tokenizer, spec, BatchMaker(config, spec).eval_suites(), patch_sizes)


if __name__ == "__main__":  # pragma: no cover - the CLI is the entry point
    raise SystemExit("use `vistas train --config ...`")
