"""Server settings: explicit values, `VISTAS_*` environment variables, a settings file, defaults.

Precedence, highest first: values given in code (`Settings(...)`, `vistas serve` flags),
environment variables (`VISTAS_MAX_TEXTS=64`), the settings file (TOML or JSON, named by
`VISTAS_SETTINGS_FILE` or `vistas serve --settings FILE`, keys are the field names below),
then the defaults. Every field is listed with its meaning in README.md ("Settings").

`get_settings()` reads the environment once per process (the CLI path);
`create_app(settings)` always takes its settings explicitly, so tests build
apps with their own limits.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from vistas.images import DEFAULT_MAX_PIXELS, DEFAULT_REDUCE_ABOVE_PIXELS

ENV_PREFIX = "VISTAS_"
SETTINGS_FILE_ENV = "VISTAS_SETTINGS_FILE"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    # ---- what to serve ------------------------------------------------------------------
    # The first bundle is the default model; VISTAS_BUNDLES="a,b" or '["a","b"]'.
    bundles: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Where data lives when no path is given: $XDG_DATA_HOME/vistas, else ~/.local/share/vistas
    # (the XDG base-directory convention). VISTAS_DATA_DIR moves it.
    data_dir: str = Field(default_factory=lambda: default_data_dir())
    # One sub-directory per collection; None: <data_dir>/index, so collections work out of the box.
    index_dir: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: str = "info"
    # json: one object per line, one line per request; text: for people; auto: text when stderr is a terminal
    log_format: Literal["auto", "json", "text"] = "auto"
    # Lines waiting for the log-writer thread; when stderr is not read fast enough and this many
    # wait, new lines are dropped and counted (vistas_log_records_dropped_total) so serving never
    # blocks on the log. 0: write from the logging thread and wait for stderr (vistas.serving.logs).
    log_queue_size: int = Field(10_000, ge=0)

    # ---- what runs the towers (vistas.inference.runtimes) -------------------------------------------
    # "onnx": onnxruntime in this process; "triton://HOST:PORT": a remote Triton / KServe v2 server.
    runtime: str = "onnx"

    # ---- onnxruntime (vistas.inference.onnx_runtime.OrtOptions) -----------------------------------------
    threads: int | None = Field(None, ge=1)  # intra-op threads per session; None: one per physical core
    inter_op_threads: int = Field(1, ge=1)  # only used with execution_mode="parallel"
    execution_mode: Literal["sequential", "parallel"] = "sequential"
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    memory_arena: bool = True
    memory_pattern: bool = True
    spinning: Literal["on", "during_run", "off"] = "during_run"  # idle intra-op threads (vistas.inference.onnx_runtime.OrtOptions)
    # Priority order; "auto" = CUDA when this onnxruntime build has it. CPU is always the fallback.
    providers: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["CPUExecutionProvider"])
    inference_batch_size: int = Field(32, ge=1)  # one model call runs at most this many rows (chunks)
    classify_cache_size: int = Field(4096, ge=0)  # label embeddings kept per model (0: no cache)

    # ---- dynamic batching across requests (vistas.serving.batching) ------------------------------
    batching: bool = True
    batch_max_size: int = Field(32, ge=1)  # rows per batched model call
    # How long the oldest request may wait for others to join its batch. 0: batches form only
    # from requests that queued while the model was busy, which costs no latency at low load;
    # raise it (2-10 ms) where a larger batch is almost free (GPUs).
    batch_max_delay_ms: float = Field(0.0, ge=0)
    batch_queue_size: int = Field(64, ge=1)  # requests waiting per model and tower; beyond: 429
    batch_timeout_s: float = Field(30.0, gt=0)  # longest wait in a queue; beyond: 503 queue_timeout
    # Model calls of one tower running at once on the shared session (Triton's instance count).
    # On a CPU, batch_workers=2 with threads=1 trades a lone request's latency for throughput
    # under concurrent load (vistas.serving.batching); keep batch_workers x threads <= cores.
    batch_workers: int = Field(1, ge=1)

    # ---- FlexiViT bundles: the patch size of requests that name none (vistas.serving.patch_size) --
    # "fixed": the bundle's default. "adaptive": coarser patches while the image queues hold
    # patch_size_queue_high requests or more, finer again at patch_size_queue_low or fewer.
    patch_size_policy: Literal["fixed", "adaptive"] = "fixed"
    patch_size_queue_high: int = Field(8, ge=1)
    patch_size_queue_low: int = Field(1, ge=0)

    # ---- auth and admission ---------------------------------------------------------------
    # API keys: none configured = no auth. VISTAS_API_KEYS="k1,k2"; a file holds one key per line.
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_keys_file: str | None = None
    # Paths answered without a key (and without rate limits): probes, scrapes, the API docs and
    # their assets (/docs/assets/..., served here: vistas.serving.routers.docs).
    public_paths: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["/health", "/ready", "/metrics", "/docs", "/docs/*", "/redoc", "/openapi.json"]
    )
    rate_limit_per_s: float | None = Field(None, gt=0)  # per key (or per client address without keys)
    rate_limit_burst: int | None = Field(None, ge=1)  # bucket size; None: max(1, 2 x the rate)
    # Counted once its body is in (vistas.serving.admission), so slow uploads hold no slot.
    max_concurrent_requests: int = Field(256, ge=1)  # requests in progress; beyond: 429 server_busy
    # Addresses / CIDRs of reverse proxies whose X-Forwarded-For names the client (for rate
    # limits, the auth throttle and logs). None by default: anyone can write that header.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # A login throttle: this many wrong API keys from one client address within the window,
    # then 429 too_many_auth_failures for that address until the oldest failure ages out.
    auth_failure_limit: int = Field(10, ge=1)
    auth_failure_window_s: float = Field(60.0, gt=0)

    # ---- slow clients: time limits on reading a request -------------------------------------
    # Request headers must be complete this long after the connection opens (or after the first
    # byte of a keep-alive request); else 408 and the connection is closed (slowloris).
    header_timeout_s: float = Field(10.0, gt=0)
    # The whole body must arrive this long after the headers; else 408 request_timeout. 60 s
    # lets a 20 MB body (max_body_bytes) come at ~350 KB/s; raise it for slow links.
    body_timeout_s: float = Field(60.0, gt=0)

    # ---- request limits: what a single request may ask for --------------------------------
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1)  # 20 MB: a handful of full-size photos
    max_image_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1)  # decompression-bomb guard, from the header
    # Pixels all images of one request decode to (JPEGs at their DCT-scaled size), from the
    # headers before any is decoded; beyond: 413 too_many_pixels. Bounds a request's decode time.
    max_request_pixels: int = Field(5 * DEFAULT_MAX_PIXELS, ge=1)
    # Full-size decoded pixels held at once across all requests (vistas.serving.pixel_budget): memory
    # grows with pixels, not bytes. An image waits for room up to batch_timeout_s, then 503.
    max_pixels_in_flight: int = Field(2 * DEFAULT_MAX_PIXELS, ge=1)
    # Larger images are reduced while decoding, to >= 3x the model's input (vistas.images); smaller
    # ones decode at full size, bit-exact with training and transformers. 0: reduce every image.
    reduce_above_pixels: int = Field(DEFAULT_REDUCE_ABOVE_PIXELS, ge=0)
    max_batch_images: int = Field(64, ge=1)
    max_texts: int = Field(256, ge=1)
    max_text_chars: int = Field(2000, ge=1)  # far above any text tower's token length
    max_labels: int = Field(1000, ge=1)  # ImageNet-1k fits in one request
    max_templates: int = Field(100, ge=1)  # CLIP's ImageNet ensemble uses 80
    # Texts one classify request sends through the text tower: labels x templates (the two
    # default templates when none are given), so ImageNet-1k with the defaults fits. 1000 x 100
    # would be 100,000 texts, 13-25 s of CPU for one request.
    max_classify_texts: int = Field(2000, ge=1)
    max_items: int = Field(1000, ge=1)  # items per upsert request
    max_k: int = Field(1000, ge=1)  # search results per request

    # ---- lifecycle --------------------------------------------------------------------------
    # Load models after the server listens: /health answers at once, /ready is 503 until loaded.
    load_in_background: bool = False
    # After SIGTERM: /ready turns 503 at once, the server keeps serving this long (so load
    # balancers stop sending), then stops accepting and finishes what it has.
    shutdown_delay_s: float = Field(0.0, ge=0)
    shutdown_timeout_s: float = Field(30.0, gt=0)  # then in-flight requests are cut off

    @field_validator("runtime")
    @classmethod
    def _known_runtime(cls, v: str) -> str:
        from vistas.inference.runtimes import parse_runtime

        parse_runtime(v)  # ValueError naming the known runtimes
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, v: list[str]) -> list[str]:
        for entry in v:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: {entry!r} is not an IP address or CIDR network (e.g. 10.0.0.5, "
                    "10.0.0.0/8, fd00::/8); list the addresses your reverse proxies connect from"
                ) from None
        return v

    @field_validator("bundles", "providers", "api_keys", "public_paths", "trusted_proxies", mode="before")
    @classmethod
    def _split_list(cls, v):
        """Environment strings: a JSON list or comma-separated values."""
        if isinstance(v, str):
            v = v.strip()
            if v.startswith("["):
                return json.loads(v)
            return [s.strip() for s in v.split(",") if s.strip()]
        return v

    def index_path(self) -> Path:
        """The collections' root directory: `index_dir`, else `<data_dir>/index`."""
        return Path(self.index_dir).expanduser() if self.index_dir else Path(self.data_dir).expanduser() / "index"

    def ort_options(self):
        """The onnxruntime part as `vistas.inference.onnx_runtime.OrtOptions`."""
        from vistas.inference.onnx_runtime import OrtOptions

        return OrtOptions(
            intra_op_threads=self.threads,
            inter_op_threads=self.inter_op_threads,
            execution_mode=self.execution_mode,
            graph_optimization=self.graph_optimization,
            memory_arena=self.memory_arena,
            memory_pattern=self.memory_pattern,
            spinning=self.spinning,
            providers=tuple(self.providers),
        )

    def batch_config(self):
        """The batching part as `vistas.serving.batching.BatchConfig`, or None when batching is off."""
        from vistas.serving.batching import BatchConfig

        if not self.batching:
            return None
        return BatchConfig(
            max_batch_size=self.batch_max_size,
            max_delay_ms=self.batch_max_delay_ms,
            queue_size=self.batch_queue_size,
            timeout_s=self.batch_timeout_s,
            workers=self.batch_workers,
        )

    @classmethod
    def from_file(cls, path: str | Path | None = None, **overrides) -> Settings:
        """Settings from a TOML/JSON file (default: $VISTAS_SETTINGS_FILE), under env vars and `overrides`."""
        path = path or os.environ.get(SETTINGS_FILE_ENV)
        if not path:
            return cls(**overrides)
        values = read_settings_file(path)
        # Values given here beat the environment; the environment beats the file.
        from_file = {k: v for k, v in values.items() if f"{ENV_PREFIX}{k.upper()}" not in os.environ}
        return cls(**{**from_file, **overrides})


def default_data_dir() -> str:
    """$XDG_DATA_HOME/vistas, else ~/.local/share/vistas (the XDG base-directory default)."""
    base = os.environ.get("XDG_DATA_HOME", "").strip()
    if base and os.path.isabs(base):  # the spec: a relative XDG_DATA_HOME is invalid and ignored
        return str(Path(base) / "vistas")
    return str(Path.home() / ".local" / "share" / "vistas")


def read_settings_file(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"cannot read the settings file {path}: {e}") from None
    try:
        values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"settings file {path} is not valid {path.suffix[1:].upper() or 'JSON'}: {e}") from None
    if not isinstance(values, dict):
        raise ValueError(f"settings file {path} must hold a table/object of settings, got {type(values).__name__}")
    unknown = sorted(set(values) - set(Settings.model_fields))
    if unknown:
        raise ValueError(f"settings file {path} has unknown settings {unknown}; see README.md (Settings)")
    return values


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_file()
