"""A bundle -> an NVIDIA Triton model repository (and TensorRT engine build commands).

    vistas deploy triton models/siglip-shapes-digits/bundle build/triton [--max-batch 32] [--gpu]
    vistas deploy triton BUNDLE OUT --backend tensorrt --fp16      # + OUT/build_engines.sh (trtexec)

Writes one Triton model per tower of the bundle (`BundleSpec.towers`), named and shaped as
`vistas.v2_protocol` says, so a Triton loaded from OUT and a vistas server answer the same
requests, and `vistas serve BUNDLE --runtime triton://HOST:PORT` can use either:

    OUT/<name>.image_encoder/config.pbtxt        1/model.onnx
    OUT/<name>.text_encoder/config.pbtxt         1/model.onnx
    OUT/<name>.image_encoder_p<P>/config.pbtxt   1/model.onnx   FlexiViT bundles: one per patch size P
                                                                besides the default; the same pixels in
                                                                and embeddings out as image_encoder
    --backend tensorrt: model.onnx beside each config.pbtxt, and OUT/build_engines.sh, with one
    trtexec command per model (per-patch-size graphs included) that builds its 1/model.plan on
    the GPU that will run it (engines are not portable)

Each config has dynamic batching (Triton queues requests up to `max_queue_delay_us` to fill
a batch), instance groups, and the bundle's embedding-space id as the parameter
`vistas_space_id`, which the Triton runtime checks before serving.
"""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vistas.bundle import EMBED_OUTPUT, IMAGE_INPUT, TEXT_INPUT, BundleSpec, load_bundle_spec
from vistas.v2_protocol import SPACE_PARAMETER, tower_model_name

Backend = Literal["onnxruntime", "tensorrt"]


@dataclass(frozen=True)
class TritonRepoConfig:
    max_batch: int = 32  # max_batch_size of every model; trtexec's --maxShapes batch
    opt_batch: int = 8  # TensorRT optimises its kernels for this batch (--optShapes)
    max_queue_delay_us: int = 2000  # how long Triton may hold a request to grow a batch
    instances: int = 1  # model instances per device
    gpu: bool = False  # KIND_GPU instance groups (always for tensorrt)
    backend: Backend = "onnxruntime"
    fp16: bool = False  # tensorrt: build fp16 engines (--fp16)

    def __post_init__(self):
        if self.backend not in ("onnxruntime", "tensorrt"):
            raise ValueError(f"backend must be 'onnxruntime' or 'tensorrt', got {self.backend!r}")
        if not 1 <= self.opt_batch <= self.max_batch:
            raise ValueError(f"need 1 <= opt_batch <= max_batch, got opt_batch={self.opt_batch}, max_batch={self.max_batch}")
        if self.fp16 and self.backend != "tensorrt":
            raise ValueError("fp16 applies to the tensorrt backend only (onnxruntime serves the bundle's own graphs)")


def tower_tensors(spec: BundleSpec, tower: str) -> tuple[tuple[str, str, list[int]], tuple[str, str, list[int]]]:
    """-> ((input name, Triton type, dims), (output ...)), dims without the batch dimension."""
    spec.role(tower)  # KeyError naming the bundle's towers, for a tower it does not have
    if tower == "text":
        inp = (TEXT_INPUT, "TYPE_INT64", [spec.preprocess.text.length])
    else:
        # "image" and a FlexiViT bundle's "image@p<P>": the graphs differ in their patch grid
        # only, inside the graph; all take the same pixels at the bundle's image size.
        img = spec.preprocess.image
        inp = (IMAGE_INPUT, "TYPE_FP32", [3, img.height, img.width])
    return inp, (EMBED_OUTPUT, "TYPE_FP32", [spec.embed_dim])


