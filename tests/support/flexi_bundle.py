"""A small FlexiViT bundle for deploy and serving tests, made without torch.

The committed FlexiViT bundle (models/flexivit-shapes-digits/bundle) cut down to a few patch
sizes: its graphs are the export's own, copied byte for byte, and bundle.json lists only the
sizes kept. Exporting one (tests/export/test_flexi_export.py) needs torch, which serving tests
must not import, and costs far more; the kept graphs are the same either way.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from vistas.bundle import BUNDLE_FILE, TOWER_ROLES, flexi_role

COMMITTED = Path(__file__).resolve().parents[2] / "models" / "flexivit-shapes-digits" / "bundle"
SIZE, DIM, DEFAULT_PATCH = 48, 128, 8  # the committed bundle's image size, embedding size, own patch size


def build_flexi_bundle(out: Path, name: str = "flexi", patch_sizes: tuple[int, ...] = (8, 16)) -> Path:
    """A bundle at `out` named `name` with the committed bundle's graphs at `patch_sizes` -> `out`."""
    spec = json.loads((COMMITTED / BUNDLE_FILE).read_text())
    have = sorted(int(p) for p in spec["patch_sizes"])
    if DEFAULT_PATCH not in patch_sizes or not set(patch_sizes) <= set(have):
        raise ValueError(f"patch_sizes {patch_sizes} must include {DEFAULT_PATCH} and lie within {have}")
    roles = [*TOWER_ROLES.values(), *(flexi_role(p) for p in sorted(patch_sizes) if p != DEFAULT_PATCH)]
    spec.update(
        name=name,
        files={role: spec["files"][role] for role in roles},
        patch_sizes={p: v for p, v in spec["patch_sizes"].items() if int(p) in patch_sizes},
    )
    out.mkdir(parents=True)
    for fname in [*spec["files"].values(), "tokenizer.json"]:
        shutil.copyfile(COMMITTED / fname, out / fname)
    (out / BUNDLE_FILE).write_text(json.dumps(spec, indent=2) + "\n")
    return out
