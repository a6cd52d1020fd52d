"""Training batches and eval suites from a recipe's `data` / `evals` entries (torch-free).

A batch is a pure function of (seed, step): resuming at step s replays the batches the
killed run would have seen, and two runs with one config see identical data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from training.config import Config
from training.data import get_dataset
from vistas.images import ImageSpec


@dataclass
class Batch:
    images: list[Image.Image]
    captions: list[str]
    pair_labels: np.ndarray  # (B, B) float32: +1 where caption j describes image i, else -1


@dataclass
class EvalSuite:
    name: str
    kind: str  # "zero_shot" | "retrieval"
    examples: list
    class_names: list[str]
    prompts: Callable[[str], list[str]]


class BatchMaker:
    def __init__(self, config: Config, image_spec: ImageSpec):
        self.config, self.image_spec = config, image_spec
        self.sources = [get_dataset(d["name"], **d.get("kwargs", {})) for d in config.data]
        w = np.asarray([d["weight"] for d in config.data], np.float64)
        self.weights = w / w.sum()
        for d, ds in zip(config.data, self.sources):
            if len(ds) == 0:
                raise ValueError(f"training source {d['name']} is empty")

    def _pick(self, rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
        """n (source, index) pairs: source by mixture weight, index uniformly at random."""
        which = rng.choice(len(self.sources), size=n, p=self.weights)
        return [(int(s), int(rng.integers(len(self.sources[s])))) for s in which]

    def batch(self, step: int) -> Batch:
        rng = np.random.default_rng([self.config.seed, 1, step])
        examples, keys = [], []
        for s, i in self._pick(rng, self.config.batch_size):
            ex = self.sources[s][i]
            examples.append(ex)
            keys.append(_positive_key(self.config.data[s]["name"], ex))
        k = np.asarray(keys, dtype=object)
        pair_labels = np.where(k[:, None] == k[None, :], 1.0, -1.0).astype(np.float32)  # (B, B)
        return Batch([e.image for e in examples], [e.caption for e in examples], pair_labels)

    def tokenizer_corpus(self, n: int = 20_000) -> Iterator[str]:
        """Training captions only: the tokenizer never sees eval prompts or held-out pairs."""
        rng = np.random.default_rng([self.config.seed, 2])
        for s, i in self._pick(rng, n):
            yield self.sources[s][i].caption

    def eval_suites(self) -> list[EvalSuite]:
        suites = []
        for e in self.config.get("evals", []):
            ds = get_dataset(e["dataset"], **e.get("kwargs", {}))
            suites.append(EvalSuite(e["name"], e["kind"], list(ds), list(ds.class_names()), ds.zero_shot_prompts))
        return suites


def _positive_key(source: str, example) -> str:
    """Which pairs in a batch are positives, beyond the diagonal.

    SigLIP's Algorithm 1 takes only the diagonal as positive; with procedural captions a
    batch holds many identical captions, and calling those negatives teaches the model
    that "a red circle" does not describe a red circle. So a caption is a positive for
    every image it was written for verbatim, and for digits (every template names only
    the digit) for every image of the same digit.
    """
    if source == "digits" and example.label is not None:
        return f"digit:{example.label}"
    return "caption:" + example.caption
