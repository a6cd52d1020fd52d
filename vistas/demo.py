"""`vistas demo` (what `make demo` runs): the bundled model, an indexed gallery, a server.

1. the bundled SigLIP bundle in models/siglip-shapes-digits/bundle (ONNX, no torch needed);
2. a gallery of held-out images never seen in training — shapes of seen and unseen
   color x shape pairs, and the scikit-learn digits test split — written as PNG files
   with a CSV of captions and metadata (the same user format `vistas index build` reads);
3. the batch indexing job turns it into a FAISS + SQLite collection "default";
4. the server on http://HOST:PORT with that index.
Steps 2-3 are skipped when their output already exists.
"""

from __future__ import annotations

import csv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_MODEL = ROOT / "models" / "siglip-shapes-digits"
# Shapes per split (the splits cycle through their pairs): 6 images of each of the 30 seen and
# 10 of each of the 6 unseen colour x shape pairs, so every query's top 5 can be all relevant
# (with 4 per seen pair, "a red circle" could return at most four red circles); all 359 digits.
GALLERY_SIZES = {"test_seen": 180, "test_unseen": 60}
DEFAULT_WORKDIR = Path("build/demo")


def write_gallery(out_dir: Path, image_size: int = 64) -> Path:
    """Held-out images as PNG files + gallery.csv; returns the CSV path."""
    from vistas.training.data import get_dataset

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for split, n in GALLERY_SIZES.items():
        ds = get_dataset("shapes", split=split, size=n, image_size=image_size, seed=1)
        names = ds.class_names()
        for i in range(len(ds)):
            ex = ds[i]
            name = f"shapes-{split}-{i:04d}.png"
            ex.image.save(out_dir / name)
            rows.append({"id": name.removesuffix(".png"), "path": name, "caption": ex.caption,
                         "kind": "shape", "label": names[ex.label], "split": split})
    ds = get_dataset("digits", split="test", image_size=image_size)
    names = ds.class_names()
    for i in range(len(ds)):
        ex = ds[i]
        name = f"digits-test-{i:04d}.png"
        ex.image.save(out_dir / name)
        rows.append({"id": name.removesuffix(".png"), "path": name, "caption": ex.caption,
                     "kind": "digit", "label": names[ex.label], "split": "test"})
    csv_path = out_dir / "gallery.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return csv_path


def gallery_contents(csv_path: Path) -> tuple[list[Path], list[frozenset[str]]]:
    """gallery.csv -> (image paths, the colour x shape labels each image contains).

    The gallery's shapes come from single-object test splits, so a shape row's `label` ("red
    circle") is everything it holds; a digit holds no colour x shape."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    paths = [csv_path.parent / r["path"] for r in rows]
    return paths, [frozenset([r["label"]]) if r["kind"] == "shape" else frozenset() for r in rows]


def gallery_precision(model, gallery_dir: str | Path = DEFAULT_WORKDIR / "gallery", k: int = 5) -> dict[str, float]:
    """Text -> image precision@k of the 36 colour x shape queries on the demo gallery, measured on
    a served model (`vistas eval --gallery`); the gallery is written first when missing."""
    from PIL import Image

    from vistas.training.evals import precision_at_k
    from vistas.training.evaluate import embed_in_batches

    csv_path = Path(gallery_dir) / "gallery.csv"
    if not csv_path.is_file():
        csv_path = write_gallery(csv_path.parent)
    paths, contents = gallery_contents(csv_path)
    images = []
    for p in paths:
        with Image.open(p) as im:
            images.append(im.convert("RGB"))
    result = precision_at_k(model.embed_texts, embed_in_batches(model.embed_images, images), contents, k=k)
    return {f"gallery/{name}": v for name, v in result.items()}


def run_demo(*, host: str = "127.0.0.1", port: int = 8000, workdir: str | Path = DEFAULT_WORKDIR, serve: bool = True) -> None:
    from vistas.index.build import build_index
    from vistas.inference.model import load_model

    workdir = Path(workdir)
    bundle = BUNDLED_MODEL / "bundle"
    index_dir = workdir / "index"
    if not (index_dir / "default" / "build_report.json").is_file():
        csv_path = workdir / "gallery" / "gallery.csv"
        if not csv_path.is_file():
            print(f"writing the demo gallery to {csv_path.parent} ...")
            csv_path = write_gallery(csv_path.parent)
        report = build_index(str(csv_path), index_dir, load_model(bundle), collection="default")
        print(report.summary())
    if not serve:
        return
    from vistas.serving.server import serve as serve_http

    print(f"serving {bundle} with index {index_dir} on http://{host}:{port}  (search page: http://{host}:{port}/, docs: /docs)")
    print(f"try:  curl -s http://{host}:{port}/v1/search -H 'content-type: application/json' "
          "-d '{\"text\": \"a red circle\", \"k\": 5}'")
    serve_http([str(bundle)], index_dir=str(index_dir), host=host, port=port)
