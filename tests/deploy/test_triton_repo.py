"""The Triton model repository generated from a bundle, checked against the bundle's graphs and
against what a vistas server publishes under /v2 for the same bundle (the two are interchangeable)."""

from __future__ import annotations

import os
import subprocess

import onnxruntime as ort
import pytest
import tritonclient.http as triton

from support.live_server import running_server
from support.pbtxt import parse
from support.tiny_bundle import DIM, SIZE, TEXT_LENGTH, build_bundle
from vistas.bundle import load_bundle_spec
from vistas.cli import main as cli
from vistas.deploy.triton_repo import TritonRepoConfig, write_triton_repository

_V2_TYPES = {"TYPE_FP32": "FP32", "TYPE_INT64": "INT64"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return build_bundle(tmp_path_factory.mktemp("bundle") / "b", "tiny-deploy")


def _as_v2(tensors: list[dict], max_batch: int) -> list[dict]:
    """config.pbtxt tensors -> v2 metadata tensors (the batch dim comes back as -1)."""
    return [
        {"name": t["name"][0], "datatype": _V2_TYPES[t["data_type"][0]], "shape": ([-1] if max_batch else []) + t["dims"]}
        for t in tensors
    ]


def test_onnxruntime_repository_matches_bundle_and_vistas_v2(bundle, tmp_path):
    assert cli(["deploy", "triton", str(bundle), str(tmp_path), "--max-batch", "16", "--instances", "2"]) == 0
    spec = load_bundle_spec(bundle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-deploy.image_encoder", "tiny-deploy.text_encoder"]
    from vistas.serving.app import create_app
    from vistas.serving.settings import Settings

    settings = Settings(bundles=[str(bundle)], threads=1)
    with running_server(create_app(settings)) as live:
        tc = triton.InferenceServerClient(live.url.removeprefix("http://"))
        for role, dims in (("image_encoder", [3, SIZE, SIZE]), ("text_encoder", [TEXT_LENGTH])):
            model_dir = tmp_path / f"tiny-deploy.{role}"
            assert (model_dir / "1" / "model.onnx").read_bytes() == (bundle / spec.files[role]).read_bytes()
            config = parse((model_dir / "config.pbtxt").read_text())
            assert config["name"] == [model_dir.name] and config["backend"] == ["onnxruntime"]
            assert config["max_batch_size"] == [16] and config["input"][0]["dims"] == dims
            assert config["output"][0] == {"name": ["embeddings"], "data_type": ["TYPE_FP32"], "dims": [DIM]}
            assert config["instance_group"] == [{"count": [2], "kind": ["KIND_CPU"]}]
            batching = config["dynamic_batching"][0]
            assert batching["max_queue_delay_microseconds"] == [2000] and batching["preferred_batch_size"] == [8, 16]
            space = config["parameters"][0]
            assert space["key"] == ["vistas_space_id"] and space["value"] == [{"string_value": [spec.space_id]}]
            # Triton would publish exactly the metadata vistas publishes for this model...
            meta = tc.get_model_metadata(model_dir.name)
            assert _as_v2(config["input"], 16) == meta["inputs"] and _as_v2(config["output"], 16) == meta["outputs"]
            # ...and both are what the ONNX graph itself takes and returns.
            sess = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
            (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
            assert inp.name == config["input"][0]["name"][0] and list(inp.shape[1:]) == dims
            assert out.name == "embeddings" and out.shape[-1] == DIM
        tc.close()


def test_tensorrt_repository_and_engine_commands(bundle, tmp_path):
    cfg = TritonRepoConfig(backend="tensorrt", max_batch=64, opt_batch=8, fp16=True)
    write_triton_repository(bundle, tmp_path, cfg)
    script = tmp_path / "build_engines.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    for role in ("image_encoder", "text_encoder"):
        config = parse((tmp_path / f"tiny-deploy.{role}" / "config.pbtxt").read_text())
        assert config["platform"] == ["tensorrt_plan"] and config["instance_group"][0]["kind"] == ["KIND_GPU"]
        assert (tmp_path / f"tiny-deploy.{role}" / "model.onnx").is_file()
        assert not any((tmp_path / f"tiny-deploy.{role}" / "1").iterdir())  # the engine is built on the GPU

    _fake_trtexec(tmp_path / "bin")
    moved = tmp_path.rename(tmp_path.with_name("moved repo"))  # a space in the path, and moved: still works
    image, text = _run_engine_script(moved)
    assert f"--onnx={moved}/tiny-deploy.image_encoder/model.onnx" in image
    assert f"--minShapes=pixel_values:1x3x{SIZE}x{SIZE} --optShapes=pixel_values:8x3x{SIZE}x{SIZE} " \
           f"--maxShapes=pixel_values:64x3x{SIZE}x{SIZE} --fp16" in image
    assert f"--minShapes=input_ids:1x{TEXT_LENGTH} --optShapes=input_ids:8x{TEXT_LENGTH} --maxShapes=input_ids:64x{TEXT_LENGTH}" in text
    assert (moved / "tiny-deploy.image_encoder" / "1" / "model.plan").is_file()


def _fake_trtexec(bin_dir) -> None:
    """TensorRT cannot be installed here. A stand-in `trtexec` on PATH records its arguments and
    writes the engine file, so the script's paths and shapes are checked as a shell runs them."""
    fake = bin_dir / "trtexec"
    fake.parent.mkdir()
    fake.write_text('#!/usr/bin/env bash\necho "$@" >> "$TRTEXEC_LOG"\nfor a; do case $a in --saveEngine=*) touch "${a#--saveEngine=}";; esac; done\n')
    fake.chmod(0o755)


def _run_engine_script(repo) -> list[str]:
    """Run repo/build_engines.sh with the stand-in trtexec of repo/bin -> one line of arguments per call."""
    log = repo / "trtexec.log"
    env = {**os.environ, "PATH": f"{repo / 'bin'}:{os.environ['PATH']}", "TRTEXEC_LOG": str(log)}
    subprocess.run(["bash", str(repo / "build_engines.sh")], env=env, check=True)
    return log.read_text().splitlines()


def test_flexivit_bundle_gets_a_model_per_patch_size(small_flexi_bundle, tmp_path):
    from support.flexi_bundle import DIM as FLEXI_DIM
    from support.flexi_bundle import SIZE as FLEXI_SIZE
    from vistas.serving.app import create_app
    from vistas.serving.settings import Settings

    spec = load_bundle_spec(small_flexi_bundle)
    written = write_triton_repository(small_flexi_bundle, tmp_path / "ort", TritonRepoConfig(max_batch=16))
    assert [d.name for d in written] == ["flexi.image_encoder", "flexi.text_encoder", "flexi.image_encoder_p16"]
    model_dir = tmp_path / "ort" / "flexi.image_encoder_p16"
    graph = model_dir / "1" / "model.onnx"
    assert graph.read_bytes() == (small_flexi_bundle / spec.files["image_encoder_p16"]).read_bytes()
    assert graph.read_bytes() != (tmp_path / "ort" / "flexi.image_encoder" / "1" / "model.onnx").read_bytes()
    config = parse((model_dir / "config.pbtxt").read_text())
    assert config["name"] == ["flexi.image_encoder_p16"] and config["max_batch_size"] == [16]
    assert config["input"] == [{"name": ["pixel_values"], "data_type": ["TYPE_FP32"], "dims": [3, FLEXI_SIZE, FLEXI_SIZE]}]
    assert config["output"] == [{"name": ["embeddings"], "data_type": ["TYPE_FP32"], "dims": [FLEXI_DIM]}]
    assert config["parameters"][0]["value"] == [{"string_value": [spec.space_id]}]  # one space for every size
    sess = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert inp.name == "pixel_values" and list(inp.shape[1:]) == [3, FLEXI_SIZE, FLEXI_SIZE] and out.shape[-1] == FLEXI_DIM
    with running_server(create_app(Settings(bundles=[str(small_flexi_bundle)], threads=1))) as live:
        tc = triton.InferenceServerClient(live.url.removeprefix("http://"))
        meta = tc.get_model_metadata("flexi.image_encoder_p16")  # what vistas publishes for the same model
        assert _as_v2(config["input"], 16) == meta["inputs"] and _as_v2(config["output"], 16) == meta["outputs"]
        tc.close()

    write_triton_repository(small_flexi_bundle, tmp_path / "trt", TritonRepoConfig(backend="tensorrt"))
    _fake_trtexec(tmp_path / "trt" / "bin")
    image, text, image16 = _run_engine_script(tmp_path / "trt")
    assert f"--onnx={tmp_path}/trt/flexi.image_encoder_p16/model.onnx" in image16
    assert f"--saveEngine={tmp_path}/trt/flexi.image_encoder_p16/1/model.plan" in image16
    assert f"--maxShapes=pixel_values:32x3x{FLEXI_SIZE}x{FLEXI_SIZE}" in image16
    assert (tmp_path / "trt" / "flexi.image_encoder_p16" / "1" / "model.plan").is_file()


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="opt_batch <= max_batch"):
        TritonRepoConfig(max_batch=4, opt_batch=8)
    with pytest.raises(ValueError, match="tensorrt backend only"):
        TritonRepoConfig(fp16=True)
