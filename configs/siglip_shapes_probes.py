"""Short probes of configs/siglip_shapes_digits.py that vary how shapes are drawn (issue 13).

These probes found why the bundled recipe's tiny ViT learned colour but not shape on its varied
shapes (the fix: a conv stem, `stem=conv`, and the curriculum, `v=curriculum`), one core each,
500-1,000 steps; their figures are in models/siglip-shapes-digits/README.md. Defaults are the
linear stem the earlier probes ran with.

    # the old, grid-aligned style, with one kind of variation added back (`v`):
    vistas train --config siglip_shapes_probes:v=old --workdir runs/probe-old
    vistas train --config siglip_shapes_probes:v=geometry --workdir runs/probe-geometry
    # a curriculum: the old style first, the shipped varied style from step `ramp` on
    vistas train --config siglip_shapes_probes:v=curriculum,steps=1000 --workdir runs/probe-curriculum

Digits, model and evals are the bundled recipe's.
"""

import copy
from pathlib import Path

from vistas.configs.siglip_shapes_digits import DIGITS_AUGMENT, DIGITS_LOOK, WARMUP_STYLE
from vistas.training.config import load_config, parse_arg

# One kind of variation of the shipped Style each, added to the generator before issue 13
# (WARMUP_STYLE: the bundled recipe's curriculum starts with it).
VARIATIONS = {
    "old": {},
    "colour": dict(levels=(0, 255), jitter=True),
    "geometry": dict(rotation=1.0, forms=True),
    "size": dict(radius=(0.10, 0.36)),
    "render": dict(position_grid=0, draw_size=(32, 160),
                   filters=("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")),
    "look": dict(outline=0.3, textures=("flat", "gradient", "noise", "stripes", "checker")),
}

# The digits' augmentation ops: the recipe's, or its look ops alone (before issue 13 adopted the
# placement ops: typeset_digits draws white on black and small digits anywhere, the training
# digits are dark on light and fill the frame).
DIGITS_OPS = {"recipe": DIGITS_AUGMENT, "look_only": DIGITS_LOOK}


def get_config(arg=None):
    arg = parse_arg(arg, v="old", steps=500, threads=1, eval_every=250, eval_size=300, ramp=600,
                    shape_only=-1.0, stem="patch", max_objects=3, text_pool="last",
                    digits="recipe")
    if arg.v not in (*VARIATIONS, "curriculum", "varied"):
        raise ValueError(f"siglip_shapes_probes: v={arg.v!r}; known: {[*VARIATIONS, 'curriculum', 'varied']}")
    base = f"{Path(__file__).with_name('siglip_shapes_digits.py')}"
    ramp = arg.ramp if arg.v == "curriculum" else 0  # the recipe's own curriculum, or none
    c = load_config(f"{base}:steps={arg.steps},threads={arg.threads},eval_every={arg.eval_every},eval_size={arg.eval_size},"
                    f"stem={arg.stem},text_pool={arg.text_pool},curriculum={ramp}")
    for source in c.data:
        if source["name"] != "shapes":
            continue
        if arg.shape_only >= 0:  # share of captions without colour words (the recipe: 0.5)
            source["kwargs"]["shape_only"] = arg.shape_only
        source["kwargs"]["max_objects"] = arg.max_objects  # 1: single objects only
    if arg.digits not in DIGITS_OPS:
        raise ValueError(f"siglip_shapes_probes: digits={arg.digits!r}; known: {list(DIGITS_OPS)}")
    c.data[1]["kwargs"]["augment"] = DIGITS_OPS[arg.digits]
    if arg.v in ("varied", "curriculum"):  # the shipped style (after the old one, by step `ramp`)
        return c
    old = copy.deepcopy(c.data[0])
    old["kwargs"].update(style=dict(WARMUP_STYLE, **VARIATIONS[arg.v]), augment="")
    c.data = [old, c.data[1]]
    return c
