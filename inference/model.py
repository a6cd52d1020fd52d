"""A served model: a runtime plus the preprocessing its bundle prescribes.

Zero-shot classification follows CLIP prompt ensembling (Radford et al. 2021,
arXiv 2103.00020, Sec. 3.1.4): each label is written into every template, the
text embeddings are averaged and re-normalised. Scores follow SigLIP
(Zhai et al. 2023, arXiv 2303.15343): sigmoid(logit_scale * cos + logit_bias),
an independent probability per label that does not depend on the other labels.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import numpy as np
from PIL import Image

from vistas.bundle import TEXT_INPUT, BundleSpec
from vistas.inputs import image_inputs, input_size
from vistas.tokenizer import Tokenizer

# The label alone plus CLIP's most common ImageNet prompt. Clients with a domain
# ("a satellite photo of {}.") should send their own templates.
DEFAULT_TEMPLATES: tuple[str, ...] = ("a photo of a {}.", "{}")
LABEL_SLOT = "{}"


class LRUCache:
    """Thread-safe least-recently-used map with hit/miss counters."""

    def __init__(self, size: int):
        self.size = size
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> np.ndarray | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self.hits += 1
            self._data.move_to_end(key)
            return value

    def put(self, key: Hashable, value: np.ndarray) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class ServedModel:
    """Embeds PIL images and strings; classifies an image against labels."""

    def __init__(self, name: str, runtime, *, cache_size: int = 4096):
        self.name = name
        self.runtime = runtime  # any runtime of `vistas.inference.runtime`'s surface: spec, bundle_dir, inputs, run
        self.spec: BundleSpec = runtime.spec
        self.tokenizer = Tokenizer(self.spec.preprocess.text, runtime.bundle_dir)
        self.label_cache = LRUCache(cache_size)

    @property
    def dim(self) -> int:
        return self.spec.embed_dim

    def close(self) -> None:
        """Release the runtime; a batching runtime first finishes every queued request."""
        if (close := getattr(self.runtime, "close", None)) is not None:
            close()

    @property
    def space_id(self) -> str:
        return self.spec.space_id

    def image_inputs(self, images: Sequence[Image.Image]) -> dict[str, np.ndarray]:
        """RGB PIL images -> the image tower's named input tensors, batch first: pixels
        (B, 3, H, W), or NaFlex patches, mask and spatial shapes (`vistas.inputs`)."""
        return image_inputs(images, self.spec.preprocess.image)

    def image_need(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of an upright image -> the size this model's preprocessing resizes it to,
        what decoding may reduce it towards (`vistas.images.open_image(need=...)`)."""
        return input_size(self.spec.preprocess.image, width, height)

    def embed_image_inputs(self, per_image: Sequence[dict[str, np.ndarray]], patch_size: int | None = None) -> np.ndarray:
        """Tower inputs of single images (each `image_inputs([image])`, (1, ...)) -> float32 (B, D).

        Callers preprocess each image as soon as it is decoded and let the image go, so a
        request holds model inputs, not decoded images, until the model runs. `patch_size`:
        see `embed_images`."""
        tower = self.spec.image_tower(patch_size)
        if not per_image:
            return np.zeros((0, self.dim), np.float32)
        names = per_image[0].keys()
        return self.runtime.run(tower, {n: np.concatenate([x[n] for x in per_image]) for n in names})

    @property
    def patch_sizes(self) -> list[int]:
        """The patch sizes this model serves: a FlexiViT bundle's list, else its one patch size."""
        return sorted(self.spec.patch_sizes) or [self.spec.default_patch_size]

    def text_inputs(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Strings -> the text tower's named input tensors, batch first."""
        return {TEXT_INPUT: self.tokenizer.encode(list(texts))}  # (B, L) int64

    def embed_images(self, images: Sequence[Image.Image], patch_size: int | None = None) -> np.ndarray:
        """RGB PIL images -> float32 (B, D), unit norm, in input order. `patch_size` picks a
        FlexiViT bundle's graph (None: the bundle's default); every size embeds into one space."""
        tower = self.spec.image_tower(patch_size)
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self.runtime.run(tower, self.image_inputs(images))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Strings -> float32 (B, D), unit norm, in input order."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return self.runtime.run("text", self.text_inputs(texts))

    def label_embeddings(self, labels: Sequence[str], templates: Sequence[str] | None = None) -> np.ndarray:
        """Prompt-ensembled label embeddings, float32 (N, D), unit norm; cached per (label, templates)."""
        templates = tuple(templates) if templates else DEFAULT_TEMPLATES
        for t in templates:
            if LABEL_SLOT not in t:
                raise ValueError(f"template {t!r} has no {LABEL_SLOT!r} slot for the label")
        found: dict[str, np.ndarray] = {}
        for label in dict.fromkeys(labels):
            if (vec := self.label_cache.get((label, templates))) is not None:
                found[label] = vec
        missing = [label for label in dict.fromkeys(labels) if label not in found]
        if missing:
            # str.replace, not str.format: labels and templates may contain other braces.
            prompts = [t.replace(LABEL_SLOT, label) for label in missing for t in templates]
            emb = self.embed_texts(prompts).reshape(len(missing), len(templates), self.dim).mean(axis=1)
            emb /= np.linalg.norm(emb, axis=-1, keepdims=True)  # (M, D)
            for label, vec in zip(missing, emb):
                found[label] = vec
                self.label_cache.put((label, templates), vec)
        return np.stack([found[label] for label in labels])

    def classify(
        self,
        image: Image.Image,
        labels: Sequence[str],
        templates: Sequence[str] | None = None,
        multi_label: bool = False,
        patch_size: int | None = None,
    ) -> list[tuple[str, float]]:
        """Zero-shot classification -> [(label, probability)], best first.

        The probability is SigLIP's sigmoid, independent per label: several labels
        can be likely at once and probabilities need not sum to one. So
        `multi_label` does not change the scores; it is accepted for clients of
        softmax (CLIP-style) APIs, and both settings return every label, sorted.
        `patch_size`: see `embed_images`.
        """
        del multi_label  # see docstring: sigmoid scores are already per-label
        img = self.embed_images([image], patch_size)[0]  # (D,)
        cos = self.label_embeddings(labels, templates) @ img  # (N,)
        logits = self.spec.logit_scale * cos.astype(np.float64) + self.spec.logit_bias
        probs = 1.0 / (1.0 + np.exp(-logits))
        order = np.argsort(-probs, kind="stable")  # ties keep request order
        return [(labels[i], float(probs[i])) for i in order]


def load_models(
    bundles: Sequence[str],
    *,
    options=None,
    threads: int | None = None,
    providers: list[str] | None = None,
    max_batch: int = 32,
    cache_size: int = 4096,
    wrap: Callable[[object, str], object] | None = None,
    runtime: str = "onnx",
) -> dict[str, ServedModel]:
    """Bundle directories -> models by bundle name, in order (the first is the default).

    options:   `vistas.inference.onnx_runtime.OrtOptions` (threads / providers override its fields).
    wrap:      `wrap(runtime, model_name)` -> the runtime the model uses; the server wraps each
               in its batching queues (`vistas.serving.batching`), which live above this library.
    runtime:   what runs the towers (`vistas.inference.runtimes`): "onnx" or "triton://HOST:PORT".
    """
    from vistas.inference.runtimes import RuntimeOptions, open_runtime

    opened_with = RuntimeOptions(ort=options, threads=threads, providers=providers, max_batch=max_batch)
    models: dict[str, ServedModel] = {}
    for bundle in bundles:
        rt = open_runtime(bundle, runtime, opened_with)
        name = rt.spec.name
        if name in models:
            raise ValueError(
                f"two bundles are named {name!r} ({models[name].runtime.bundle_dir} and {bundle}); "
                "model names must be unique, re-export one under another name"
            )
        if wrap is not None:
            rt = wrap(rt, name)
        models[name] = ServedModel(name, rt, cache_size=cache_size)
    return models


def load_model(bundle: str, **kwargs) -> ServedModel:
    """One bundle directory -> its ServedModel (for batch jobs and evaluation)."""
    return next(iter(load_models([bundle], **kwargs).values()))
