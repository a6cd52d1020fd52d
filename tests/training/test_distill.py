"""Flexifying by distillation (training/distill.py, configs/flexivit_distill.py): the student starts
from the teacher's trunk with a fresh stem, keeps the teacher's text tower frozen, and a short real
run pulls its image embeddings towards the teacher's."""

import json
from pathlib import Path

import pytest
import torch

from vistas.training.config import load_config
from vistas.training.distill import distill_loss, distillation_setup

ROOT = Path(__file__).resolve().parents[2]
TEACHER = ROOT / "models" / "siglip-shapes-digits" / "checkpoint"


def test_loss_is_the_mean_cosine_distance():
    a = torch.randn(4, 8)
    assert distill_loss(a, 3 * a).item() == pytest.approx(0, abs=1e-6)  # the length does not matter
    assert distill_loss(a, -a).item() == pytest.approx(2, abs=1e-6)
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert distill_loss(b, torch.tensor([[0.0, 1.0], [0.0, 1.0]])).item() == pytest.approx(0.5)


def test_student_keeps_the_teachers_trunk_and_text_and_gets_a_fresh_stem(tmp_path):
    config = load_config(f"flexivit_distill:teacher={TEACHER},quick=True")
    student, student_config, preprocess, teacher = distillation_setup(config, tmp_path / "tok")
    assert student_config["image"]["stem"] == "hybrid" and teacher.config.image.stem == "conv"
    assert (tmp_path / "tok" / "tokenizer.json").read_bytes() == (TEACHER / "tokenizer.json").read_bytes()
    theirs = teacher.state_dict()
    for name, value in student.state_dict().items():
        if name.startswith(("image.encoder.", "image.map_head.", "text.")) or name in ("image.pos_embedding", "t", "b"):
            assert torch.equal(value, theirs[name]), name
        if name.startswith("image.hybrid_stem."):
            assert name not in theirs
    frozen = {n for n, p in student.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in student.named_parameters() if n.startswith("text.") or n in ("t", "b")}
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training


def test_student_sizes_must_be_the_teachers(tmp_path):
    config = load_config(f"flexivit_distill:teacher={TEACHER},quick=True")
    config.model = dict(config.model, image=dict(config.model["image"], width=64))
    with pytest.raises(ValueError, match="width = 64, but the teacher's is 128"):
        distillation_setup(config, tmp_path / "tok")
    config = load_config(f"flexivit_distill:teacher={TEACHER},quick=True")
    config.distill = dict(teacher=str(TEACHER), temperature=2)
    with pytest.raises(ValueError, match="takes teacher=CHECKPOINT"):
        distillation_setup(config, tmp_path / "tok")


def test_a_short_run_pulls_the_student_towards_the_teacher(tmp_path):
    from vistas.training.checkpoint import load_checkpoint
    from vistas.training.train import train

    c = load_config(f"flexivit_distill:teacher={TEACHER},quick=True,steps=40,batch_size=32,eval_size=24,threads=2")
    c.log_every, c.eval_every = 5, 40
    c.evals = [e for e in c.evals if e["name"] == "digits"]
    final = train(c, tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert 0 < losses[-1] < 0.7 * losses[0], losses  # cosine distance to the teacher's embeddings falls
    assert {f"digits/accuracy@p{p}" for p in (4, 6, 8, 12, 16)} <= set(rows[-1])
    student, config, _ = load_checkpoint(final)
    teacher, _, _ = load_checkpoint(TEACHER)
    assert config["image"]["stem"] == "hybrid"
    for name, value in teacher.state_dict().items():
        if name.startswith("text.") or name in ("t", "b"):
            assert torch.equal(student.state_dict()[name], value), name  # frozen through training