def model_config(spec: BundleSpec, tower: str, cfg: TritonRepoConfig) -> str:
    """config.pbtxt of one tower (protobuf text format of Triton's ModelConfig)."""
    (in_name, in_type, in_dims), (out_name, out_type, out_dims) = tower_tensors(spec, tower)
    engine = 'platform: "tensorrt_plan"' if cfg.backend == "tensorrt" else 'backend: "onnxruntime"'
    kind = "KIND_GPU" if cfg.gpu or cfg.backend == "tensorrt" else "KIND_CPU"
    preferred = sorted({b for b in (cfg.opt_batch, cfg.max_batch) if b > 1})
    return "\n".join([
        f'name: "{tower_model_name(spec.name, tower)}"',
        engine,
        f"max_batch_size: {cfg.max_batch}",
        f'input [ {{ name: "{in_name}" data_type: {in_type} dims: {_list(in_dims)} }} ]',
        f'output [ {{ name: "{out_name}" data_type: {out_type} dims: {_list(out_dims)} }} ]',
        "dynamic_batching {",
        f"  preferred_batch_size: {_list(preferred)}",
        f"  max_queue_delay_microseconds: {cfg.max_queue_delay_us}",
        "}",
        f"instance_group [ {{ count: {cfg.instances} kind: {kind} }} ]",
        f'parameters {{ key: "{SPACE_PARAMETER}" value: {{ string_value: "{spec.space_id}" }} }}',
        "",
    ])


def _list(values: list[int]) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def trtexec_command(spec: BundleSpec, tower: str, onnx_path: str, engine_path: str, cfg: TritonRepoConfig) -> list[str]:
    """trtexec arguments building the tower's engine for batches 1..max_batch, tuned at opt_batch."""
    (name, _, dims), _ = tower_tensors(spec, tower)

    def shape(batch: int) -> str:
        return f"{name}:" + "x".join(str(d) for d in (batch, *dims))

    cmd = [
        "trtexec",
        f"--onnx={onnx_path}",
        f"--saveEngine={engine_path}",
        f"--minShapes={shape(1)}",
        f"--optShapes={shape(cfg.opt_batch)}",
        f"--maxShapes={shape(cfg.max_batch)}",
    ]
    return cmd + (["--fp16"] if cfg.fp16 else [])


def write_triton_repository(bundle_dir: str | Path, out_dir: str | Path, cfg: TritonRepoConfig | None = None) -> list[Path]:
    """Write the repository to `out_dir` (replacing what the models' directories held) -> model dirs."""
    cfg = cfg or TritonRepoConfig()
    bundle_dir, out_dir = Path(bundle_dir), Path(out_dir)
    spec = load_bundle_spec(bundle_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, commands = [], []
    for tower in spec.towers:  # "image", "text", then a FlexiViT bundle's other patch sizes
        model_dir = out_dir / tower_model_name(spec.name, tower)
        shutil.rmtree(model_dir, ignore_errors=True)
        (model_dir / "1").mkdir(parents=True)
        (model_dir / "config.pbtxt").write_text(model_config(spec, tower, cfg))
        source = bundle_dir / spec.files[spec.role(tower)]
        if cfg.backend == "onnxruntime":
            shutil.copyfile(source, model_dir / "1" / "model.onnx")
        else:
            # Beside config.pbtxt, outside the version directory: Triton loads only 1/model.plan.
            shutil.copyfile(source, model_dir / "model.onnx")
            here = f"${{HERE}}/{model_dir.name}"  # the script's own directory: the repository can move
            cmd = trtexec_command(spec, tower, f"{here}/model.onnx", f"{here}/1/model.plan", cfg)
            commands.append(" ".join(f'"{a}"' if "${HERE}" in a else shlex.quote(a) for a in cmd))
        written.append(model_dir)
    if commands:
        script = out_dir / "build_engines.sh"
        script.write_text(_ENGINE_SCRIPT.replace("{commands}", "\n".join(commands)))
        script.chmod(0o755)
    return written


_ENGINE_SCRIPT = """#!/usr/bin/env bash
# Builds the TensorRT engines of this repository from its ONNX graphs. Engines are specific to
# the GPU and TensorRT version that build them: run this where Triton will serve them (e.g. in
# the Triton container, with this directory mounted), then start tritonserver on this directory.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
{commands}
"""
