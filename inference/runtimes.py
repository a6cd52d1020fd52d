"""Runtime registry: which runtime runs a bundle's towers, chosen by a runtime URL.

    onnx                  onnxruntime in this process (the default)
    triton://HOST:PORT    a remote NVIDIA Triton, or any KServe v2 server (another vistas), via tritonclient

    runtime = open_runtime("models/x/bundle", "triton://10.0.0.5:8000", RuntimeOptions(max_batch=32))

Every runtime has the surface documented in `vistas.inference.runtime` (spec, bundle_dir, inputs, run);
preprocessing, tokenising, classify and search stay in vistas whichever runs the towers.
Openers import their runtime lazily, so this module is light.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vistas.inference.runtime import RemoteRuntimeError  # noqa: F401  (re-exported: callers catch it here)

if TYPE_CHECKING:  # onnxruntime is imported by the onnx opener only
    from vistas.inference.onnx_runtime import OrtOptions


@dataclass(frozen=True)
class RuntimeOptions:
    ort: OrtOptions | None = None  # onnxruntime session options and providers (None: the defaults)
    threads: int | None = None  # overrides ort.intra_op_threads (None: keep it)
    providers: list[str] | None = None  # overrides ort.providers (None: keep them)
    max_batch: int = 32  # larger inputs run in chunks of this many rows
    timeout: float = 60.0  # seconds a remote runtime may take per call


Opener = Callable[[Path, str, RuntimeOptions], object]  # (bundle dir, address after "://", options) -> runtime
RUNTIMES: dict[str, Opener] = {}


def register(scheme: str, opener: Opener) -> None:
    if scheme in RUNTIMES:
        raise ValueError(f"runtime {scheme!r} is already registered (by {RUNTIMES[scheme].__module__})")
    RUNTIMES[scheme] = opener


def parse_runtime(url: str) -> tuple[str, str]:
    """"onnx" -> ("onnx", ""); "triton://h:8001" -> ("triton", "h:8001")."""
    scheme, sep, address = url.partition("://")
    if scheme not in RUNTIMES:
        raise ValueError(
            f"unknown runtime {url!r}; expected one of {sorted(RUNTIMES)}, e.g. 'onnx' or 'triton://HOST:PORT'"
        )
    if scheme == "onnx" and sep:
        raise ValueError(f"runtime 'onnx' takes no address, got {url!r}")
    if scheme != "onnx" and not address:
        raise ValueError(f"runtime {scheme!r} needs an address: '{scheme}://HOST:PORT', got {url!r}")
    return scheme, address


def open_runtime(bundle_dir: str | Path, url: str = "onnx", options: RuntimeOptions | None = None):
    scheme, address = parse_runtime(url)
    return RUNTIMES[scheme](Path(bundle_dir), address, options or RuntimeOptions())


def _onnx(bundle_dir: Path, address: str, options: RuntimeOptions):
    from vistas.inference.onnx_runtime import OnnxRuntime

    return OnnxRuntime(
        bundle_dir, options=options.ort, threads=options.threads, providers=options.providers, max_batch=options.max_batch
    )


def _triton(bundle_dir: Path, address: str, options: RuntimeOptions):
    from vistas.inference.triton_runtime import TritonRuntime

    return TritonRuntime(bundle_dir, address, max_batch=options.max_batch, timeout=options.timeout)


register("onnx", _onnx)
register("triton", _triton)
