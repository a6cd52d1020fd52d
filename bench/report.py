"""Printing and saving benchmark results: one line per result, everything as JSON."""

from __future__ import annotations

import json
from pathlib import Path


def print_row(r: dict, digits: int = 3) -> None:
    fields = ", ".join(f"{k}={v:.{digits}g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items() if k != "name")
    print(f"{r['name']:<48} {fields}", flush=True)


def save(report: dict | list, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


def print_and_save(results: list[dict], out: Path, digits: int = 3) -> None:
    for r in results:
        print_row(r, digits)
    save(results, out)
