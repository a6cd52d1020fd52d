"""The shared contract: image decoding/preprocessing, tokenization, bundle spec, configs."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from vistas.bundle import BundleSpec, Preprocess, load_bundle_spec, save_bundle_spec, space_id
from vistas.images import ImageError, ImageSpec, decode_image, patchify, preprocess, preprocess_batch
from vistas.tokenizer import Tokenizer


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_decode_errors_have_codes():
    with pytest.raises(ImageError) as e:
        decode_image(b"")
    assert e.value.code == "empty_image"
    with pytest.raises(ImageError) as e:
        decode_image(b"this is text, not an image")
    assert e.value.code == "invalid_image"
    good = _png(Image.new("RGB", (40, 30), (10, 20, 30)))
    with pytest.raises(ImageError) as e:
        decode_image(good[: len(good) // 2])
    assert e.value.code in ("truncated_image", "invalid_image")
    with pytest.raises(ImageError) as e:
        decode_image(good, max_pixels=40 * 30 - 1)
    assert e.value.code == "image_too_large"
    assert decode_image(good, max_pixels=40 * 30).size == (40, 30)


def test_decode_composites_alpha_on_white_and_converts_modes():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    assert decode_image(_png(rgba)).getpixel((0, 0)) == (255, 255, 255)
    grey = Image.new("L", (4, 4), 77)
    assert decode_image(_png(grey)).getpixel((1, 1)) == (77, 77, 77)


def test_preprocess_value_range_layout_and_resize():
    spec = ImageSpec(height=8, width=12, patch_size=4)
    img = Image.new("RGB", (12, 8), (255, 0, 128))
    x = preprocess(img, spec)
    assert x.shape == (3, 8, 12) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, 0], [1.0, -1.0, 128 / 255 * 2 - 1], atol=1e-6)
    big = Image.new("RGB", (100, 50), (0, 255, 0))
    assert preprocess(big, spec).shape == (3, 8, 12)
    assert preprocess_batch([img, big], spec).shape == (2, 3, 8, 12)


def test_patchify_order_is_row_col_channel():
    pixels = np.arange(3 * 4 * 6, dtype=np.float32).reshape(3, 4, 6)
    patches, coords = patchify(pixels, 2)
    assert patches.shape == (6, 12) and coords.tolist()[:4] == [[0, 0], [0, 1], [0, 2], [1, 0]]
    # patch (row 1, col 2): pixel (y=2..3, x=4..5); first values are pixel (2,4) channels 0,1,2.
    p = patches[5]
    assert p[:3].tolist() == [pixels[0, 2, 4], pixels[1, 2, 4], pixels[2, 2, 4]]
    assert p[3:6].tolist() == pixels[:, 2, 5].tolist()


def test_image_spec_rejects_bad_values():
    # A size that is not a multiple of the patch is valid (the tower drops the remainder, as
    # So400m/14 at 384 px does); one smaller than a patch is not.
    assert ImageSpec(height=10, width=8, patch_size=4).height == 10
    with pytest.raises(ValueError, match="smaller than one patch"):
        ImageSpec(height=3, width=8, patch_size=4)
    with pytest.raises(ValueError, match="resample"):
        ImageSpec(height=8, width=8, patch_size=4, resample="magic")
    with pytest.raises(ValueError, match="max_num_patches must be set"):
        ImageSpec(height=8, width=8, patch_size=4, mode="naflex")
    with pytest.raises(ValueError, match="image mode"):
        ImageSpec(height=8, width=8, patch_size=4, mode="navit")


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from vistas.training.tokenizer_train import train_tokenizer

    d = tmp_path_factory.mktemp("tok")
    spec = train_tokenizer(["a red circle", "a blue square", "the number seven"] * 20, d, vocab_size=60, length=6)
    return d, spec


def test_tokenizer_pads_to_length_with_eos(tokenizer_dir):
    d, spec = tokenizer_dir
    tok = Tokenizer(spec, d)
    ids = tok.encode(["a red circle", "A RED CIRCLE", "a blue square a blue square a blue square"])
    assert ids.shape == (3, 6) and ids.dtype == np.int64
    assert ids[0].tolist() == ids[1].tolist(), "the normaliser lowercases"
    assert spec.eos_id in ids[0] and ids[0, -1] == spec.pad_id
    assert ids[2, -1] == spec.eos_id, "truncation keeps EOS last"


def test_bundle_spec_round_trip_and_space_id(tmp_path, tokenizer_dir):
    _, tspec = tokenizer_dir
    pre = Preprocess(ImageSpec(height=8, width=8, patch_size=4), tspec)
    w = tmp_path / "w.bin"
    w.write_bytes(b"weights")
    sid = space_id([w], pre)
    for f in ("image_encoder.onnx", "text_encoder.onnx"):
        (tmp_path / f).write_bytes(b"")
    spec = BundleSpec("m", "siglip", 8, 10.0, -10.0, pre, sid, parity={"image_max_abs_diff": 1e-6})
    save_bundle_spec(spec, tmp_path)
    assert load_bundle_spec(tmp_path) == spec
    w.write_bytes(b"weights2")
    assert space_id([w], pre) != sid, "other weights, other space"
    other_pre = Preprocess(ImageSpec(height=8, width=8, patch_size=4, resample="bicubic"), tspec)
    w.write_bytes(b"weights")
    assert space_id([w], other_pre) != sid, "other preprocessing, other space"
    raw = json.loads((tmp_path / "bundle.json").read_text())
    raw["format_version"] = 99
    (tmp_path / "bundle.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="format_version"):
        load_bundle_spec(tmp_path)


def test_config_arguments():
    from vistas.training.config import load_config, parse_arg

    assert parse_arg("quick,steps=5,name=x", quick=False, steps=0, name="") == {"quick": True, "steps": 5, "name": "x"}
    with pytest.raises(ValueError, match="unknown config argument"):
        parse_arg("stpes=5", steps=0)
    c = load_config("configs/siglip_shapes_digits.py:quick=True,steps=7")
    assert c.steps == 7 and c.model.family == "siglip"
    with pytest.raises(FileNotFoundError):
        load_config("configs/nope.py")
    # A bare name finds the installed recipe (vistas.configs), from any working directory.
    by_name = load_config("siglip_shapes_digits:quick=True,steps=7")
    assert by_name.steps == 7 and by_name.model.family == "siglip"
    with pytest.raises(FileNotFoundError, match="siglip_shapes_digits"):  # the error lists the recipes
        load_config("nope")


def test_v2_model_names_of_every_tower():
    from vistas.v2_protocol import tower_model_name

    assert tower_model_name("m", "image") == "m.image_encoder" and tower_model_name("m", "text") == "m.text_encoder"
    assert tower_model_name("m", "image@p16") == "m.image_encoder_p16"  # a FlexiViT bundle's graph at p=16
    for bad in ("audio", "image@p", "image@p0", "image@p016", "image@px", "image@p-4"):
        with pytest.raises(ValueError, match=f"no tower '{bad}': towers are .*'image@p<P>'"):
            tower_model_name("m", bad)
