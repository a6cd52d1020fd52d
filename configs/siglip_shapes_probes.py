"""Short probes of configs/siglip_shapes_digits.py that vary how shapes are drawn (issue 13).

The bundled recipe's tiny ViT learns colour but not shape on its varied shapes. These probes
find out why, one core each, 500-1,000 steps; their figures are in
models/siglip-shapes-digits/README.md.

    # the old, grid-aligned style, with one kind of variation added back (`v`):
    vistas train --config siglip_shapes_probes:v=old --workdir runs/probe-old
    vistas train --config siglip_shapes_probes:v=geometry --workdir runs/probe-geometry
    # a curriculum: the old style first, the shipped varied style from step `ramp` on
    vistas train --config siglip_shapes_probes:v=curriculum,steps=1000 --workdir runs/probe-curriculum

Digits, model and evals are the bundled recipe's.
"""

import copy
from pathlib import Path

from vistas.training.config import load_config, parse_arg

# The shapes generator before issue 13, as Style fields: upright, one proportion per shape,
# light backgrounds, the prototype colours, two size bands' range, on the patch grid, filled,
# flat, drawn at the model's 48 px without resizing.
OLD_STYLE = dict(rotation=0.0, forms=False, levels=(185, 255), jitter=False, radius=(0.13, 0.25), position_grid=8,
                 outline=0.0, textures=("flat",), draw_size=(48, 48), filters=("nearest",))
# One kind of variation of the shipped Style each, added to OLD_STYLE.
VARIATIONS = {
    "old": {},
    "colour": dict(levels=(0, 255), jitter=True),
    "geometry": dict(rotation=1.0, forms=True),
    "size": dict(radius=(0.10, 0.36)),
    "render": dict(position_grid=0, draw_size=(32, 160),
                   filters=("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")),
    "look": dict(outline=0.3, textures=("flat", "gradient", "noise", "stripes", "checker")),
}


def get_config(arg=None):
    arg = parse_arg(arg, v="old", steps=500, threads=1, eval_every=250, eval_size=300, ramp=600,
                    shape_only=-1.0)
    if arg.v not in (*VARIATIONS, "curriculum", "varied"):
        raise ValueError(f"siglip_shapes_probes: v={arg.v!r}; known: {[*VARIATIONS, 'curriculum', 'varied']}")
    base = f"{Path(__file__).with_name('siglip_shapes_digits.py')}"
    c = load_config(f"{base}:steps={arg.steps},threads={arg.threads},eval_every={arg.eval_every},eval_size={arg.eval_size}")
    shapes = c.data[0]
    if arg.shape_only >= 0:  # share of captions without colour words (the recipe: 0.5)
        shapes["kwargs"]["shape_only"] = arg.shape_only
    old = copy.deepcopy(shapes)
    old["kwargs"].update(style=dict(OLD_STYLE), augment="")
    if arg.v == "varied":  # the shipped style, e.g. with another shape_only
        return c
    if arg.v == "curriculum":
        # Mixture weights per step (BatchMaker): old style 0.7 -> 0 and varied 0 -> 0.7 by `ramp`.
        old["weight"] = [[0, shapes["weight"]], [arg.ramp, 0.0]]
        shapes["weight"] = [[0, 0.0], [arg.ramp, shapes["weight"]]]
        c.data = [shapes, c.data[1], old]
    else:
        old["kwargs"]["style"].update(VARIATIONS[arg.v])
        c.data = [old, c.data[1]]
    return c
