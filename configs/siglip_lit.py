"""LiT / fine-tuning from an existing model on the shapes + digits data, on a CPU.

    vistas train --config configs/siglip_lit.py:init=hf:google/siglip-base-patch16-224 --workdir runs/lit-b16
    vistas train --config 'configs/siglip_lit.py:init=npz:ckpt.npz,processor=hf:DIR,lock_image=False'

`init` is any model source (a vistas checkpoint, hf:DIR_OR_HUB_ID, npz:FILE; see
`vistas.training.convert.sources`): the model, its tokenizer and its preprocessing come from
there, so the recipe has no model, image or tokenizer entries. `lock_image=True` (the
default) is LiT, "locked-image text tuning" (Zhai et al., arXiv 2111.07991): the image
tower stays frozen and only the text tower and t, b learn. Data and evals are those of
configs/siglip_shapes_digits.py.
"""

from pathlib import Path

from vistas.training.config import load_config, parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, init="", processor="", lock_image=True, quick=False, steps=0, batch_size=0, threads=0,
                    seed=0, eval_size=0)
    if not arg.init:
        raise ValueError("configs/siglip_lit.py needs init=SOURCE, e.g. init=hf:google/siglip-base-patch16-224")
    base = f"{Path(__file__).with_name('siglip_shapes_digits.py')}:quick={arg.quick},seed={arg.seed}"
    if arg.eval_size:
        base += f",eval_size={arg.eval_size}"
    c = load_config(base)
    for key in ("model", "image", "tokenizer"):
        del c[key]  # they come from `init`
    c.init = arg.init
    c.init_processor = arg.processor or None  # for npz: where the tokenizer and image processor are
    c.lock_image = arg.lock_image
    c.threads = arg.threads or None
    c.steps = arg.steps or (30 if arg.quick else 500)
    c.batch_size = arg.batch_size or 64
    # A pretrained tower moves less than one trained from scratch: a tenth of the scratch lr.
    c.lr = 1e-4
    c.warmup_steps = max(1, c.steps // 10)
    c.eval_every = c.steps
    c.checkpoint_every = max(c.steps // 2, 1)
    return c
