"""Make an existing SigLIP flexible ("flexifying", FlexiViT arXiv 2212.08013 Sec. 5): continue
training it with a patch size drawn per step, on the bundled recipe's data.

    vistas train --config configs/flexivit_flexify.py:init=models/siglip-shapes-digits/checkpoint \\
        --workdir runs/flexify-bundled
    vistas train --config configs/flexivit_flexify.py:init=hf:google/siglip-base-patch16-224 --workdir runs/flexify-b16

Which of the paper's two ways: **continued training**, not distillation. The paper distils a
fixed-size teacher into the flexible student because its teachers were stronger than anything
FlexiViT trained from scratch in the same budget; here the source model *is* the starting point
and the data is procedural and unlimited, so plain training at random patch sizes from the
source's weights (the underlying kernel and grid are the source's own) is the cheaper route.
The patch sizes are "auto": every size that tiles the image from half to twice the source's
own (48 px, p=8: 4, 6, 8, 12, 16; a B/16 at 224 px: 8, 14, 16, 28, 32), drawn uniformly.
The control, the source at other patch sizes through PI-resize alone, is measured with
`vistas export SOURCE OUT --patch-sizes ... --eval-config ...` (models/flexivit-shapes-digits/README.md
has both).
"""

from pathlib import Path

from vistas.training.config import load_config, parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, init="", processor="", quick=False, steps=0, batch_size=0, threads=0, seed=0, eval_size=0,
                    lr=3e-4)
    # configs/siglip_lit.py already turns a source into a recipe on the bundled data; unlocked, it
    # trains both towers, and flexifying only changes its schedule and adds the patch-size draw.
    passed = {k: arg[k] for k in ("init", "processor", "quick", "batch_size", "threads", "seed", "eval_size") if arg[k]}
    if not arg.init:
        raise ValueError("configs/flexivit_flexify.py needs init=SOURCE, e.g. init=models/siglip-shapes-digits/checkpoint")
    spec = ",".join(f"{k}={v}" for k, v in passed.items())
    c = load_config(f"{Path(__file__).with_name('siglip_lit.py')}:{spec},lock_image=False")
    c.steps = arg.steps or (20 if arg.quick else 1000)
    c.batch_size = arg.batch_size or 128
    c.lr = arg.lr  # below the from-scratch 1e-3: the source's weights are the starting point
    c.warmup_steps = max(1, c.steps // 10)
    c.eval_every = max(c.steps // 2, 1)
    c.checkpoint_every = max(c.steps // 4, 1)
    c.flexi = dict(patch_sizes="auto")
    return c
