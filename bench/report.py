"""Printing and saving benchmark results: one line per result, all of them as JSON."""

from __future__ import annotations

import json
from pathlib import Path


def print_and_save(results: list[dict], out: Path, digits: int = 2) -> None:
    for r in results:
        fields = ", ".join(f"{k}={v:.{digits}f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items() if k != "name")
        print(f"{r['name']:<40} {fields}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
