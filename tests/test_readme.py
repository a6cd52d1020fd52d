"""Every fenced code block of README.md runs as written, or says in the README why it does not.

The README's SDK example deleted an item and then fetched it, and used `async with` outside a
function: it failed for everyone who pasted it. So each block is run here, by its language:

* bash / sh: `bash -eo pipefail` in a work directory holding what the README assumes (this
  checkout's models/, the demo's build/demo, a photos/ folder, and the user's own cat.png,
  dog.jpg and digit.png, made from the demo gallery), against a real `vistas demo` server, i.e.
  what `make demo` serves. The one change made to a block: the address 127.0.0.1:8000 becomes
  the free port that server listens on. Every JSON answer printed must be free of errors, and a
  result claimed in a comment (`-> "four" 0.99, "nine" 0.004`) must be what the block printed.
* python: the same, as a script run by this interpreter.
* toml / json: a settings file (its first line names it, `# vistas.toml`), loaded through
  vistas.serving.settings: every key must come out as the setting it names.
* `<!-- synopsis -->` right before a block: a summary of commands with [optional] parts; every
  command in it must exist, and every --flag must be in that command's --help.
* `<!-- not run: REASON -->` right before a block: not run (network, GPUs, installs, servers that
  never stop); the reason is for readers, and tells where the same thing is tested instead.
Anything else fails `test_every_block_is_run_or_marked`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image

from support.poll import wait_for
from support.serve_process import free_port

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_ADDRESS = "127.0.0.1:8000"
MARKER = re.compile(r"<!--\s*(not run|synopsis)\s*(?::\s*(.*?))?\s*-->", re.S)
FENCE = re.compile(r"^```(\S*)\s*$")


@dataclass
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    marker: str | None  # "not run", "synopsis" or None
    reason: str

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.lang or 'plain'}"


def readme_blocks() -> list[Block]:
    lines = README.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = "\n".join(lines[max(0, i - 4):i])  # a marker may wrap over a few lines
        found = [mm for mm in MARKER.finditer(before) if not before[mm.end():].strip()]
        marker = found[-1] if found else None
        blocks.append(Block(i + 1, m.group(1), "\n".join(lines[i + 1:end]) + "\n",
                            marker.group(1) if marker else None, (marker.group(2) or "") if marker else ""))
        i = end + 1
    return blocks


BLOCKS = readme_blocks()
RUNNERS = {"bash", "sh", "python", "toml", "json"}


def test_every_block_is_run_or_marked():
    assert len(BLOCKS) >= 10, "README.md lost its examples, or this test stopped finding them"
    unhandled = [
        b.id for b in BLOCKS
        if not (b.marker == "not run" and len(b.reason) >= 10
                or b.marker == "synopsis" and b.lang in ("bash", "sh")
                or b.marker is None and b.lang in RUNNERS)
    ]  # fmt: skip
    assert unhandled == [], (
        f"README blocks {unhandled} are neither runnable ({sorted(RUNNERS)}) nor marked: put "
        "`<!-- not run: why, and where it is tested instead -->` or `<!-- synopsis -->` right before each"
    )


# ---- the work directory and the server ---------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """(work directory, server url, environment): `vistas demo` serving there, and the user's files."""
    work = tmp_path_factory.mktemp("readme")
    (work / "models").symlink_to(ROOT / "models")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    port = free_port()
    log = work / "demo.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vistas.cli", "demo", "--host", "127.0.0.1", "--port", str(port),
             "--workdir", "build/demo"],
            cwd=work, env=env, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def ready():
        assert proc.poll() is None, f"`vistas demo` exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
        try:
            return httpx.get(f"{url}/ready", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, "`vistas demo` to be ready", timeout=300, every=0.2)  # it writes and indexes a gallery first
        gallery = work / "build" / "demo" / "gallery"
        shutil.copy(gallery / "shapes-test_seen-0000.png", work / "cat.png")
        Image.open(gallery / "shapes-test_seen-0001.png").convert("RGB").save(work / "dog.jpg", quality=90)
        shutil.copy(gallery / "digits-test-0003.png", work / "digit.png")
        (work / "photos").mkdir()
        for name in ("shapes-test_seen-0002.png", "shapes-test_unseen-0000.png", "digits-test-0000.png"):
            shutil.copy(gallery / name, work / "photos" / name)
        yield work, url, env
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def as_run_here(text: str, url: str) -> str:
    return text.replace(README_ADDRESS, url.removeprefix("http://"))


