"""FlexiViT by distillation (arXiv 2212.08013 Sec. 5): the bundled fixed-size model teaches a
flexible student its image embeddings, at a patch size drawn per step.

    vistas train --config configs/flexivit_distill.py --workdir runs/flexivit-distill
    vistas train --config configs/flexivit_distill.py:teacher=runs/x/final,steps=500 --workdir runs/d

The student is configs/flexivit_shapes_digits.py's (hybrid stem, patch sizes 4-16, the same data
and evals; its own draw, PROBS below) with the teacher's transformer trunk, position grid and MAP head
as its start and the teacher's text tower, tokenizer, temperature and bias frozen
(training/distill.py). The teacher runs at its own patch size (8) with its conv stem, which
cannot be resized; the student's new stem learns to feed the trunk what the teacher's did. No
curriculum: the teacher already tells shapes apart, on whichever drawing.
"""

from pathlib import Path

from vistas.training.config import load_config, parse_arg

TEACHER = "models/siglip-shapes-digits/checkpoint"
# The coarse sizes are the hard ones to distil (2,000 steps with the from-scratch recipe's draw,
# 0.05 / 0.2 / 0.35 / 0.2 / 0.2: seen shapes 97.1 / 97.6 / 96.9 / 92.1 / 83.3 % at p = 4 ... 16)
# and the cheap ones to train (16 and 9 tokens): they get more of the draw.
PATCH_SIZES = (4, 6, 8, 12, 16)
PROBS = (0.05, 0.15, 0.25, 0.25, 0.3)


def _teacher_dir(path: str) -> str:
    """A relative path from the working directory, or else from the project root (this file's parent's)."""
    here = Path(path)
    if here.is_absolute() or here.exists():
        return str(here)
    return str(Path(__file__).resolve().parents[1] / path)


def get_config(arg=None):
    arg = parse_arg(arg, teacher=TEACHER, quick=False, steps=0, threads=0, seed=0, eval_every=0, eval_size=0,
                    batch_size=0)
    passed = ",".join(f"{k}={v}" for k, v in arg.items() if v and k != "teacher")
    c = load_config(f"{Path(__file__).with_name('flexivit_shapes_digits.py')}:{passed},curriculum=0")
    c.distill = dict(teacher=_teacher_dir(arg.teacher))
    c.flexi = dict(patch_sizes=list(PATCH_SIZES), probs=list(PROBS))
    if not arg.quick:
        c.steps = arg.steps or 2600
        c.eval_every = arg.eval_every or 1300
    return c
