"""The bundle: what export writes and serving reads.

A bundle directory holds
  bundle.json          this spec
  image_encoder.onnx   pixel_values float32 (B, 3, H, W) -> embeddings float32 (B, D), L2-normalised
                       (NaFlex: pixel_values (B, N, p*p*3), pixel_attention_mask int32 (B, N),
                       spatial_shapes int64 (B, 2), see `vistas.naflex`)
  text_encoder.onnx    input_ids int64 (B, L)            -> embeddings float32 (B, D), L2-normalised
  tokenizer.json       Hugging Face `tokenizers` file
  *.onnx.data          only for towers too big for one protobuf (> 1.5 GB of weights): their
                       weights, listed in `files` as "<role>_data" so an incomplete copy fails at load
The preprocessing spec (ImageSpec + TextSpec) is the same object a training
checkpoint stores in `preprocess.json`, so serving preprocesses as training did.

Format versions: 1 is fixed-size images and vistas-trained tokenizers; 2 adds NaFlex
images and imported tokenizers (`TextSpec` canonicalisation, special tokens, padding
side); 3 adds FlexiViT bundles (`patch_sizes`): one image graph per patch size of one set
of weights, `image_encoder_p<P>.onnx` beside `image_encoder.onnx` (the preprocessing's own
patch size), every one of them in the same embedding space. A bundle is written with the oldest version that holds it, so a bundle that
needs nothing new stays readable by older vistas; this vistas reads both.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from vistas.images import ImageSpec
from vistas.tokenizer import TextSpec

BUNDLE_FILE = "bundle.json"
FORMAT_VERSION = 3  # the newest format this vistas reads and writes

# Tensor names of the exported graphs: the serving runtimes and export agree on these.
IMAGE_INPUT, TEXT_INPUT, EMBED_OUTPUT = "pixel_values", "input_ids", "embeddings"
# NaFlex image towers also take these (the names of transformers' Siglip2 processor outputs).
MASK_INPUT, SHAPES_INPUT = "pixel_attention_mask", "spatial_shapes"
# tower -> its graph's key in `files` (also the suffix of its KServe v2 / Triton model name)
TOWER_ROLES: dict[str, str] = {"image": "image_encoder", "text": "text_encoder"}


def flexi_tower(patch_size: int) -> str:
    """The runtime tower name of a FlexiViT bundle's image graph at `patch_size` ("image@p16")."""
    return f"image@p{int(patch_size)}"


def flexi_role(patch_size: int) -> str:
    """Its `files` key, which is also its graph's file stem ("image_encoder_p16")."""
    return f"image_encoder_p{int(patch_size)}"


