"""FlexiViT (arXiv 2212.08013) on the bundled recipe's data: one SigLIP model for patch sizes 4-16.

    vistas train --config configs/flexivit_shapes_digits.py --workdir runs/flexivit-shapes-digits

Everything but the stem and the patch size is configs/siglip_shapes_digits.py (the same data
pipeline, curriculum, augmentations, evals and tower sizes). The stem is the hybrid one
(training/models/hybrid_stem.py): two convolutions to a stride-2 map, then an overlapping patch
embedding whose 8x8-patch kernel is the *underlying* parameter, PI-resized to the patch size drawn
for each step, as the 6x6 position grid is bilinearly resized (big_vision `flexi.choice(v, p)`).
The base recipe's conv stem strides to one patch size and cannot be resized; ViT's linear stem
can, but the tiny tower did not learn shape with it (models/flexivit-shapes-digits/README.md).
The image size stays 48 px, so p=4 is 144 tokens and p=16 is 9. Every eval runs at every patch
size ("shapes_seen/accuracy@p12", one curves.png panel each).

The draw favours the middle sizes: the paper draws uniformly over 8-48 at B size, but here p=4
costs ~4x a p=8 step (144 tokens, attention quadratic), and the time budget is 25 minutes on a
2-core CPU. Expected tokens per image: 37.6 (p=8 alone: 36).
"""

from pathlib import Path

from vistas.training.config import load_config, parse_arg

PATCH_SIZES = (4, 6, 8, 12, 16)
PROBS = (0.05, 0.2, 0.35, 0.2, 0.2)


def get_config(arg=None):
    arg = parse_arg(arg, quick=False, steps=0, threads=0, seed=0, eval_every=0, eval_size=0, batch_size=0,
                    stem="hybrid", curriculum=-1)
    base = Path(__file__).with_name("siglip_shapes_digits.py")
    # Only what was set: the base keeps its defaults (its curriculum, -1, is the base's own ramp).
    passed = ",".join(f"{k}={v}" for k, v in arg.items() if v and k not in ("stem", "curriculum"))
    # The stem must have a patch map PI-resize can resize: not the base's conv stem, which strides
    # to one patch size. "hybrid" (training/models/hybrid_stem.py) keeps the convolutions that let the
    # tiny tower learn shape (issue 13) and cuts resizable patches from their stride-2 map; "patch"
    # is ViT's linear patchify, on which shape was not learned (shapes ~26 %, models/flexivit-shapes-digits).
    if arg.stem not in ("hybrid", "patch"):
        raise ValueError(f"flexivit_shapes_digits: stem={arg.stem!r}; FlexiViT needs 'hybrid' or 'patch'")
    c = load_config(f"{base}:{passed},stem={arg.stem},curriculum={arg.curriculum}")
    c.flexi = dict(patch_sizes=list(PATCH_SIZES), probs=list(PROBS))
    if not arg.quick:
        # 25 minutes on 2 cores: fewer steps than the fixed-size recipe (a step costs more: the
        # hybrid stem's windows, p=4's 144 tokens), and each eval round runs at five patch sizes.
        c.steps = arg.steps or 3000
        c.eval_every = arg.eval_every or 1500
    return c
