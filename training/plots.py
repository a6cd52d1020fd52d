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
    evals = [r for r in records if any(_is_accuracy(k) for k in r)]
    keys = sorted({k for r in evals for k in r if _is_accuracy(k)})
    # A FlexiViT run evaluates at every patch size ("<suite>/accuracy@p8"): one panel per size.
    groups = sorted({_patch_size(k) for k in keys}, key=lambda p: (p is not None, p or 0)) or [None]
    fig, axes = plt.subplots(1, 1 + len(groups), figsize=(5 * (1 + len(groups)), 4), squeeze=False)
    ax_loss = axes[0, 0]
    if train:
        ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train])
    ax_loss.set(title="sigmoid loss", xlabel="step", yscale="log")
    for ax, group in zip(axes[0, 1:], groups):
        mine = [k for k in keys if _patch_size(k) == group]
        for k in mine:
            pts = [(r["step"], r[k]) for r in evals if k in r]
            ax.plot(*zip(*pts), marker="o", label=k.split("/accuracy")[0])
        title = "zero-shot accuracy" + ("" if group is None else f", patch size {group}")
        ax.set(title=title, xlabel="step", ylim=(0, 1))
        if mine:
            ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)


def _is_accuracy(key: str) -> bool:
    return key.endswith("/accuracy") or "/accuracy@p" in key


def _patch_size(key: str) -> int | None:
    return int(key.rsplit("@p", 1)[1]) if "/accuracy@p" in key else None
