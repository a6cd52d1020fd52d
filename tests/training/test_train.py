"""The training loop: a quick run learns, leaves its artefacts, and resumes exactly after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "configs" / "siglip_shapes_digits.py"

# Chance is 1/36 for shapes (6 colours x 6 shapes).
SHAPES_CHANCE = 1 / 36


def test_quick_training_learns(quick_metrics):
    """A broken loss, tokenizer or data pipeline stays at chance; a working one does not.

    300 steps learn colour before shape (colour alone gives 1/6 on shapes, 6x chance), and the
    digits need ~500 steps, so the quick run is judged on shapes and retrieval; the bundled
    model's full figures are checked in tests/export/test_bundled_model.py.
    """
    assert quick_metrics["shapes_seen/accuracy"] > 5 * SHAPES_CHANCE, quick_metrics
    # Text -> image recall@5 among 300 images; a caption is shared by ~4 of them on average.
    assert quick_metrics["shapes_retrieval/t2i_r5"] > 0.1, quick_metrics


def test_run_leaves_checkpoint_metrics_and_curves(quick_run):
    final = quick_run / "final"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocess.json"):
        assert (final / name).is_file(), name
    assert not (final / "train_state.pt").exists(), "the final checkpoint is for export, not resume"
    records = [json.loads(line) for line in (quick_run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) >= 10
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.8 * first, f"loss did not fall: {first:.3f} -> {last:.3f}"
    assert all(k in records[-1] or k in records[-2] for k in ("digits/accuracy", "loss"))
    png = (quick_run / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    kept = sorted(p.name for p in (quick_run / "checkpoints").iterdir())
    assert len(kept) <= 2 and all(k.startswith("step_") for k in kept), kept


TINY = "quick=True,steps=200,batch_size=16,threads=1,checkpoint_every=10,eval_size=12"


def _train_cmd(workdir: Path) -> list[str]:
    return [sys.executable, "-m", "vistas.cli", "train", "--config", f"{RECIPE}:{TINY}",
            "--workdir", str(workdir), "--no-progress"]


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    from vistas.training.config import load_config
    from vistas.training.train import train

    # Reference: the same config, never interrupted, in this process.
    torch.set_num_threads(1)
    ref = train(load_config(f"{RECIPE}:{TINY}"), tmp_path / "ref", progress=False)

    # Victim: a real process, SIGKILLed right after its first checkpoint lands.
    work = tmp_path / "killed"
    log = tmp_path / "killed.log"  # a file, not a pipe: an unread full pipe would stall the run
    with log.open("wb") as out:
        proc = subprocess.Popen(_train_cmd(work), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    first = work / "checkpoints" / "step_000010" / "train_state.pt"
    deadline = time.monotonic() + 300
    while not first.exists():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (work / "final").exists(), "the run finished before it could be killed; make it longer"

    resumed = subprocess.run(_train_cmd(work), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout + resumed.stderr

    want, got = load_file(str(ref / "model.safetensors")), load_file(str(work / "final" / "model.safetensors"))
    assert want.keys() == got.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6, msg=f"{k} differs after resume")


def test_lr_schedules():
    from vistas.training.config import Config
    from vistas.training.train import lr_schedule

    cosine = lr_schedule(Config(steps=100, warmup_steps=10))
    assert [cosine(s) for s in (0, 9)] == [0.1, 1.0] and cosine(55) == pytest.approx(0.5) and cosine(100) == 0
    wsd = lr_schedule(Config(steps=100, warmup_steps=10, schedule="wsd", cooldown=0.2))
    assert [wsd(s) for s in (0, 9, 10, 79)] == [0.1, 1.0, 1.0, 1.0]  # warm up, then hold until the cooldown
    assert wsd(80) == 1.0 and wsd(90) == pytest.approx(0.5) and wsd(100) == 0.0  # linear to 0 over the last 20
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_schedule(Config(steps=10, warmup_steps=1, schedule="step"))
