"""Model registry: the checkpoint config's "family" -> a builder `dict -> nn.Module`.

    model = build_model(json.loads(Path(ckpt, "config.json").read_text()))
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from vistas.training.models import siglip

Builder = Callable[[dict], nn.Module]
MODELS: dict[str, Builder] = {}


def register(family: str, builder: Builder) -> None:
    if family in MODELS:
        raise ValueError(f"model family {family!r} is already registered (by {MODELS[family].__module__})")
    MODELS[family] = builder


def build_model(config: dict) -> nn.Module:
    """A model config dict with a "family" key (as `SigLIPConfig.to_dict()` writes) -> an nn.Module."""
    family = config.get("family")
    if family not in MODELS:
        raise ValueError(
            f"model config has family {family!r}; known families: {sorted(MODELS)}. "
            "Is this a vistas checkpoint config.json?"
        )
    return MODELS[family](config)


register(siglip.FAMILY, siglip.build)
