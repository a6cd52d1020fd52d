"""Flexifying by distillation (FlexiViT, arXiv 2212.08013 Sec. 5): a fixed-patch-size teacher's
image embeddings taught to a flexible student at a patch size drawn per step.

    c.distill = dict(teacher="models/siglip-shapes-digits/checkpoint")
    c.flexi = dict(patch_sizes=[4, 6, 8, 12, 16], probs=[...])
    c.model = dict(...)  # the student's image tower (e.g. stem="hybrid"); sizes must match the teacher's

The paper distils a fixed-size ViT-B/8 into FlexiViT-B, initialising the student from the
teacher, the teacher run at its own patch size and the student at a random one. Here the teacher
is a vistas checkpoint whose stem may not be resizable (the bundled model's conv stem): the
student keeps the teacher's transformer trunk, position grid and MAP head (every parameter
whose name and shape match), gets the recipe's stem fresh, and learns to put its image
embeddings where the teacher puts them. The text tower, tokenizer, temperature and bias are the
teacher's and stay frozen, so zero-shot classification works through the teacher's text
embeddings and both models share one embedding space.

Loss: 1 - cos(student(x, p), teacher(x)), the batch mean; the teacher in eval mode, no gradient.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from vistas.bundle import Preprocess
from vistas.training.models import build_model

# Recipe keys of the student's image tower that the teacher fixes (they must agree for the trunk's
# weights to carry over): the teacher's value wins, and a recipe that sets another one is refused.
_FROM_TEACHER = ("width", "depth", "mlp_dim", "heads", "patch_size", "posemb_grid", "pool", "head_dim")


def distillation_setup(config, tok_dir: Path) -> tuple[torch.nn.Module, dict, Preprocess, torch.nn.Module]:
    """-> (student, its config.json dict, preprocessing, teacher). The teacher's tokenizer is
    written to `tok_dir`; the student's frozen parameters have requires_grad False."""
    from vistas.training.checkpoint import load_checkpoint

    spec = config.distill
    if not isinstance(spec, dict) or set(spec) - {"teacher"} or "teacher" not in spec:
        raise ValueError(f"config.distill takes teacher=CHECKPOINT, got {spec!r}")
    if config.get("init"):
        raise ValueError("config.distill starts the student from the teacher; leave config.init unset")
    teacher_dir = Path(spec["teacher"])
    teacher, teacher_config, preprocess = load_checkpoint(teacher_dir)
    teacher.eval().requires_grad_(False)
    if preprocess.image.mode != "fixed":
        raise ValueError(f"the teacher {teacher_dir} takes NaFlex inputs; distillation needs a fixed-size image model")
    tok_dir.mkdir(parents=True, exist_ok=True)
    (tok_dir / "tokenizer.json").write_bytes((teacher_dir / "tokenizer.json").read_bytes())

    image = dict(config.model["image"])
    for key in _FROM_TEACHER:
        want = teacher_config["image"].get(key)
        if key in image and image[key] != want:
            raise ValueError(f"config.model.image.{key} = {image[key]!r}, but the teacher's is {want!r}: the student "
                             "keeps the teacher's trunk, so its sizes must be the teacher's (leave it unset)")
        image[key] = want
    student_config = {**teacher_config, "image": image}
    student = build_model(student_config)
    mine = student.state_dict()
    shared = {k: v for k, v in teacher.state_dict().items() if k in mine and mine[k].shape == v.shape}
    student.load_state_dict(shared, strict=False)
    for p in [*student.text.parameters(), student.t, student.b]:
        p.requires_grad_(False)
    return student, student_config, preprocess, teacher


def distill_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """(B, D) student and teacher image embeddings -> mean cosine distance (0 when they agree)."""
    return (1 - (F.normalize(student, dim=-1) * F.normalize(teacher, dim=-1)).sum(dim=-1)).mean()
