"""Which patch size a FlexiViT bundle's images run at, per request (arXiv 2212.08013).

A request may name `patch_size`; one that does not gets the model's default under the
"fixed" policy. Under "adaptive" (settings `patch_size_policy`), the server trades accuracy
for throughput when it falls behind: while the requests waiting in the model's image queues
reach `patch_size_queue_high`, each new request moves one patch size coarser (fewer tokens:
p=16 at 48 px is 9 tokens against 36 at p=8); once they drop to `patch_size_queue_low`, one
finer again, never finer than the default. The two thresholds apart keep it from flapping.
The size used is in every response and counted in /metrics (`vistas_patch_size_images`).
"""

from __future__ import annotations

import threading

from vistas.inference.model import ServedModel
from vistas.serving.errors import APIError


class PatchSizePolicy:
    def __init__(self, policy: str = "fixed", queue_high: int = 8, queue_low: int = 1, metrics=None):
        if policy not in ("fixed", "adaptive"):
            raise ValueError(f"patch_size_policy must be 'fixed' or 'adaptive', got {policy!r}")
        if not 0 <= queue_low < queue_high:
            raise ValueError(f"patch_size_queue_low ({queue_low}) must be below patch_size_queue_high ({queue_high})")
        self.policy, self.high, self.low, self.metrics = policy, queue_high, queue_low, metrics
        self._levels: dict[str, int] = {}  # model -> index into its coarser-than-default ladder
        self._lock = threading.Lock()

    def choose(self, model: ServedModel, requested: int | None, images: int = 1) -> int:
        """The patch size for a request's images; APIError 422 for a size the model does not serve."""
        sizes = model.patch_sizes
        if requested is not None:
            if requested not in sizes:
                raise APIError(
                    422, "invalid_patch_size",
                    f"patch_size {requested} is not served by model {model.name!r}; it serves {sizes}"
                    + ("" if len(sizes) > 1 else " (not a FlexiViT bundle)"),
                )
            size = requested
        elif self.policy == "fixed" or len(sizes) == 1:
            size = model.spec.default_patch_size
        else:
            size = self._adaptive(model)
        if self.metrics is not None and images:
            self.metrics.patch_size_images.labels(model.name, str(size)).inc(images)
        return size

    def _ladder(self, model: ServedModel) -> list[int]:
        default = model.spec.default_patch_size
        return [p for p in model.patch_sizes if p >= default]  # the default, then coarser

    def _adaptive(self, model: ServedModel) -> int:
        ladder = self._ladder(model)
        depth = self._waiting(model)
        with self._lock:
            level = self._levels.get(model.name, 0)
            if depth >= self.high and level < len(ladder) - 1:
                level += 1
            elif depth <= self.low and level > 0:
                level -= 1
            self._levels[model.name] = level
        return ladder[level]

    @staticmethod
    def _waiting(model: ServedModel) -> int:
        runtime = model.runtime
        if not hasattr(runtime, "queue_depth"):  # no batching: nothing queues in the server
            return 0
        return sum(runtime.queue_depth(t) for t in model.spec.towers if t != "text")
