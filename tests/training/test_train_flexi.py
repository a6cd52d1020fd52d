"""FlexiViT training: the per-step patch-size draw and a real short run of the recipe."""

import json

import numpy as np
import pytest
import torch

from vistas.training.config import load_config
from vistas.training.patch_sizes import PatchSizes, auto_sizes


def test_draw_follows_probs_and_replays():
    sizes = PatchSizes([4, 8, 16], [0.2, 0.5, 0.3], image_hw=(48, 48), seed=3)
    draws = np.array([sizes.at(s) for s in range(6000)])
    for p, want in zip([4, 8, 16], [0.2, 0.5, 0.3]):
        assert abs((draws == p).mean() - want) < 0.02
    again = PatchSizes([4, 8, 16], [2, 5, 3], image_hw=(48, 48), seed=3)  # unnormalised weights: same draw
    assert [again.at(s) for s in range(200)] == draws[:200].tolist()
    other_seed = PatchSizes([4, 8, 16], [0.2, 0.5, 0.3], image_hw=(48, 48), seed=4)
    assert [other_seed.at(s) for s in range(200)] != draws[:200].tolist()


def test_auto_sizes():
    assert auto_sizes((48, 48), 8) == [4, 6, 8, 12, 16]
    assert auto_sizes((224, 224), 16) == [8, 14, 16, 28, 32]
    assert PatchSizes.from_config({"patch_sizes": "auto"}, (48, 48), patch_size=8).sizes == [4, 6, 8, 12, 16]
    with pytest.raises(ValueError, match="probs cannot go"):
        PatchSizes.from_config({"patch_sizes": "auto", "probs": [1]}, (48, 48), patch_size=8)


def test_bad_flexi_configs_are_refused():
    with pytest.raises(ValueError, match="does not tile a 48x48 image"):
        PatchSizes([5, 8], image_hw=(48, 48))
    with pytest.raises(ValueError, match="one per patch size"):
        PatchSizes([4, 8], [1.0], image_hw=(48, 48))
    with pytest.raises(ValueError, match="distinct"):
        PatchSizes([8, 8], image_hw=(48, 48))
    with pytest.raises(ValueError, match="takes patch_sizes"):
        PatchSizes.from_config({"sizes": [8]}, (48, 48))
    assert PatchSizes.from_config(None, (48, 48)) is None


@pytest.mark.parametrize("stem, sizes, error", [("conv", [4, 8], "needs a stem PI-resize can resize"),
                                                 ("hybrid", [3, 8], "only even patch sizes")])
def test_train_refuses_patch_sizes_the_stem_cannot_run(tmp_path, stem, sizes, error):
    from vistas.training.train import train

    c = load_config(f"siglip_shapes_digits:quick=True,steps=2,batch_size=8,eval_size=8,stem={stem}")
    c.flexi = dict(patch_sizes=sizes)
    with pytest.raises(ValueError, match=error):
        train(c, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "final").exists()


def test_recipe_trains_and_evaluates_at_every_patch_size(tmp_path):
    from vistas.training.checkpoint import load_checkpoint
    from vistas.training.train import evaluate_checkpoint, train

    c = load_config("flexivit_shapes_digits:quick=True,steps=6,batch_size=16,eval_size=24,threads=2")
    assert c.flexi["patch_sizes"] == [4, 6, 8, 12, 16]
    c.evals = [e for e in c.evals if e["name"] in ("shapes_seen", "typeset_digits")]
    final = train(c, tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if any("@p" in k for k in r)]
    assert evals and evals[-1]["step"] == 6
    want = {f"{s}/accuracy@p{p}" for s in ("shapes_seen", "typeset_digits") for p in (4, 6, 8, 12, 16)}
    assert want <= set(evals[-1])
    # the model is saved at its underlying patch size; re-evaluation gives the logged figures
    model, config, _ = load_checkpoint(final)
    assert config["image"]["patch_size"] == 8 and config["image"]["posemb_grid"] == [6, 6]
    again = evaluate_checkpoint(final, c)
    for k in want:
        assert again[k] == pytest.approx(evals[-1][k], abs=1e-9)

    # flexifying: continued training of that (fixed-size or not) checkpoint at random patch sizes
    f = load_config(f"flexivit_flexify:init={final},quick=True,steps=4,batch_size=16,eval_size=24,threads=2")
    f.evals = [e for e in f.evals if e["name"] == "shapes_seen"]
    flex = train(f, tmp_path / "flexify", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "flexify" / "metrics.jsonl").read_text().splitlines()]
    assert {f"shapes_seen/accuracy@p{p}" for p in (4, 6, 8, 12, 16)} <= set(rows[-1])
    before, _, _ = load_checkpoint(final)
    after, _, _ = load_checkpoint(flex)
    kernel = "hybrid_stem.patch_embed.weight"  # the recipe's stem: the underlying kernel PI-resize resizes
    assert not torch.equal(before.image.get_parameter(kernel), after.image.get_parameter(kernel))  # it trained
