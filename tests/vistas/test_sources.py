"""User data sources: every kind is read, and every kind of bad data is counted, never fatal."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vistas.images import DecodeStats
from vistas.sources import count_source, decode_items, iter_source


def image_bytes(fmt: str = "PNG", size: int = 16, seed: int = 0) -> bytes:
    # Noise, so a PNG has enough compressed data that cutting it really truncates pixels.
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def decode_all(spec) -> tuple[list, DecodeStats]:
    stats = DecodeStats()
    return list(decode_items(iter_source(spec), stats=stats)), stats


def failed_ids(stats: DecodeStats) -> set[str]:
    return {e.split(": ", 1)[0] for e in stats.examples}


# ---------------------------------------------------------------- folders


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    (root / "good.jpg").write_bytes(image_bytes("JPEG"))
    (root / "sub" / "good.png").write_bytes(image_bytes("PNG", seed=1))
    (root / "sub" / "good.txt").write_text("a noisy square\n")
    (root / "sub" / "good.json").write_text('{"license": "cc-by"}')
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    png = image_bytes("PNG", size=64)
    (root / "truncated.png").write_bytes(png[: len(png) // 2])
    (root / "notes.bin").write_bytes(b"these are not pixels")
    (root / ".DS_Store").write_bytes(b"\0\1")  # hidden: skipped silently
    (root / "readme.md").write_text("# my photos")  # notes: skipped silently
    return root


def test_folder_yields_good_images_and_counts_each_failure(folder):
    got, stats = decode_all(folder)
    assert [item.id for item, _ in got] == ["good.jpg", "sub/good.png"]
    assert all(img.mode == "RGB" and img.size == (16, 16) for _, img in got)
    by_id = {item.id: item for item, _ in got}
    assert by_id["good.jpg"].caption is None
    assert by_id["sub/good.png"].caption == "a noisy square"
    assert by_id["sub/good.png"].metadata == {"license": "cc-by"}
    assert stats.ok == 2 and stats.failed == 3
    assert failed_ids(stats) == {"corrupt.jpg", "truncated.png", "notes.bin"}
    assert stats.by_code.get("truncated_image") >= 1  # the cut PNG
    assert count_source(folder) == 5  # progress bars count what will be tried


def test_decode_items_survives_files_vanishing_and_bombs(folder):
    items = list(iter_source(folder))
    (folder / "good.jpg").unlink()  # deleted between listing and reading
    stats = DecodeStats()
    got = list(decode_items(items, max_pixels=100, stats=stats))  # 16x16 = 256 > 100
    assert got == [] and stats.failed == 5
    assert stats.by_code["missing_file"] == 1 and stats.by_code["image_too_large"] == 2  # + the cut PNG


# ---------------------------------------------------------------- CSV / JSONL


@pytest.fixture
def listed(tmp_path: Path) -> Path:
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(image_bytes(seed=2))
    (tmp_path / "imgs" / "b.jpg").write_bytes(image_bytes("JPEG", seed=3))
    return tmp_path


def test_csv_paths_relative_to_the_file_extra_columns_are_metadata(listed, monkeypatch):
    (listed / "train.csv").write_text(
        "path,caption,license,id\n"
        "imgs/a.png,\"a cat, sitting\",cc0,\n"  # empty id: the path is the id
        "imgs/b.jpg,a dog,cc-by,dog-1\n"
        "imgs/gone.png,a ghost,cc0,\n"
        "imgs/a.png,too,many,fields,here\n"
        "https://example.com/x.jpg,remote,cc0,\n"
    )
    monkeypatch.chdir("/")  # relative to the CSV, not to the working directory
    got, stats = decode_all(listed / "train.csv")
    assert [(i.id, i.caption, i.metadata) for i, _ in got] == [
        ("imgs/a.png", "a cat, sitting", {"license": "cc0"}),
        ("dog-1", "a dog", {"license": "cc-by"}),
    ]
    assert stats.by_code == {"missing_file": 1, "bad_row": 1, "url_not_supported": 1}
    assert any("train.csv:5" in e and "5 fields" in e for e in stats.examples)  # file and line named
    assert count_source(listed / "train.csv") == 5


def test_csv_without_path_header_raises_a_clear_error(listed):
    (listed / "bad.csv").write_text("imgs/a.png,a cat\n")
    with pytest.raises(ValueError, match=r"bad\.csv.*'path' column.*path,caption"):
        iter_source(listed / "bad.csv")  # eager: before the first item is asked for


def test_jsonl_with_image_text_keys_metadata_and_bad_lines(listed):
    lines = [
        json.dumps({"image": "imgs/a.png", "text": "a cat", "id": 7, "tags": ["pet"]}),
        "",
        "{not json",
        json.dumps({"caption": "no path"}),
        json.dumps({"path": "imgs/b.jpg", "caption": "a dog"}),
    ]
    (listed / "data.jsonl").write_text("\n".join(lines) + "\n")
    got, stats = decode_all(listed / "data.jsonl")
    assert [(i.id, i.caption, i.metadata) for i, _ in got] == [
        ("7", "a cat", {"tags": ["pet"]}),
        ("imgs/b.jpg", "a dog", {}),
    ]
    assert stats.by_code == {"bad_row": 2}
    assert failed_ids(stats) == {f"{listed / 'data.jsonl'}:3", f"{listed / 'data.jsonl'}:4"}
    assert count_source(listed / "data.jsonl") == 4


# ---------------------------------------------------------------- WebDataset shards


def write_shard(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def sample(key: str, image: bytes | None, caption: str | None = None, meta: dict | None = None, ext="jpg"):
    out = [(f"{key}.{ext}", image)] if image is not None else []
    if caption is not None:
        out.append((f"{key}.txt", caption.encode()))
    if meta is not None:
        out.append((f"{key}.json", json.dumps(meta).encode()))
    return out


def test_webdataset_shard_groups_members_and_skips_corrupt_ones(tmp_path):
    shard = tmp_path / "00000.tar"
    write_shard(shard, [
        *sample("000000000", image_bytes("JPEG"), "a red thing", {"url": "http://x/0.jpg", "width": 16}),
        *sample("000000001", b"\xff\xd8 not really a jpeg", "broken"),
        *sample("000000002", image_bytes("PNG", seed=5), None, {"caption": "from json"}, ext="png"),
        *sample("000000003", None, "caption without image"),
    ])
    got, stats = decode_all(shard)
    assert [(i.id, i.caption) for i, _ in got] == [("000000000", "a red thing"), ("000000002", "from json")]
    assert got[0][0].metadata == {"url": "http://x/0.jpg", "width": 16}
    assert stats.by_code == {"invalid_image": 1, "missing_image": 1}
    assert failed_ids(stats) == {"000000001", "000000003"}
    assert count_source(shard) is None  # counting a tar means reading it


def test_shard_folder_glob_and_truncated_shard(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    write_shard(shards / "00000.tar", sample("000000000", image_bytes("JPEG"), "first"))
    write_shard(shards / "00001.tar", [*sample("000010000", image_bytes("JPEG", seed=1), "second"),
                                       *sample("000010001", image_bytes("JPEG", size=64, seed=2), "cut")])
    data = (shards / "00001.tar").read_bytes()
    (shards / "00001.tar").write_bytes(data[: len(data) - 3000])  # cut inside the last image
    (shards / "00000_stats.json").write_text("{}")  # img2dataset writes these next to shards

    for spec in (shards, str(shards / "*.tar")):
        got, stats = decode_all(spec)
        assert [i.id for i, _ in got] == ["000000000", "000010000"]
        assert stats.by_code == {"unreadable_member": 1}
        assert "00001.tar" in stats.examples[0]


def test_missing_source_says_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder of images"):
        iter_source(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="matches no file"):
        iter_source(str(tmp_path / "*.tar"))
