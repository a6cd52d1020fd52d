"""What `pip install .` and `pip install ./clients` put into site-packages: built as real wheels
from a copy of the tracked sources (the build writes build/ and *.egg-info next to its sources)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from support.imports import package_dirs

ROOT = Path(__file__).resolve().parents[2]


def tracked() -> list[str]:
    """The repository's files (tracked, or new and not ignored)."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return [p for p in out.splitlines() if (ROOT / p).is_file()]


def build_wheel(source: Path, out: Path) -> zipfile.ZipFile:
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    return zipfile.ZipFile(wheel)


def copy_sources(dest: Path, skip: tuple[str, ...] = ("models/", "tests/", "docs/")) -> Path:
    for p in tracked():
        if not p.startswith(skip):
            (dest / p).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / p, dest / p)
    return dest


def test_every_package_folder_is_listed():
    """A sub-package missing from pyproject's `packages` would be left out of the wheel, silently."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for name, folder in package_dirs(ROOT / "pyproject.toml").items():
        for init in folder.rglob("__init__.py"):
            found.add(".".join((name, *init.parent.relative_to(folder).parts)))
    assert found == listed, f"missing from pyproject: {sorted(found - listed)}; listed without a folder: {sorted(listed - found)}"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    src = copy_sources(tmp_path_factory.mktemp("src"))
    main = build_wheel(src, tmp_path_factory.mktemp("main"))
    sdk = build_wheel(src / "clients", tmp_path_factory.mktemp("sdk"))
    return main, sdk


def tops(wheel: zipfile.ZipFile) -> set[str]:
    return {n.split("/")[0] for n in wheel.namelist() if not n.split("/")[0].endswith((".dist-info", ".data"))}


def requires(wheel: zipfile.ZipFile) -> list[str]:
    (meta,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return Parser().parsestr(wheel.read(meta).decode()).get_all("Requires-Dist") or []


def test_main_wheel_installs_only_the_vistas_namespace(wheels):
    main, _ = wheels
    assert tops(main) == {"vistas"}
    names = set(main.namelist())
    for name, folder in package_dirs(ROOT / "pyproject.toml").items():
        for file in folder.rglob("*.py"):
            installed = "/".join((*name.split("."), *file.relative_to(folder).parts))
            assert installed in names, f"{file.relative_to(ROOT)} is not in the wheel as {installed}"
    assert "vistas/serving/static/index.html" in names and "vistas/deploy/compose.yaml" in names


def test_sdk_wheel_is_the_client_alone_on_httpx_and_numpy(wheels):
    _, sdk = wheels
    assert tops(sdk) == {"vistas_client"}
    base = sorted(r.split("==")[0] for r in requires(sdk) if "extra ==" not in r)
    assert base == ["httpx", "numpy"], requires(sdk)


def test_dockerfile_copies_every_package_folder():
    """pip builds the serving image from the mapped folders: one left out fails the image build."""
    copied = {line.split()[1].rstrip("/") for line in (ROOT / "Dockerfile").read_text().splitlines()
              if line.startswith("COPY ")}
    folders = {str(f.relative_to(ROOT)) for f in package_dirs(ROOT / "pyproject.toml").values()}
    assert folders <= copied, f"Dockerfile does not COPY {sorted(folders - copied)}"
