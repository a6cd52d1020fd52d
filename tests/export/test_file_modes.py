"""Bundles and checkpoints get the modes the umask gives, as `cp` or `mkdir` would make them.

Export built the bundle in a `tempfile` directory (mode 700) and copied it with its mode, and
safetensors writes its file 600: with umask 022 the bundle directory was `drwx------` and
`model.safetensors` `-rw-------`, unreadable to the uid 10001 of the README's Docker recipe.
Each case runs in its own process, since the umask is process-wide; the export goes through the
`vistas export` command line, whose stderr must also be free of third-party warnings.
"""

from __future__ import annotations

import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = ROOT / "models" / "siglip-shapes-digits" / "checkpoint"

# Sets the umask, then runs `vistas export` (in this process, through the CLI's main) and saves a
# checkpoint of the same model.
SCRIPT = textwrap.dedent(
    """
    import os, sys
    os.umask(int(sys.argv[1], 8))
    from vistas.cli import main
    rc = main(["export", sys.argv[2], sys.argv[3] + "/bundle"])
    from vistas.training.checkpoint import load_checkpoint, save_checkpoint
    model, config, pre = load_checkpoint(sys.argv[2])
    save_checkpoint(sys.argv[3] + "/run/checkpoints/step_000001", model, config, pre, sys.argv[2],
                    train_state={"step": 1})
    sys.exit(rc)
    """
)


def modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


@pytest.mark.parametrize("umask, dir_mode, file_mode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_export_and_checkpoint_follow_the_umask(tmp_path, umask, dir_mode, file_mode):
    out = tmp_path / "out"
    out.mkdir()
    res = subprocess.run([sys.executable, "-c", SCRIPT, oct(umask), str(CHECKPOINT), str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    wrong = {}
    for part, a_file in (("bundle", "image_encoder.onnx"), ("run/checkpoints/step_000001", "model.safetensors")):
        found = modes(out / part)
        assert a_file in found, found
        want = {name: dir_mode if (out / part / name).is_dir() else file_mode for name in found}
        wrong.update({f"{part}/{name}": oct(mode) for name, mode in found.items() if mode != want[name]})
    assert wrong == {}, f"expected {oct(dir_mode)} directories and {oct(file_mode)} files"
    # Only what vistas itself says: torch.onnx's notes about torchvision, torch's FutureWarnings and
    # the like are about their internals and nothing a user can act on.
    assert res.stderr == "", res.stderr[-3000:]
