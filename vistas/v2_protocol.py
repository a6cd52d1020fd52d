"""How a bundle looks through the KServe v2 / Open Inference Protocol (what Triton speaks).

One contract for the three places that must agree on it: the vistas server's `/v2` routes,
the Triton model repository generated from a bundle (`deploy/`), and the Triton runtime that
runs a bundle's towers on a remote v2 server. For a bundle named M:

    M.image_encoder   pixel_values FP32 (-1, 3, H, W) -> embeddings FP32 (-1, D)   = image_encoder.onnx
    M.text_encoder    input_ids    INT64 (-1, L)      -> embeddings FP32 (-1, D)   = text_encoder.onnx
    M.image_encoder_p<P>   (FlexiViT bundles, one per patch size P other than the default)
                      the image encoder's tensors                                   = image_encoder_p<P>.onnx
    M                 images BYTES (-1), texts BYTES (-1), both optional
                      -> image_embeddings FP32 (-1, D), text_embeddings FP32 (-1, D)   (vistas only)

The tower models carry the ONNX graphs' own tensor names, so a Triton server loaded from the
generated repository and a vistas server answer the same requests the same way.
"""

from __future__ import annotations

from vistas.bundle import EMBED_OUTPUT, TOWER_ROLES, flexi_role, flexi_tower

# numpy dtype name -> v2 datatype (KServe v2 "Tensor Data Types"); bytes are np.object_ arrays
V2_DATATYPES: dict[str, str] = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "int8": "INT8",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "object": "BYTES",
}
NUMPY_DTYPES: dict[str, str] = {v: k for k, v in V2_DATATYPES.items()}

# Inputs and outputs of the convenience model that takes raw images and texts.
RAW_IMAGES, RAW_TEXTS = "images", "texts"
RAW_OUTPUTS: dict[str, str] = {RAW_IMAGES: "image_embeddings", RAW_TEXTS: "text_embeddings"}

# config.pbtxt / model-config parameter that names the embedding space, checked by the Triton runtime.
SPACE_PARAMETER = "vistas_space_id"


def tower_model_name(model: str, tower: str) -> str:
    """("siglip", "image") -> "siglip.image_encoder"; ("flexi", "image@p16") -> "flexi.image_encoder_p16"."""
    return f"{model}.{tower_role(tower)}"


def tower_role(tower: str) -> str:
    """A runtime tower name -> its graph's role (the v2 model name's suffix), for any bundle.

    `BundleSpec.role` answers for one bundle's towers; this needs no spec, so the names stay
    one function of the tower on every side of the protocol.
    """
    if tower in TOWER_ROLES:
        return TOWER_ROLES[tower]
    size = tower.removeprefix("image@p")
    # Only the canonical spelling ("image@p16", not "image@p016"): one tower, one model name.
    if size != tower and size.isdigit() and int(size) > 0 and flexi_tower(int(size)) == tower:
        return flexi_role(int(size))
    raise ValueError(
        f"no tower {tower!r}: towers are {list(TOWER_ROLES)}, and in a FlexiViT bundle 'image@p<P>' per "
        "patch size P (e.g. 'image@p16'); a bundle's own are listed by BundleSpec.towers"
    )


def v2_shape(shape: tuple[int | None, ...]) -> list[int]:
    """A TensorSpec shape (None = any size) -> v2 metadata shape (-1 = any size)."""
    return [-1 if d is None else int(d) for d in shape]


def embeddings_output(dim: int) -> dict:
    """Metadata of the towers' one output."""
    return {"name": EMBED_OUTPUT, "datatype": "FP32", "shape": [-1, dim]}
