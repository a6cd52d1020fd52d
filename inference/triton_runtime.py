"""A runtime whose towers run on a remote KServe v2 server through NVIDIA's `tritonclient`.

    vistas serve models/x/bundle --runtime triton://triton-host:8000

The remote is an NVIDIA Triton loaded with the repository `vistas deploy triton` generates
from this bundle, or another vistas server (its /v2 routes expose the same models). The
bundle directory still gives the spec and tokenizer: preprocessing, classify and search run
here, only `run(tower, tensors)` crosses the network, as binary tensors.

At start-up the runtime checks, for each tower of the bundle (a FlexiViT bundle's per-patch-size
image towers included, so `patch_size` requests run remotely too), that the remote has
`<bundle name>.<role>` with the tensors this bundle's preprocessing produces and an (B, D) FP32
output, and, where the remote publishes it in the model config, the same embedding-space id.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from vistas.bundle import EMBED_OUTPUT, TOWER_ROLES, BundleSpec, load_bundle_spec
from vistas.inference.runtime import (
    BundleMismatchError,
    BundleRuntime,
    RemoteRuntimeError,
    TensorSpec,
    Tower,
    check_feeds,
    expected_inputs,
    run_in_chunks,
)
from vistas.v2_protocol import SPACE_PARAMETER, V2_DATATYPES, tower_model_name, v2_shape

log = logging.getLogger(__name__)


class TritonRuntime(BundleRuntime):
    """Towers of one bundle on a v2 server at `address` ("HOST:PORT").

    max_batch: larger inputs go in chunks of at most this many rows (and never more than
               the remote model's own max_batch_size, when its config gives one).
    timeout:   seconds for connecting and for each call.
    """

    def __init__(self, bundle_dir: str | Path, address: str, *, max_batch: int = 32, timeout: float = 60.0):
        self.bundle_dir = Path(bundle_dir)
        self.spec: BundleSpec = load_bundle_spec(self.bundle_dir)
        self.address = address.removeprefix("http://").rstrip("/")
        self.max_batch = max_batch
        self.timeout = timeout
        self._local = threading.local()
        self._clients: list = []
        self._lock = threading.Lock()
        self._inputs: dict[str, list[TensorSpec]] = {}
        self._batch: dict[str, int] = {}
        client = self._client()
        try:
            live = client.is_server_live()
        except Exception as e:  # refused, unresolvable, timed out: tritonclient raises several kinds
            raise RemoteRuntimeError(
                f"no KServe v2 server answers at http://{self.address} ({type(e).__name__}: {e}); "
                "start Triton (or `vistas serve`) there, or fix the address in --runtime triton://HOST:PORT"
            ) from None
        if not live:
            raise RemoteRuntimeError(f"the server at http://{self.address} says it is not live (GET /v2/health/live)")
        for tower in self.spec.towers:  # "image", "text", then a FlexiViT bundle's other patch sizes
            self._inputs[tower], self._batch[tower] = self._check(client, tower)

    def run(self, tower: Tower, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """{name: (B, ...) array} -> float32 (B, D), computed remotely in chunks of the remote's max batch."""
        from tritonclient.http import InferInput, InferRequestedOutput

        feeds = check_feeds(self._inputs[tower], inputs, f"{tower} tower")
        name, client = tower_model_name(self.spec.name, tower), self._client()

        def infer(chunk: dict[str, np.ndarray]) -> np.ndarray:
            tensors = []
            for s in self._inputs[tower]:
                x = InferInput(s.name, list(chunk[s.name].shape), V2_DATATYPES[s.dtype])
                x.set_data_from_numpy(chunk[s.name], binary_data=True)
                tensors.append(x)
            try:
                result = client.infer(name, tensors, outputs=[InferRequestedOutput(EMBED_OUTPUT, binary_data=True)])
            except Exception as e:
                raise RemoteRuntimeError(f"model {name!r} at http://{self.address} failed: {_message(e)}") from None
            emb, rows = result.as_numpy(EMBED_OUTPUT), len(next(iter(chunk.values())))
            if emb is None or emb.shape != (rows, self.dim):
                got = None if emb is None else emb.shape
                raise RemoteRuntimeError(
                    f"model {name!r} at http://{self.address} returned {EMBED_OUTPUT} {got}, expected {(rows, self.dim)}"
                )
            return emb

        return run_in_chunks(feeds, self._batch[tower], self.dim, infer)

    def close(self) -> None:
        with self._lock:
            for c in self._clients:
                c.close()
            self._clients.clear()

    def _client(self):
        """One client per thread: tritonclient's HTTP client is not thread-safe."""
        client = getattr(self._local, "client", None)
        if client is None:
            from tritonclient.http import InferenceServerClient

            client = InferenceServerClient(
                self.address, connection_timeout=self.timeout, network_timeout=self.timeout
            )
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _check(self, client, tower: Tower) -> tuple[list[TensorSpec], int]:
        """The remote model's metadata against this bundle -> (input specs, rows per call)."""
        name = tower_model_name(self.spec.name, tower)
        where = f"model {name!r} at http://{self.address}"
        try:
            meta = client.get_model_metadata(name)
        except Exception as e:
            # A repository written before deploy knew per-patch-size graphs has the base towers only.
            flexi = "" if tower in TOWER_ROLES else (
                f" (this FlexiViT bundle needs one model per patch size: {self._model_names()})"
            )
            raise BundleMismatchError(
                f"{where} is not available ({_message(e)}){flexi}; load the Triton repository made by "
                f"`vistas deploy triton {self.bundle_dir} OUT` there, or serve this bundle with vistas"
            ) from None
        expected = expected_inputs(self.spec, tower)
        want = sorted((s.name, V2_DATATYPES[s.dtype], tuple(v2_shape(s.shape))) for s in expected)
        got = sorted((t["name"], t["datatype"], tuple(t["shape"])) for t in meta.get("inputs", []))
        if len(got) != len(want) or any(
            gn != wn or gd != wd or not _shape_fits(gs, ws) for (gn, gd, gs), (wn, wd, ws) in zip(got, want)
        ):
            raise BundleMismatchError(
                f"{where} takes inputs {got}, but bundle {self.bundle_dir} feeds {want}; "
                "the remote serves another model (or another export of it)"
            )
        outputs = {t["name"]: t for t in meta.get("outputs", [])}
        out = outputs.get(EMBED_OUTPUT)
        if out is None or out["datatype"] != "FP32" or not _shape_fits(tuple(out["shape"]), (-1, self.dim)):
            raise BundleMismatchError(
                f"{where} has outputs {list(outputs.values())}, expected {EMBED_OUTPUT!r} FP32 [-1, {self.dim}]"
            )
        return expected, self._check_config(client, name, where)

    def _model_names(self) -> list[str]:
        return [tower_model_name(self.spec.name, t) for t in self.spec.towers]

    def _check_config(self, client, name: str, where: str) -> int:
        """Embedding space and max batch from the model config, where the remote has one."""
        try:
            config = client.get_model_config(name)
        except Exception as e:
            log.warning("%s: no model config (%s); cannot verify its embedding space", where, _message(e))
            return self.max_batch
        space = (config.get("parameters") or {}).get(SPACE_PARAMETER, {}).get("string_value")
        if space is None:
            log.warning("%s: its config has no %s; cannot verify its embedding space", where, SPACE_PARAMETER)
        elif space != self.spec.space_id:
            raise BundleMismatchError(
                f"{where} embeds into space {space}, but bundle {self.bundle_dir} is space {self.spec.space_id}: "
                "the remote runs other weights; deploy this bundle there"
            )
        remote_max = int(config.get("max_batch_size") or 0)
        return min(self.max_batch, remote_max) if remote_max > 0 else self.max_batch


def _shape_fits(remote: tuple, expected: tuple) -> bool:
    """-1 on either side is any size."""
    return len(remote) == len(expected) and all(r == e or -1 in (r, e) for r, e in zip(remote, expected))


def _message(e: Exception) -> str:
    msg = e.message() if hasattr(e, "message") and callable(e.message) else str(e)
    return f"{type(e).__name__}: {msg}"
