"""`from clients import Client` (before 0.2) still works from a source checkout, with a warning."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_old_import_warns_and_gives_the_same_client():
    code = (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    from clients import Client, APIError\n"
        "import vistas_client\n"
        "assert Client is vistas_client.Client and APIError is vistas_client.APIError\n"
        "assert any(issubclass(x.category, DeprecationWarning) and 'vistas_client' in str(x.message) for x in w), w\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_old_name_is_not_installed():
    """Outside the checkout there is no top-level `clients` (it collided with users' own modules)."""
    code = "import importlib.util, sys; sys.exit(importlib.util.find_spec('clients') is not None)"
    r = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, "a top-level `clients` is importable outside the checkout"
