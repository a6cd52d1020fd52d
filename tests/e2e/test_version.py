"""`vistas --version` prints the installed version and exits 0, as every command line tool does."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_version():
    res = subprocess.run([sys.executable, "-m", "vistas.cli", "--version"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"vistas {importlib.metadata.version('vistas')}"
