"""`hf:` sources: local directories, hub ids through the local Hugging Face cache only, and a
clear error (never a traceback, never a download) when a hub id is not cached."""

from __future__ import annotations

import shutil

import pytest

from support.hf_models import CONFIGS, save_tiny
from vistas.cli import main
from vistas.training.convert.hub import SourceNotFoundError, resolve_hf
from vistas.training.convert.sources import load_source


def _fake_cache(root, repo_id: str, files_from) -> None:
    """The huggingface_hub cache layout: models--org--name/{refs/main, snapshots/<commit>/...}."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(files_from, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snapshot.name)


def test_hub_id_resolves_through_the_cache(tmp_path, monkeypatch):
    hf_dir = save_tiny(CONFIGS["siglip"], tmp_path / "src")
    _fake_cache(tmp_path / "cache", "acme/tiny-siglip", hf_dir)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    assert resolve_hf("acme/tiny-siglip").name == "0123456789abcdef0123456789abcdef01234567"
    loaded = load_source("hf:acme/tiny-siglip")
    assert loaded.name == "tiny-siglip" and loaded.reference.is_dir()
    assert load_source(f"hf:{hf_dir}").config == loaded.config


def test_uncached_hub_id_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # never a download, offline flag or not
    with pytest.raises(SourceNotFoundError, match="not in the Hugging Face cache"):
        resolve_hf("google/siglip-base-patch16-224")
    rc = main(["export", "hf:google/siglip-base-patch16-224", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and not (tmp_path / "out").exists()
    assert "vistas export: error: hf:google/siglip-base-patch16-224" in err
    assert str(tmp_path / "empty-cache") in err and "hf download google/siglip-base-patch16-224" in err
    assert "Traceback" not in err
    assert main(["check-parity", "hf:not a valid id!"]) == 2
    assert "nor a valid hub id" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing-checkpoint"), str(tmp_path / "out")]) == 2
    assert "hf:DIR_OR_HUB_ID" in capsys.readouterr().err
