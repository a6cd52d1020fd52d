"""Loss / accuracy curves from a run's metrics.jsonl, written as a PNG."""

from __future__ import annotations

import json
from pathlib import Path


def plot_metrics(metrics_file: str | Path, out_png: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless; no display on training machines
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in Path(metrics_file).read_text().splitlines() if line.strip()]
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if any(k.endswith("/accuracy") for k in r)]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    if train:
        ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train])
    ax_loss.set(title="sigmoid loss", xlabel="step", yscale="log")
    keys = sorted({k for r in evals for k in r if k.endswith("/accuracy")})
    for k in keys:
        pts = [(r["step"], r[k]) for r in evals if k in r]
        ax_acc.plot(*zip(*pts), marker="o", label=k.removesuffix("/accuracy"))
    ax_acc.set(title="zero-shot accuracy", xlabel="step", ylim=(0, 1))
    if keys:
        ax_acc.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
