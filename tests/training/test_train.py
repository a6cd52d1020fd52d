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


# log_every is 10 in the quick recipe: a checkpoint every 50 steps leaves metrics rows written
# after the newest checkpoint for most of each interval, which is where a kill lands.
TINY = "quick=True,steps=200,batch_size=16,threads=1,checkpoint_every=50,eval_every=50,eval_size=12"


def _train_cmd(workdir: Path, config: str = TINY) -> list[str]:
    return [sys.executable, "-m", "vistas.cli", "train", "--config", f"{RECIPE}:{config}",
            "--workdir", str(workdir), "--no-progress"]


def _records(metrics_file: Path) -> list[dict]:
    """Complete rows only: a row being written when we look has no newline yet."""
    if not metrics_file.exists():
        return []
    text = metrics_file.read_text()
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]


def _steps(records: list[dict]) -> dict[str, list[int]]:
    """Train rows (loss, lr, ...) and eval rows each share a step; one list of steps per kind."""
    return {"train": [r["step"] for r in records if "loss" in r],
            "eval": [r["step"] for r in records if "digits/accuracy" in r]}


def _kill_after_checkpoint(proc: subprocess.Popen, work: Path, log: Path) -> int:
    """SIGKILL `proc` once metrics rows exist past its newest checkpoint (what a crash mid-interval
    leaves), and return that checkpoint's step. The run is frozen with SIGSTOP while it is looked
    at, so the state checked is the state the kill leaves."""
    from vistas.training.checkpoint import checkpoint_step, step_checkpoints

    deadline = time.monotonic() + 300
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "no metrics past a checkpoint within 300 s"
        os.kill(proc.pid, signal.SIGSTOP)
        done, records = step_checkpoints(work), _records(work / "metrics.jsonl")
        if done and records and records[-1]["step"] > checkpoint_step(done[-1]):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return checkpoint_step(done[-1])
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.01)


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    """Same weights, and the same metrics rows: each step once, none repeated by the resumed run."""
    from vistas.training.config import load_config
    from vistas.training.plots import plot_metrics
    from vistas.training.train import train

    # Reference: the same config, never interrupted, in this process.
    torch.set_num_threads(1)
    ref_dir = tmp_path / "ref"
    ref = train(load_config(f"{RECIPE}:{TINY}"), ref_dir, progress=False)

    # Victim: a real process, SIGKILLed after a checkpoint, with rows logged past it.
    work = tmp_path / "killed"
    log = tmp_path / "killed.log"  # a file, not a pipe: an unread full pipe would stall the run
    with log.open("wb") as out:
        proc = subprocess.Popen(_train_cmd(work), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    killed_at = _kill_after_checkpoint(proc, work, log)
    assert not (work / "final").exists(), "the run finished before it could be killed; make it longer"
    assert max(_steps(_records(work / "metrics.jsonl"))["train"]) > killed_at

    resumed = subprocess.run(_train_cmd(work), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {work / 'checkpoints' / f'step_{killed_at:06d}'}" in resumed.stdout + resumed.stderr

    want, got = load_file(str(ref / "model.safetensors")), load_file(str(work / "final" / "model.safetensors"))
    assert want.keys() == got.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6, msg=f"{k} differs after resume")

    ref_rows, rows = _records(ref_dir / "metrics.jsonl"), _records(work / "metrics.jsonl")
    assert _steps(ref_rows) == {"train": list(range(10, 201, 10)), "eval": [50, 100, 150, 200]}
    assert _steps(rows) == _steps(ref_rows), f"killed at step {killed_at}; metrics rows: {_steps(rows)}"
    for r, w in zip(rows, ref_rows):
        assert r.keys() == w.keys() and r.get("loss", 0) == pytest.approx(w.get("loss", 0), rel=1e-4), (r, w)
    # The curves are drawn from that file, after the last row.
    plot_metrics(work / "metrics.jsonl", tmp_path / "redrawn.png")
    assert (work / "curves.png").read_bytes() == (tmp_path / "redrawn.png").read_bytes()


def _tree(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_finished_run_started_again_says_so_and_writes_nothing(tmp_path):
    config = TINY.replace("steps=200", "steps=20")
    work = tmp_path / "run"
    first = subprocess.run(_train_cmd(work, config), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    before = _tree(work)

    again = subprocess.run(_train_cmd(work, config), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    said = [line for line in again.stdout.splitlines() if not line.startswith("final checkpoint:")]
    assert len(said) == 1 and "already finished" in said[0], again.stdout + again.stderr
    assert "step_000020" in said[0] and "steps=" in said[0] and "--workdir" in said[0], said[0]
    assert "resuming" not in again.stdout + again.stderr
    assert _tree(work) == before, "a finished run started again rewrote its files"


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
