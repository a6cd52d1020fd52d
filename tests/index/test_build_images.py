"""How the batch indexing job decodes images: EXIF orientation applied, and large photos reduced on
decode with the same vectors as the HTTP path (issue 12, items 2 and 10)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from support.tiny_bundle import build_bundle
from vistas.images import decode_image, larger_need
from vistas.index import Collections
from vistas.index.build import build_index
from vistas.index.embed_stage import BuildConfig, decode_item
from vistas.index.thumbnails import thumbnail_size
from vistas.inference.model import load_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_model(str(build_bundle(tmp_path_factory.mktemp("b") / "tiny")))


def _photo(width: int, height: int) -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea()).resize((width, height), Image.Resampling.BICUBIC)


def _save(img: Image.Image, path, orientation: int | None = None) -> None:
    kw = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif
    img.save(path, **kw)


@pytest.mark.parametrize("size,reduce_above", [((180, 120), None), ((1500, 1000), 0)])  # full size; reduced
def test_exif_orientation_6_is_indexed_and_thumbnailed_upright(tmp_path, model, size, reduce_above):
    upright = _photo(*size)
    folder = tmp_path / "photos"
    folder.mkdir()
    _save(upright, folder / "upright.png")
    _save(upright.transpose(Image.Transpose.ROTATE_90), folder / "sideways.png", orientation=6)
    more = {} if reduce_above is None else {"reduce_above_pixels": reduce_above}
    report = build_index(str(folder), tmp_path / "idx", model, progress=False, **more)
    assert (report.indexed, report.failed) == (2, 0)
    with Collections(tmp_path / "idx") as colls:
        coll = colls.get("default")
        np.testing.assert_allclose(coll.get("sideways.png")["vector"], coll.get("upright.png")["vector"], rtol=0, atol=1e-6)
        thumbs = {id: Image.open(io.BytesIO(coll.thumbnail(id))) for id in ("upright.png", "sideways.png")}
    assert thumbs["sideways.png"].size == thumbs["upright.png"].size == (128, 85)  # landscape, as the photo
    np.testing.assert_array_equal(np.asarray(thumbs["sideways.png"]), np.asarray(thumbs["upright.png"]))


def test_a_large_photo_is_reduced_on_decode_for_the_model_and_the_thumbnail_and_then_let_go(tmp_path, model):
    """The job decodes each image once, reduced (over reduce_above_pixels: 0 here, so a 6 MP photo
    is) no further than both the model's input and the thumbnail need (REDUCING_GAP x each),
    preprocesses it in the decode thread and keeps only the model inputs until the batch runs."""
    from skimage import data

    big = Image.fromarray(data.astronaut()).resize((3000, 2000), Image.Resampling.BICUBIC)
    big.save(tmp_path / "big.png")
    blob = (tmp_path / "big.png").read_bytes()
    row, image = decode_item("big", None, {}, blob, BuildConfig(reduce_above_pixels=0), model)
    assert image is None and row.error is None and row.inputs is not None
    report = build_index(str(tmp_path / "big.png"), tmp_path / "idx", model, progress=False, reduce_above_pixels=0)
    assert report.indexed == 1
    both = decode_image(blob, need=larger_need(model.image_need, thumbnail_size), reduce_above=0)
    assert both.size == (429, 286)  # 3000 // (3 x 128) = 7 on both axes: the thumbnail's need rules
    with Collections(tmp_path / "idx") as colls:
        coll = colls.get("default")
        got, thumb = coll.get(str(tmp_path / "big.png"))["vector"], coll.thumbnail(str(tmp_path / "big.png"))
    np.testing.assert_allclose(got, model.embed_images([both])[0], rtol=0, atol=1e-6)
    assert Image.open(io.BytesIO(thumb)).size == (128, 85)  # the source's aspect ratio, not the reduced one's
