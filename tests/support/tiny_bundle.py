"""A tiny torch-free bundle built with onnx.helper, for serving tests that need no trained model.

The tiny model is built so that zero-shot results are meaningful, not random:
  image tower  pixel_values (B,3,16,16) -> mean over a 2x2 grid per channel (B,12)
               -> +1 (so black is the origin) -> MatMul W (12,D) -> L2 normalise.
               Row (c, cell) of W is the unit vector e_c plus noise, so an image
               embeds near the direction of its dominant colour.
  text tower   input_ids (B,8) -> Gather from a table (V,D) -> mean over tokens -> L2 normalise.
               "red"/"green"/"blue" rows are 3*e_c plus noise, other words small noise,
               [PAD] zeros: "a photo of a red." lands near e_red.
So a red image is classified "red", and a red query finds the red items.

`heavy=(hidden, layers)` adds real work to the image tower, for tests that need a model
that takes its time (queues filling up, shutdown with requests in flight): the 16x16
image as 48 tokens of 16 values -> an MLP of `layers` (hidden x hidden) ReLU layers ->
mean over tokens -> a (hidden, 12) projection scaled by 1e-3, added to the 12 features.
That is 96 * hidden**2 * layers FLOPs per image, and the colours still classify.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from vistas.bundle import BundleSpec, Preprocess, save_bundle_spec, space_id
from vistas.images import ImageSpec
from vistas.tokenizer import TextSpec

DIM = 8
SIZE = 16  # image height = width
TEXT_LENGTH = 8
COLORS = ("red", "green", "blue")
WORDS = "a photo of the an red green blue yellow cat dog car square circle picture ."
COLOR_RGB = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


def _tokenizer(path: Path) -> dict[str, int]:
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from tokenizers.trainers import WordLevelTrainer

    tok = Tokenizer(WordLevel(unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = WordLevelTrainer(special_tokens=["[PAD]", "[EOS]", "[UNK]"])  # ids 0, 1, 2
    tok.train_from_iterator([WORDS], trainer)
    tok.save(str(path))
    return tok.get_vocab()


def _image_graph(w: np.ndarray, input_name: str, heavy: tuple[int, int] | None = None, rng=None):
    from onnx import TensorProto, helper, numpy_helper

    half = SIZE // 2
    nodes = [
        # (B,3,16,16) -> (B,3,2,8,2,8) -> mean over the 8x8 cells -> (B,12)
        helper.make_node("Reshape", [input_name, "grid_shape"], ["grid"]),
        helper.make_node("ReduceMean", ["grid"], ["cells"], axes=[3, 5], keepdims=0),
        helper.make_node("Reshape", ["cells", "flat_shape"], ["centred"]),
        helper.make_node("Add", ["centred", "one"], ["feats"]),  # [-1, 1] -> [0, 2]: black is the origin
        helper.make_node("MatMul", ["feats", "w"], ["proj"]),  # (B, D)
        helper.make_node("LpNormalization", ["proj"], ["embeddings"], axis=-1, p=2),
    ]
    inits = [
        numpy_helper.from_array(np.array([-1, 3, 2, half, 2, half], np.int64), "grid_shape"),
        numpy_helper.from_array(np.array([-1, 12], np.int64), "flat_shape"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(w.astype(np.float32), "w"),
    ]
    if heavy is not None:
        hidden, layers = heavy
        work = [helper.make_node("Reshape", [input_name, "token_shape"], ["h0"])]  # (B, 48, 16)
        weights = [("w_in", rng.standard_normal((SIZE, hidden)) / np.sqrt(SIZE))]
        work.append(helper.make_node("MatMul", ["h0", "w_in"], ["m0"]))
        work.append(helper.make_node("Relu", ["m0"], ["r0"]))
        for i in range(layers):
            weights.append((f"w{i}", rng.standard_normal((hidden, hidden)) * np.sqrt(2 / hidden)))  # He init
            work.append(helper.make_node("MatMul", [f"r{i}", f"w{i}"], [f"m{i + 1}"]))  # (B, 48, hidden)
            work.append(helper.make_node("Relu", [f"m{i + 1}"], [f"r{i + 1}"]))
        weights.append(("w_out", 1e-3 * rng.standard_normal((hidden, 12)) / np.sqrt(hidden)))
        work.append(helper.make_node("ReduceMean", [f"r{layers}"], ["pooled"], axes=[1], keepdims=0))  # (B, hidden)
        work.append(helper.make_node("MatMul", ["pooled", "w_out"], ["extra"]))  # (B, 12)
        work.append(helper.make_node("Add", ["feats", "extra"], ["feats_plus"]))
        nodes[4].input[0] = "feats_plus"
        nodes = nodes[:4] + work + nodes[4:]
        inits.append(numpy_helper.from_array(np.array([-1, 3 * SIZE, SIZE], np.int64), "token_shape"))
        inits += [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights]
    inp = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])
    out = helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", DIM])
    return helper.make_graph(nodes, "image_encoder", [inp], [out], inits)


def _text_graph(table: np.ndarray):
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["tokens"], axis=0),  # (B, L, D)
        helper.make_node("ReduceMean", ["tokens"], ["pooled"], axes=[1], keepdims=0),  # (B, D)
        helper.make_node("LpNormalization", ["pooled"], ["embeddings"], axis=-1, p=2),
    ]
    inits = [numpy_helper.from_array(table.astype(np.float32), "table")]
    inp = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", TEXT_LENGTH])
    out = helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", DIM])
    return helper.make_graph(nodes, "text_encoder", [inp], [out], inits)


def _save(graph, path: Path) -> None:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def build_bundle(
    directory: Path,
    name: str = "tiny",
    *,
    seed: int = 0,
    image_input: str = "pixel_values",
    heavy: tuple[int, int] | None = None,
) -> Path:
    """A complete bundle directory for the tiny colour model. Different seeds, different spaces."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    vocab = _tokenizer(directory / "tokenizer.json")

    w = 0.1 * rng.standard_normal((12, DIM))  # rows in (channel, cell) order
    for c in range(3):
        w[c * 4 : (c + 1) * 4, c] += 1.0
    table = 0.1 * rng.standard_normal((len(vocab), DIM))
    table[vocab["[PAD]"]] = 0.0
    for c, color in enumerate(COLORS):
        table[vocab[color], c] += 3.0

    _save(_image_graph(w, image_input, heavy, rng), directory / "image_encoder.onnx")
    _save(_text_graph(table), directory / "text_encoder.onnx")
    pre = Preprocess(
        image=ImageSpec(height=SIZE, width=SIZE, patch_size=8),
        text=TextSpec(length=TEXT_LENGTH, pad_id=vocab["[PAD]"], eos_id=vocab["[EOS]"]),
    )
    spec = BundleSpec(
        name=name,
        family="siglip",
        embed_dim=DIM,
        logit_scale=10.0,
        logit_bias=-5.0,
        preprocess=pre,
        space_id=space_id([directory / "image_encoder.onnx", directory / "text_encoder.onnx"], pre),
    )
    save_bundle_spec(spec, directory)
    return directory


def png(color=(255, 0, 0), size=(20, 20)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()
