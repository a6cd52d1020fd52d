"""Server settings: environment variables with the `VISTAS_` prefix, or explicit values.

`get_settings()` reads the environment once per process (the CLI path);
`create_app(settings)` always takes its settings explicitly, so tests build
apps with their own limits.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from vistas.images import DEFAULT_MAX_PIXELS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VISTAS_", extra="forbid")

    # What to serve. The first bundle is the default model; VISTAS_BUNDLES="a,b" or '["a","b"]'.
    bundles: Annotated[list[str], NoDecode] = Field(default_factory=list)
    index_dir: str | None = None  # one sub-directory per collection; None: collection routes answer 503
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: str = "info"

    # Inference. "onnx": onnxruntime here; "triton://HOST:PORT": the towers run on a remote
    # Triton / KServe v2 server (serving/runtimes.py). onnxruntime uses all cores when threads is None.
    runtime: str = "onnx"
    threads: int | None = Field(None, ge=1)
    providers: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["CPUExecutionProvider"])
    inference_batch_size: int = Field(32, ge=1)  # larger requests run in chunks of this many
    classify_cache_size: int = Field(4096, ge=0)  # label embeddings kept per model (0: no cache)

    # Request limits: what a single request may ask for. Errors name the limit that was hit.
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1)  # 20 MB: a handful of full-size photos
    max_image_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1)  # decompression-bomb guard, from the header
    max_batch_images: int = Field(64, ge=1)
    max_texts: int = Field(256, ge=1)
    max_text_chars: int = Field(2000, ge=1)  # far above any text tower's token length
    max_labels: int = Field(1000, ge=1)  # ImageNet-1k fits in one request
    max_templates: int = Field(100, ge=1)  # CLIP's ImageNet ensemble uses 80
    max_items: int = Field(1000, ge=1)  # items per upsert request

    @field_validator("runtime")
    @classmethod
    def _known_runtime(cls, v: str) -> str:
        from serving.runtimes import parse_runtime

        parse_runtime(v)  # ValueError naming the known runtimes
        return v

    @field_validator("bundles", "providers", mode="before")
    @classmethod
    def _split_list(cls, v):
        """Environment strings: a JSON list or comma-separated values."""
        if isinstance(v, str):
            import json

            v = v.strip()
            if v.startswith("["):
                return json.loads(v)
            return [s.strip() for s in v.split(",") if s.strip()]
        return v


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