def json_documents(out: str) -> list:
    """The JSON values printed one after another (curl prints each answer without a newline); []
    when the output is not JSON."""
    decoder, docs, i = json.JSONDecoder(), [], 0
    while True:
        while i < len(out) and out[i].isspace():
            i += 1
        if i == len(out):
            return docs
        try:
            doc, i = decoder.raw_decode(out, i)
        except json.JSONDecodeError:
            return []
        docs.append(doc)


# ---- one test per block ----------------------------------------------------------------------------


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.marker != "not run"], ids=lambda b: b.id)
def test_readme_block(block: Block, request, tmp_path):
    if block.marker == "synopsis":
        check_synopsis(block)
    elif block.lang in ("toml", "json"):
        check_settings_file(block, tmp_path)
    elif block.lang in ("bash", "sh"):
        run_shell(block, *request.getfixturevalue("demo"))
    elif block.lang == "python":
        run_python(block, *request.getfixturevalue("demo"))
    else:
        pytest.fail(f"{block.id}: no runner for {block.lang!r} (see test_every_block_is_run_or_marked)")


def run_shell(block: Block, work: Path, url: str, env: dict) -> None:
    res = subprocess.run(["bash", "-eo", "pipefail", "-c", as_run_here(block.text, url)], cwd=work, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{block.id} failed:\n{block.text}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    docs = json_documents(res.stdout)
    errors = [d for d in docs if isinstance(d, dict) and "error" in d]
    assert errors == [], f"{block.id}: {errors}"
    check_claimed_predictions(block, docs)


def check_claimed_predictions(block: Block, docs: list) -> None:
    """A comment `-> "four" 0.99, "nine" 0.004` claims the two best predictions of the block's
    first classify answer, to the digits written."""
    claim = re.search(r'-> "([^"]+)" ([0-9.]+), "([^"]+)" ([0-9.]+)', block.text)
    if not claim:
        return
    answers = [d for d in docs if isinstance(d, dict) and "predictions" in d]
    assert answers, f"{block.id} claims predictions but printed no classify answer"
    best = answers[0]["predictions"][:2]
    for (label, score), pred in zip([claim.group(1, 2), claim.group(3, 4)], best):
        decimals = len(score.split(".")[1])
        assert (pred["label"], round(pred["score"], decimals)) == (label, float(score)), (claim.group(0), best)


def run_python(block: Block, work: Path, url: str, env: dict) -> None:
    script = work / f"readme_{block.id}.py"
    script.write_text(as_run_here(block.text, url))
    res = subprocess.run([sys.executable, script.name], cwd=work, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, f"{block.id} failed:\n{block.text}\n{res.stderr[-3000:]}"


def check_settings_file(block: Block, tmp_path: Path) -> None:
    from vistas.serving.settings import Settings

    if block.lang == "toml":
        m = re.fullmatch(r"#\s*(\S+\.toml)\s*", block.text.splitlines()[0])
        assert m, f"{block.id}: a toml block must be a settings file named on its first line (`# vistas.toml`)"
        path, values = tmp_path / m.group(1), tomllib.loads(block.text)
    else:  # JSON has no comments: a json block is a settings file too
        path, values = tmp_path / "vistas.json", json.loads(block.text)
    path.write_text(block.text)
    settings = Settings.from_file(path, bundles=[str(ROOT / "models" / "siglip-shapes-digits" / "bundle")])
    assert {k: getattr(settings, k) for k in values} == values


def check_synopsis(block: Block) -> None:
    commands: list[str] = []
    for line in block.text.splitlines():
        if line.startswith("vistas"):
            commands.append(line)
        elif line.strip():
            assert line.startswith(" ") and commands, f"{block.id}: {line!r} is not a `vistas` command"
            commands[-1] += " " + line.strip()
    assert commands, f"{block.id}: no commands"
    helps: dict[tuple[str, ...], str] = {}
    for command in commands:
        words = tuple(re.match(r"vistas((?:\s+[a-z][a-z-]*(?=\s|$))*)", command).group(1).split())
        if words not in helps:
            res = subprocess.run([sys.executable, "-m", "vistas.cli", *words, "--help"], cwd=ROOT, capture_output=True,
                                 text=True, timeout=120)
            assert res.returncode == 0, f"`vistas {' '.join(words)} --help`: {res.stderr[-1000:]}"
            helps[words] = res.stdout
        flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", command))
        unknown = sorted(f for f in flags if not re.search(rf"(?<![\w-]){f}(?![\w-])", helps[words]))
        assert unknown == [], f"{block.id}: `vistas {' '.join(words)}` has no {unknown}"
