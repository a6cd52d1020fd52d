"""Settings from a file, the environment and code, in that order of strength; onnxruntime
tuning reaching the real sessions; execution providers; API-key files."""

from __future__ import annotations

import logging

import onnxruntime as ort
import pytest

from vistas.inference.onnx_runtime import OnnxRuntime, OrtOptions, resolve_providers
from vistas.serving.auth import APIKeys, key_id
from vistas.serving.settings import Settings


def test_file_then_env_then_code(tmp_path, monkeypatch):
    f = tmp_path / "vistas.toml"
    f.write_text('max_texts = 7\nmax_labels = 9\napi_keys = ["a", "b"]\nbatch_max_delay_ms = 5.5\nport = 9000\n')
    monkeypatch.setenv("VISTAS_MAX_LABELS", "11")
    s = Settings.from_file(f, port=9100)
    assert (s.max_texts, s.max_labels, s.port) == (7, 11, 9100)  # file, env over file, code over both
    assert s.api_keys == ["a", "b"] and s.batch_max_delay_ms == 5.5
    monkeypatch.setenv("VISTAS_SETTINGS_FILE", str(f))
    monkeypatch.setenv("VISTAS_API_KEYS", "k1, k2")
    s = Settings.from_file()
    assert s.max_texts == 7 and s.api_keys == ["k1", "k2"]
    j = tmp_path / "vistas.json"
    j.write_text('{"max_batch_images": 3, "providers": ["auto"]}')
    assert Settings.from_file(j).max_batch_images == 3


@pytest.mark.parametrize(
    "text, match",
    [
        ("max_textz = 1\n", "unknown settings \\['max_textz'\\]"),
        ("max_texts = \n", "not valid TOML"),
        ("max_texts = 0\n", "greater than or equal to 1"),
        ('graph_optimization = "max"\n', "graph_optimization"),
    ],
)
def test_bad_settings_file_says_what_is_wrong(tmp_path, text, match):
    f = tmp_path / "s.toml"
    f.write_text(text)
    with pytest.raises(ValueError, match=match):
        Settings.from_file(f)


def test_tuning_reaches_the_sessions(bundles):
    s = Settings(threads=1, graph_optimization="basic", memory_arena=False, memory_pattern=False,
                 execution_mode="parallel", inter_op_threads=2, spinning="off")  # fmt: skip
    rt = OnnxRuntime(bundles[0], options=s.ort_options())
    opts = rt._sessions["image"].get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.intra_op_num_threads == 1 and opts.inter_op_num_threads == 2
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert opts.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert not opts.enable_cpu_mem_arena and not opts.enable_mem_pattern
    assert rt._sessions["text"].get_providers() == rt.providers == ["CPUExecutionProvider"]


def test_providers(caplog):
    gpu = "CUDAExecutionProvider" in ort.get_available_providers()
    assert resolve_providers(["auto"]) == (["CUDAExecutionProvider"] if gpu else []) + ["CPUExecutionProvider"]
    with caplog.at_level(logging.WARNING, logger="vistas.inference"):
        got = resolve_providers(["CUDAExecutionProvider", "CPUExecutionProvider"])
    if gpu:
        assert got == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:  # asked for, not in this build: skipped with a warning, CPU serves
        assert got == ["CPUExecutionProvider"] and "CUDAExecutionProvider is not available" in caplog.text
    with pytest.raises(ValueError, match="unknown onnxruntime execution provider 'GPU'"):
        resolve_providers(["GPU"])
    assert OrtOptions().providers == ("CPUExecutionProvider",)  # default: no surprise GPU use


def test_api_keys_file(tmp_path, bundles):
    f = tmp_path / "keys"
    f.write_text("# comment\n  key-one  \n\nkey-two\n")
    keys = APIKeys(["key-zero"], f)
    assert len(keys) == 3 and keys.check("key-two") == key_id("key-two") and keys.check("key-three") is None
    assert key_id("key-two").startswith("key-") and "two" not in key_id("key-two")
    f.write_text("# no key here\n")
    from vistas.serving.app import create_app

    with pytest.raises(ValueError, match="holds no key"):
        create_app(Settings(bundles=[str(bundles[0])], api_keys_file=str(f)))
    with pytest.raises(ValueError, match="cannot read the API keys file"):
        APIKeys(file=tmp_path / "absent")


@pytest.mark.parametrize(
    "spinning, entries",
    [
        ("on", {}),  # onnxruntime's own behaviour: nothing set
        ("during_run", {"session.force_spinning_stop": "1"}),
        ("off", {"session.intra_op.allow_spinning": "0"}),
    ],
)
def test_spinning_reaches_the_sessions(bundles, spinning, entries):
    opts = OnnxRuntime(bundles[0], options=OrtOptions(spinning=spinning))._sessions["text"].get_session_options()
    for key in ("session.force_spinning_stop", "session.intra_op.allow_spinning"):
        try:
            got = opts.get_session_config_entry(key)
        except RuntimeError:  # onnxruntime: "does not have configuration with key"
            got = None
        assert got == entries.get(key)


def test_server_default_spinning_stops_after_each_run():
    assert Settings().spinning == OrtOptions().spinning == "during_run"
    with pytest.raises(ValueError, match="spinning"):
        Settings(spinning="sometimes")
