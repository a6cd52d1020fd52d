"""Training batches and eval suites from a recipe's `data` / `evals` entries (torch-free).

A batch is a pure function of (seed, step): resuming at step s replays the batches the
killed run would have seen, and two runs with one config see identical data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from vistas.images import ImageSpec
from vistas.training.config import Config
from vistas.training.data import DATASETS, digits, get_dataset
from vistas.training.data.shapes import caption_describes, parse_caption
from vistas.training.evals import EVAL_DATASETS, get_eval_dataset


@dataclass
class Batch:
    images: list[Image.Image]
    captions: list[str]
    pair_labels: np.ndarray  # (B, B) float32: +1 where caption j is true of image i, else -1


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
        self.schedules = [weight_schedule(d["name"], d["weight"]) for d in config.data]
        knots = sorted({0, *(k for steps, _ in self.schedules for k in steps)})
        for step in knots:  # piecewise linear: the total is positive everywhere iff at every knot
            if sum(np.interp(step, *sch) for sch in self.schedules) <= 0:
                raise ValueError(f"the data mixture's weights are all 0 at step {step}; give some source a positive weight")
        self.weights = self.weights_at(0)
        for d, ds in zip(config.data, self.sources):
            if len(ds) == 0:
                raise ValueError(f"training source {d['name']} is empty")
            if d.get("twins") and not hasattr(ds, "twin"):
                raise ValueError(f"training source {d['name']} cannot make twins (it has no `twin` method)")

    def weights_at(self, step: int) -> np.ndarray:
        """The mixture's probabilities at `step` (each source's weight schedule, normalised)."""
        w = np.asarray([np.interp(step, *sch) for sch in self.schedules], np.float64)
        return w / w.sum()

    def _pick(self, rng: np.random.Generator, n: int, weights: np.ndarray | None = None) -> list[tuple[int, int]]:
        """n (source, index) pairs: source by mixture weight, index uniformly at random."""
        which = rng.choice(len(self.sources), size=n, p=self.weights if weights is None else weights)
        return [(int(s), int(rng.integers(len(self.sources[s])))) for s in which]

    def batch(self, step: int) -> Batch:
        rng = np.random.default_rng([self.config.seed, 1, step])
        picked = self._pick(rng, self.config.batch_size, self.weights_at(step))
        names = [self.config.data[s]["name"] for s, _ in picked]
        examples = [self.sources[s][i] for s, i in picked]
        self._add_twins(rng, picked, examples)
        return Batch([e.image for e in examples], [e.caption for e in examples], pair_labels(names, examples))

    def _add_twins(self, rng: np.random.Generator, picked: list[tuple[int, int]], examples: list) -> None:
        """A source's `twins` fraction of its batch slots hold minimal-pair twins of its other slots
        (`ShapesDataset.twin`): hard negatives that differ in one attribute only."""
        for s, entry in enumerate(self.config.data):
            fraction = entry.get("twins", 0)
            if not fraction:
                continue
            slots = rng.permutation([j for j, (src, _) in enumerate(picked) if src == s])
            half = int(round(fraction * len(slots) / 2))
            for a, b in zip(slots[:half], slots[half : 2 * half]):
                twin = self.sources[s].twin(examples[a], rng)
                if twin is not None:
                    examples[b] = twin

    def tokenizer_corpus(self, n: int = 5_000) -> Iterator[str]:
        """Training captions only: the tokenizer never sees eval prompts or held-out pairs."""
        rng = np.random.default_rng([self.config.seed, 2])
        for s, i in self._pick(rng, n):
            yield self.sources[s][i].caption

    def eval_suites(self) -> list[EvalSuite]:
        suites = []
        for e in self.config.get("evals", []):
            ds = eval_dataset(e["dataset"], **e.get("kwargs", {}))
            suites.append(EvalSuite(e["name"], e["kind"], list(ds), list(ds.class_names()), ds.zero_shot_prompts))
        return suites


def weight_schedule(name: str, weight) -> tuple[list[float], list[float]]:
    """A data entry's `weight` -> (steps, weights) knots for np.interp.

    A number is a constant weight. A list of [step, weight] pairs is a schedule, linear between
    the knots and constant outside them: a curriculum (Bengio et al. 2009), e.g. easy sources
    first, [[0, 1.0], [1000, 0.2]], and the hard ones later, [[0, 0.0], [1000, 0.8]]."""
    if isinstance(weight, (int, float)) and not isinstance(weight, bool):
        knots = [(0, float(weight))]
    elif isinstance(weight, (list, tuple)) and weight and all(
            isinstance(k, (list, tuple)) and len(k) == 2 and all(isinstance(v, (int, float)) for v in k) for k in weight):
        knots = [(float(a), float(b)) for a, b in weight]
    else:
        raise ValueError(f"data source {name!r}: weight {weight!r} is not a number or a list of [step, weight] pairs")
    steps, weights = zip(*knots)
    if any(b <= a for a, b in zip(steps, steps[1:])) or min(weights) < 0:
        raise ValueError(f"data source {name!r}: weight schedule {weight!r} needs increasing steps and weights >= 0")
    return list(steps), list(weights)


def eval_dataset(name: str, **kwargs):
    """An `evals` entry's data set: an independent eval set (vistas.training.evals, eval-only) or a
    training data set's held-out split (vistas.training.data). One name never means both."""
    if name in EVAL_DATASETS:
        if name in DATASETS:
            raise ValueError(f"{name!r} names both a training data set and an eval set; rename one")
        return get_eval_dataset(name, **kwargs)
    return get_dataset(name, **kwargs)


def pair_labels(sources: list[str], examples: list) -> np.ndarray:
    """(B, B) +1/-1: is caption j true of image i?

    SigLIP's Algorithm 1 takes only the diagonal as positive. Procedural captions repeat and
    overlap ("a red circle" describes many images of a batch), and calling those negatives
    teaches the model that "a red circle" does not describe a red circle. So a pair is
    positive when the caption is true of the image: for shapes by `caption_describes` on the
    generating attributes, for digits by `digits.caption_describes` (the digit, and
    "handwritten" or "printed" only of that source), and otherwise only for a verbatim-equal
    caption.
    """
    n = len(examples)
    labels = -np.ones((n, n), np.float32)
    parsed = [parse_caption(e.caption) if src == "shapes" else None for src, e in zip(sources, examples)]
    # A shapes caption can only be true of an image with the same shapes: comparing these keys
    # first skips most `caption_describes` calls (B^2 of them cost ~20 ms a 128-batch).
    said = [sorted(s for _, _, s in p[0]) if p else None for p in parsed]
    drawn = [sorted(o["shape"] for o in e.attrs["objects"]) if src == "shapes" else None
             for src, e in zip(sources, examples)]
    for i, (src_i, ex_i) in enumerate(zip(sources, examples)):
        for j, (src_j, ex_j) in enumerate(zip(sources, examples)):
            if i == j:
                labels[i, j] = 1
            elif src_i != src_j:
                continue
            elif src_i == "shapes":
                labels[i, j] = 1 if said[j] == drawn[i] and caption_describes(parsed[j], ex_i.attrs) else -1
            elif src_i == "digits":
                same = ex_i.label == ex_j.label and digits.caption_describes(ex_j.caption, ex_i.attrs)
                labels[i, j] = 1 if same else -1
            elif ex_i.caption == ex_j.caption:
                labels[i, j] = 1
    return labels
