"""What every runtime of a bundle shares, whichever engine runs the towers.

A *runtime* knows tensors only. Every runtime (onnxruntime in `vistas.inference.onnx_runtime`;
the Triton client in `vistas.inference.triton_runtime`; a batching wrapper in serving) has the
same small surface, so the layers above never care which one runs the towers:

    runtime.spec                      the BundleSpec
    runtime.bundle_dir                where tokenizer and bundle.json live
    runtime.inputs(tower)             [TensorSpec(name, dtype, shape)], shape None = any size
    runtime.run(tower, {name: array}) -> float32 (B, D); every array has the batch first

Turning PIL images and strings into those tensors is `vistas.inference.model`'s job. This module
imports no inference engine: the Triton runtime uses it without onnxruntime installed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from vistas.bundle import (
    IMAGE_INPUT,
    MASK_INPUT,
    SHAPES_INPUT,
    TEXT_INPUT,
    TOWER_ROLES,
    BundleSpec,
)

log = logging.getLogger("vistas.inference")

Tower = Literal["image", "text"]
TOWERS: tuple[Tower, ...] = ("image", "text")
ROLES = TOWER_ROLES  # tower -> bundle.json `files` key


class BundleMismatchError(ValueError):
    """An ONNX graph does not have the inputs/outputs its bundle.json promises."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: "float32", "int64", ...
    shape: tuple[int | None, ...]  # None: any size (the batch, or a dynamic axis)


def expected_inputs(spec: BundleSpec, tower: Tower) -> list[TensorSpec]:
    """The tensors a bundle's tower takes, derived from its preprocessing spec."""
    if tower == "image" or tower.startswith("image@p"):  # a FlexiViT graph takes the same pixels
        img = spec.preprocess.image
        if img.mode == "naflex":  # see vistas.naflex
            n, dim = img.max_num_patches, img.patch_size * img.patch_size * 3
            return [
                TensorSpec(IMAGE_INPUT, "float32", (None, n, dim)),
                TensorSpec(MASK_INPUT, "int32", (None, n)),
                TensorSpec(SHAPES_INPUT, "int64", (None, 2)),
            ]
        return [TensorSpec(IMAGE_INPUT, "float32", (None, 3, img.height, img.width))]
    return [TensorSpec(TEXT_INPUT, "int64", (None, spec.preprocess.text.length))]



class RemoteRuntimeError(RuntimeError):
    """A remote runtime could not answer (down, timed out, failed): the HTTP layer answers 502."""


class BundleRuntime:
    """What every runtime of a bundle shares: `dim`, and the input specs checked at start-up."""

    spec: BundleSpec
    _inputs: dict[str, list[TensorSpec]]

    @property
    def dim(self) -> int:
        return self.spec.embed_dim

    def inputs(self, tower: Tower) -> list[TensorSpec]:
        return list(self._inputs[tower])


def check_feeds(specs: list[TensorSpec], inputs: dict[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
    """Named inputs checked against `specs` (names, ranks, fixed sizes, one batch size) and
    cast to the spec dtypes as contiguous arrays. ValueError names what is wrong."""
    if sorted(inputs) != sorted(s.name for s in specs):
        raise ValueError(f"the {what} takes inputs {[s.name for s in specs]}, got {sorted(inputs)}")
    feeds, batch = {}, None
    for s in specs:
        x = np.ascontiguousarray(inputs[s.name], dtype=s.dtype)
        if x.ndim != len(s.shape) or any(e is not None and g != e for g, e in zip(x.shape, s.shape)):
            want = tuple("B" if e is None else e for e in s.shape)
            raise ValueError(f"{what} input {s.name!r} must have shape {want}, got {x.shape}")
        if batch is not None and len(x) != batch:
            raise ValueError(f"{what} inputs disagree on the batch size: {s.name!r} has {len(x)} rows, not {batch}")
        batch = len(x)
        feeds[s.name] = x
    return feeds


def run_in_chunks(feeds: dict[str, np.ndarray], step: int, dim: int, run) -> np.ndarray:
    """Checked feeds -> float32 (B, dim), calling `run({name: (<=step, ...) array}) -> (rows, dim)`
    on consecutive row chunks; peak memory stays that of one chunk."""
    n = len(next(iter(feeds.values())))
    out = np.empty((n, dim), np.float32)  # (B, D)
    for start in range(0, n, step):
        emb = run({k: v[start : start + step] for k, v in feeds.items()})
        out[start : start + len(emb)] = emb
    return out
