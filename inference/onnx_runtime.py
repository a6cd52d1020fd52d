"""onnxruntime over a bundle: named numpy tensors in, L2-normalised embeddings out.

The runtime surface is described in `vistas.inference.runtime`. Sessions are opened once and
`InferenceSession.run` is thread-safe, so one runtime serves all request threads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from vistas.bundle import EMBED_OUTPUT, BundleSpec, load_bundle_spec
from vistas.inference.runtime import (
    BundleMismatchError,
    BundleRuntime,
    TensorSpec,
    Tower,
    check_feeds,
    expected_inputs,
    run_in_chunks,
)

log = logging.getLogger("vistas.inference")

_ORT_TYPES = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(int32)": "int32",
              "tensor(bool)": "bool", "tensor(float16)": "float16"}


@dataclass(frozen=True)
class OrtOptions:
    """onnxruntime session options (see onnxruntime's "Tune performance" guide).

    intra_op_threads:   threads inside one operator (a MatMul); None: onnxruntime's
                        default, one per physical core. With several models or towers
                        running at once, give each a share of the cores.
    inter_op_threads:   threads running independent operators at once; only used in
                        "parallel" execution mode. The towers are single chains of
                        operators, so "sequential" with 1 is right for them.
    graph_optimization: "disable" | "basic" (constant folding, redundant nodes) |
                        "extended" (+ fusions: attention, GELU, LayerNorm) | "all" (+ layout).
    memory_arena:       keep a CPU memory arena (fast allocations; holds memory at its peak).
    memory_pattern:     plan allocations from the first run's shapes (helps fixed shapes).
    spinning:           what idle intra-op threads do. "on" (onnxruntime's default): they
                        busy-wait for the next operator and the next run, a core each,
                        which suits a process that only runs the model. "during_run":
                        they busy-wait between the operators of a run and sleep once it
                        returns (`session.force_spinning_stop`), so the cores are free for
                        decoding, resizing and HTTP between runs. "off": they always sleep
                        (`session.intra_op.allow_spinning` = 0); least CPU, a wake-up per operator.
    providers:          execution providers in priority order; "auto" = CUDA when this
                        onnxruntime build has it, else CPU. See `resolve_providers`.
    """

    intra_op_threads: int | None = None
    inter_op_threads: int = 1
    execution_mode: Literal["sequential", "parallel"] = "sequential"
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    memory_arena: bool = True
    memory_pattern: bool = True
    # "during_run": measured on 2 cores with the harness of `vistas bench` 2. and 3., one server
    # per mode, a server answers batch-1 B/16 requests as fast as with "on", and 8 concurrent
    # tiny-model requests ~20-30 % faster: the threads that spun between runs were taking a
    # core from the decoding and the HTTP. "off" was as fast on the tiny model, 15 % slower on the B/16.
    spinning: Literal["on", "during_run", "off"] = "during_run"
    providers: tuple[str, ...] = ("CPUExecutionProvider",)

    def session_options(self) -> ort.SessionOptions:
        options = ort.SessionOptions()
        options.graph_optimization_level = _GRAPH_LEVELS[self.graph_optimization]
        options.execution_mode = (
            ort.ExecutionMode.ORT_PARALLEL if self.execution_mode == "parallel" else ort.ExecutionMode.ORT_SEQUENTIAL
        )
        options.inter_op_num_threads = self.inter_op_threads
        if self.intra_op_threads:
            options.intra_op_num_threads = self.intra_op_threads
        options.enable_cpu_mem_arena = self.memory_arena
        options.enable_mem_pattern = self.memory_pattern
        if self.spinning == "off":
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        elif self.spinning == "during_run":
            options.add_session_config_entry("session.force_spinning_stop", "1")
        return options


_GRAPH_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_GPU_PROVIDERS = ("CUDAExecutionProvider",)


def resolve_providers(requested: tuple[str, ...] | list[str]) -> list[str]:
    """Requested execution providers -> the ones this onnxruntime build has, CPU always last.

    "auto" asks for CUDA when available. A provider this build does not have (CUDA on the
    CPU wheel, on a machine without a GPU) is dropped with a warning, so one configuration
    runs on GPU and CPU nodes alike; a name onnxruntime does not know at all is an error.
    """
    known, available = set(ort.get_all_providers()), ort.get_available_providers()
    wanted: list[str] = []
    for name in requested:
        names = _GPU_PROVIDERS if name == "auto" else (name,)
        for n in names:
            if n not in known:
                raise ValueError(
                    f"unknown onnxruntime execution provider {n!r}; use 'auto' or some of {sorted(known)}"
                )
            if n not in available:
                if name != "auto":
                    log.warning("execution provider %s is not available in this onnxruntime build; skipped", n)
                continue
            if n not in wanted:
                wanted.append(n)
    if "CPUExecutionProvider" in wanted:
        wanted.remove("CPUExecutionProvider")
    return wanted + ["CPUExecutionProvider"]  # operators a GPU provider lacks fall back to CPU


class OnnxRuntime(BundleRuntime):
    """Image and text encoders of one bundle.

    options:    session options and execution providers (OrtOptions; default: CPU, all cores).
    threads, providers: shortcuts that override `options.intra_op_threads` / `.providers`.
    max_batch:  larger inputs run in chunks of this many rows, bounding peak memory.
    """

    def __init__(
        self,
        bundle_dir: str | Path,
        *,
        options: OrtOptions | None = None,
        threads: int | None = None,
        providers: list[str] | None = None,
        max_batch: int = 32,
    ):
        self.bundle_dir = Path(bundle_dir)
        self.spec: BundleSpec = load_bundle_spec(self.bundle_dir)
        self.max_batch = max_batch
        options = options or OrtOptions()
        if threads:
            options = replace(options, intra_op_threads=threads)
        if providers:
            options = replace(options, providers=tuple(providers))
        self.options = options
        self.providers = resolve_providers(options.providers)
        session_options = options.session_options()
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._inputs: dict[str, list[TensorSpec]] = {}
        for tower in self.spec.towers:  # "image", "text", and a FlexiViT bundle's other patch sizes
            self._sessions[tower] = self._open(tower, session_options, self.providers)
            self._inputs[tower] = self._check(tower, expected_inputs(self.spec, tower))

    def run(self, tower: Tower, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """{name: (B, ...) array} -> float32 (B, D), in chunks of `max_batch` rows."""
        feeds = check_feeds(self._inputs[tower], inputs, f"{tower} tower")
        session = self._sessions[tower]
        return run_in_chunks(feeds, self.max_batch, self.dim, lambda chunk: session.run([EMBED_OUTPUT], chunk)[0])

    def _open(self, tower: Tower, options: ort.SessionOptions, providers: list[str]) -> ort.InferenceSession:
        role = self.spec.role(tower)
        if role not in self.spec.files:
            raise BundleMismatchError(f"bundle {self.bundle_dir} has no {role} in bundle.json `files`")
        return ort.InferenceSession(str(self.bundle_dir / self.spec.files[role]), options, providers=providers)

    def _check(self, tower: Tower, expected: list[TensorSpec]) -> list[TensorSpec]:
        """Fail at load time, naming the file and what was expected, instead of at the first request.

        A symbolic dimension in the graph matches any expected size; None in `expected`
        accepts any graph size. Returns the expected specs (what callers must feed).
        """
        session = self._sessions[tower]
        where = f"{self.bundle_dir / self.spec.files[self.spec.role(tower)]}"
        graph_inputs = {i.name: i for i in session.get_inputs()}
        if sorted(graph_inputs) != sorted(t.name for t in expected):
            raise BundleMismatchError(
                f"{where}: expected inputs {[t.name for t in expected]}, found {sorted(graph_inputs)}; "
                "re-export the bundle"
            )
        for want in expected:
            got = graph_inputs[want.name]
            fixed = [d if isinstance(d, int) else None for d in got.shape]
            shape_ok = len(fixed) == len(want.shape) and all(
                g is None or e is None or g == e for g, e in zip(fixed, want.shape)
            )
            if _ORT_TYPES.get(got.type) != want.dtype or not shape_ok:
                shape = ["B" if i == 0 and e is None else e for i, e in enumerate(want.shape)]
                raise BundleMismatchError(
                    f"{where}: input {want.name!r} is {got.type} {got.shape}, but bundle.json implies "
                    f"{want.dtype} {shape}; the graph and bundle.json do not belong together, re-export the bundle"
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
        return expected