@dataclass(frozen=True)
class Preprocess:
    image: ImageSpec
    text: TextSpec

    def to_dict(self) -> dict:
        return {"image": self.image.to_dict(), "text": self.text.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        return cls(image=ImageSpec.from_dict(d["image"]), text=TextSpec.from_dict(d["text"]))

    @property
    def format_version(self) -> int:
        return max(self.image.format_version, self.text.format_version)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Preprocess":
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass(frozen=True)
class BundleSpec:
    name: str
    family: str  # "siglip", ...
    embed_dim: int
    logit_scale: float  # exp(t): multiplies the cosine similarity
    logit_bias: float  # b: added after scaling; sigmoid(scale * cos + bias) is the probability
    preprocess: Preprocess
    space_id: str  # hash of weights + preprocessing: vectors from different spaces never mix
    files: dict[str, str] = field(
        default_factory=lambda: {"image_encoder": "image_encoder.onnx", "text_encoder": "text_encoder.onnx"}
    )
    parity: dict[str, float] = field(default_factory=dict)  # max abs diff onnx vs torch per tower
    # Reduced-precision bundles only (export/quantize.py): method, cosine to fp32, eval change.
    quantization: dict = field(default_factory=dict)
    # FlexiViT bundles only: {patch size: {"tower", "tokens", "flops", "parity", "eval"?}}, the
    # preprocessing's own patch size included (its tower is "image"). Empty: one patch size.
    patch_sizes: dict[int, dict] = field(default_factory=dict)

    @property
    def format_version(self) -> int:
        """The oldest format that holds this bundle (see the module docstring)."""
        return max(self.preprocess.format_version, 3 if self.patch_sizes else 1)

    @property
    def default_patch_size(self) -> int:
        return self.preprocess.image.patch_size

    @property
    def towers(self) -> tuple[str, ...]:
        """Every graph's runtime tower name: "image", "text", then "image@p<P>" per other patch size."""
        extra = tuple(flexi_tower(p) for p in sorted(self.patch_sizes) if p != self.default_patch_size)
        return (*TOWER_ROLES, *extra)

    def role(self, tower: str) -> str:
        """A tower's key in `files`."""
        if tower in TOWER_ROLES:
            return TOWER_ROLES[tower]
        if tower.startswith("image@p") and tower in self.towers:
            return flexi_role(int(tower.removeprefix("image@p")))
        raise KeyError(f"bundle {self.name!r} has no tower {tower!r}; it has {list(self.towers)}")

    def image_tower(self, patch_size: int | None = None) -> str:
        """The tower that embeds images at `patch_size` (None: the bundle's default)."""
        if patch_size is None or patch_size == self.default_patch_size:
            return "image"
        if patch_size not in self.patch_sizes:
            have = sorted(self.patch_sizes) or [self.default_patch_size]
            raise ValueError(
                f"patch_size {patch_size} is not served by bundle {self.name!r}: it has patch sizes {have}"
                + ("" if self.patch_sizes else " (not a FlexiViT bundle)")
            )
        return flexi_tower(patch_size)

    def to_dict(self) -> dict:
        return {
            "format_version": self.format_version,
            "name": self.name,
            "family": self.family,
            "embed_dim": self.embed_dim,
            "logit_scale": self.logit_scale,
            "logit_bias": self.logit_bias,
            "space_id": self.space_id,
            "preprocess": self.preprocess.to_dict(),
            "files": dict(self.files),
            "parity": dict(self.parity),
        } | ({"quantization": self.quantization} if self.quantization else {}) | (
            {"patch_sizes": {str(p): dict(v) for p, v in sorted(self.patch_sizes.items())}} if self.patch_sizes else {}
        )

    @classmethod
    def from_dict(cls, d: dict) -> "BundleSpec":
        version = d.get("format_version")
        if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
            raise ValueError(
                f"bundle format_version {version!r} is not supported (this vistas reads 1 to {FORMAT_VERSION}); "
                "re-export the bundle with this version of vistas, or upgrade vistas"
            )
        return cls(
            name=d["name"],
            family=d["family"],
            embed_dim=int(d["embed_dim"]),
            logit_scale=float(d["logit_scale"]),
            logit_bias=float(d["logit_bias"]),
            preprocess=Preprocess.from_dict(d["preprocess"]),
            space_id=d["space_id"],
            files=dict(d["files"]),
            parity=dict(d.get("parity", {})),
            quantization=dict(d.get("quantization", {})),
            patch_sizes={int(p): dict(v) for p, v in d.get("patch_sizes", {}).items()},
        )


def save_bundle_spec(spec: BundleSpec, directory: str | Path) -> Path:
    path = Path(directory) / BUNDLE_FILE
    path.write_text(json.dumps(spec.to_dict(), indent=2) + "\n")
    return path


def load_bundle_spec(directory: str | Path) -> BundleSpec:
    path = Path(directory) / BUNDLE_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {directory} is not a vistas bundle. Make one with `vistas export CHECKPOINT OUT`."
        )
    spec = BundleSpec.from_dict(json.loads(path.read_text()))
    for role, fname in spec.files.items():
        if not (Path(directory) / fname).is_file():
            raise FileNotFoundError(f"bundle {directory} lists {role}={fname} but the file is missing")
    return spec


def space_id(weight_files: list[Path], preprocess: Preprocess) -> str:
    """Embedding-space id: sha256 over the weights and the preprocessing spec.

    Two bundles share a space only when the same weights see the same inputs.
    """
    h = hashlib.sha256()
    for f in weight_files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    h.update(json.dumps(preprocess.to_dict(), sort_keys=True).encode())
    return "sha256:" + h.hexdigest()[:32]
