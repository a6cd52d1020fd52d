"""The batch indexing job over every source kind, with the torch-free tiny bundle."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from support.tiny_bundle import COLOR_RGB, build_bundle
from vistas.index import Collections
from vistas.index.build import build_index
from vistas.inference.model import load_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_model(str(build_bundle(tmp_path_factory.mktemp("b") / "tiny")))


def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), color).save(buf, format="PNG")
    return buf.getvalue()


def test_csv_source_with_metadata_and_a_duplicate_id(tmp_path, model):
    for name, rgb in COLOR_RGB.items():
        (tmp_path / f"{name}.png").write_bytes(_png(rgb))
    (tmp_path / "list.csv").write_text(
        "id,path,caption,color\n"
        "r,red.png,a red square,red\n"
        "g,green.png,a green square,green\n"
        "b,blue.png,a blue square,blue\n"
        "r,green.png,red again but green,green\n"  # the later row wins
        "x,missing.png,gone,none\n"
    )
    report = build_index(str(tmp_path / "list.csv"), tmp_path / "idx", model, batch_size=8, progress=False)
    assert report.failed == 1 and report.failures_by_code == {"missing_file": 1}
    with Collections(tmp_path / "idx") as colls:
        coll = colls.get("default")
        assert coll.count == 3
        assert coll.get("r")["metadata"] == {"color": "green", "caption": "red again but green"}
        hits = coll.search(model.embed_texts(["blue"])[0], k=1)
        assert hits[0].id == "b"


def test_webdataset_shards(tmp_path, model):
    shard = tmp_path / "shard-000.tar"
    with tarfile.open(shard, "w") as tar:
        for key, (name, rgb) in enumerate(COLOR_RGB.items()):
            for suffix, data in ((".png", _png(rgb)), (".txt", f"a {name} thing".encode()),
                                 (".json", json.dumps({"color": name}).encode())):
                info = tarfile.TarInfo(f"{key:05d}{suffix}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        bad = b"not a png"
        info = tarfile.TarInfo("00009.png")
        info.size = len(bad)
        tar.addfile(info, io.BytesIO(bad))
    report = build_index(str(shard), tmp_path / "idx", model, collection="wds", progress=False)
    assert (report.indexed, report.failed) == (3, 1)
    with Collections(tmp_path / "idx") as colls:
        coll = colls.get("wds")
        assert coll.get("00001")["metadata"] == {"color": "green", "caption": "a green thing"}
        vec = model.embed_images([Image.new("RGB", (9, 9), COLOR_RGB["red"])])[0]
        assert coll.search(vec, k=1)[0].id == "00000"


def test_rebuilding_into_an_index_of_another_space_is_refused(tmp_path, model, tmp_path_factory):
    (tmp_path / "a.png").write_bytes(_png((255, 0, 0)))
    build_index(str(tmp_path), tmp_path / "idx", model, progress=False)
    other = load_model(str(build_bundle(tmp_path_factory.mktemp("o") / "other", "other", seed=7)))
    with pytest.raises(ValueError, match="space"):
        build_index(str(tmp_path), tmp_path / "idx", other, progress=False)
    np.testing.assert_equal(Collections(tmp_path / "idx").get("default").count, 1)
