"""onnxruntime over a bundle: numpy in, L2-normalised embeddings out.

The runtime knows tensors only; preprocessing (images, tokenizer) lives in
`serving.model`. Sessions are opened once and `InferenceSession.run` is
thread-safe, so one runtime serves all request threads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from vistas.bundle import EMBED_OUTPUT, IMAGE_INPUT, TEXT_INPUT, BundleSpec, load_bundle_spec


class BundleMismatchError(ValueError):
    """An ONNX graph does not have the inputs/outputs its bundle.json promises."""


class OnnxRuntime:
    """Image and text encoders of one bundle.

    threads:    intra-op threads per session (None: onnxruntime's default, all cores).
    providers:  onnxruntime execution providers (default CPU only, so results do not
                depend on which GPU packages happen to be installed).
    max_batch:  larger inputs run in chunks of this many rows, bounding peak memory.
    """

    def __init__(
        self,
        bundle_dir: str | Path,
        *,
        threads: int | None = None,
        providers: list[str] | None = None,
        max_batch: int = 32,
    ):
        self.bundle_dir = Path(bundle_dir)
        self.spec: BundleSpec = load_bundle_spec(self.bundle_dir)
        self.max_batch = max_batch
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1  # the towers are single chains; parallelism is intra-op
        if threads:
            options.intra_op_num_threads = threads
        providers = providers or ["CPUExecutionProvider"]

        img, txt = self.spec.preprocess.image, self.spec.preprocess.text
        self._image = self._open("image_encoder", options, providers)
        self._check(self._image, "image_encoder", IMAGE_INPUT, "tensor(float)", [None, 3, img.height, img.width])
        self._text = self._open("text_encoder", options, providers)
        self._check(self._text, "text_encoder", TEXT_INPUT, "tensor(int64)", [None, txt.length])

    @property
    def dim(self) -> int:
        return self.spec.embed_dim

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """float32 (B, 3, H, W) normalised pixels -> float32 (B, D)."""
        img = self.spec.preprocess.image
        assert pixels.ndim == 4 and pixels.shape[1:] == (3, img.height, img.width), (
            f"pixel_values must be (B, 3, {img.height}, {img.width}), got {pixels.shape}"
        )
        return self._run(self._image, IMAGE_INPUT, np.ascontiguousarray(pixels, dtype=np.float32))

    def embed_ids(self, ids: np.ndarray) -> np.ndarray:
        """int64 (B, L) token ids -> float32 (B, D)."""
        length = self.spec.preprocess.text.length
        assert ids.ndim == 2 and ids.shape[1] == length, f"input_ids must be (B, {length}), got {ids.shape}"
        return self._run(self._text, TEXT_INPUT, np.ascontiguousarray(ids, dtype=np.int64))

    def _run(self, session: ort.InferenceSession, name: str, x: np.ndarray) -> np.ndarray:
        out = np.empty((len(x), self.dim), np.float32)  # (B, D)
        for start in range(0, len(x), self.max_batch):
            chunk = x[start : start + self.max_batch]
            (emb,) = session.run([EMBED_OUTPUT], {name: chunk})
            out[start : start + len(chunk)] = emb
        return out

    def _open(self, role: str, options: ort.SessionOptions, providers: list[str]) -> ort.InferenceSession:
        if role not in self.spec.files:
            raise BundleMismatchError(f"bundle {self.bundle_dir} has no {role} in bundle.json `files`")
        return ort.InferenceSession(str(self.bundle_dir / self.spec.files[role]), options, providers=providers)

    def _check(self, session: ort.InferenceSession, role: str, name: str, dtype: str, shape: list) -> None:
        """Fail at load time, naming the file and what was expected, instead of at the first request.

        `shape` holds the expected sizes, None where any size (batch) is fine; a symbolic
        dimension in the graph matches any expected size.
        """
        where = f"{self.bundle_dir / self.spec.files[role]}"
        inputs = session.get_inputs()
        if [i.name for i in inputs] != [name]:
            raise BundleMismatchError(
                f"{where}: expected exactly one input {name!r}, found {[i.name for i in inputs]}; re-export the bundle"
            )
        inp = inputs[0]
        fixed = [d if isinstance(d, int) else None for d in inp.shape]
        shape_ok = len(fixed) == len(shape) and all(
            g is None or e is None or g == e for g, e in zip(fixed, shape)
        )
        if inp.type != dtype or not shape_ok:
            want = ["B" if e is None else e for e in shape]
            raise BundleMismatchError(
                f"{where}: input {name!r} is {inp.type} {inp.shape}, but bundle.json implies {dtype} {want}; "
                "the graph and bundle.json do not belong together, re-export the bundle"
            )
        outputs = {o.name: o for o in session.get_outputs()}
        out = outputs.get(EMBED_OUTPUT)
        if out is None:
            raise BundleMismatchError(f"{where}: no output {EMBED_OUTPUT!r} (found {sorted(outputs)})")
        last = out.shape[-1] if out.shape else None
        if len(out.shape) != 2 or (isinstance(last, int) and last != self.dim):
            raise BundleMismatchError(
                f"{where}: output {EMBED_OUTPUT!r} has shape {out.shape}, expected (B, {self.dim}) = embed_dim"
            )
