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
GALLERY_SIZES = {"test_seen": 120, "test_unseen": 60}  # shapes per split; all 360 digits test images


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


def run_demo(*, host: str = "127.0.0.1", port: int = 8000, workdir: str | Path = "build/demo", serve: bool = True) -> None:
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
