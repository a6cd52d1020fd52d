"""User data sources: folders, CSV/JSONL lists, WebDataset shards and Parquet files -> items.

One reader for training on user data and for the torch-free batch indexing job, so both
accept exactly the same inputs. No torch here.

    for item, img in decode_items(iter_source("photos/"), stats=stats): ...

Accepted specs (`iter_source(spec)` detects the kind):
  * a folder of images, walked recursively; id = path relative to the folder; caption from a
    sidecar `NAME.txt`, metadata from a sidecar `NAME.json` (the same layout as a shard).
  * a `.csv` with a header containing `path` (or `image`), optionally `caption` (or `text`)
    and `id`; any other column becomes metadata. Paths are relative to the CSV's folder.
  * a `.jsonl` file, one object per line: `{"path"|"image", "caption"|"text"?, "id"?, ...}`.
  * WebDataset `.tar` shards as img2dataset writes them: a single tar, a folder holding
    tars (its other files, such as img2dataset's parquet and stats, are ignored), or a glob.
  * Parquet: a `.parquet` file or a folder of them (and no tars). An `image` column of bytes
    (or of {"bytes", "path"} structs, as Hugging Face datasets store images) or a `path` column
    of file paths relative to the file; optional `caption`/`text` and `id`; other columns
    become metadata. Read one record batch at a time (pyarrow), so a file can be large.
  * any glob; each match is read by the rules above (a matched image file is one item).

Bad data never stops a run: a malformed row, an unreadable tar member or a missing file
becomes an item that fails in `decode_items`, which counts it in `DecodeStats` with its id.
Only problems with the source as a whole (it does not exist, a CSV without a `path`
column, a list that is not UTF-8) raise, because no item of it could be used.

Units. `split_source(spec)` cuts a source into units that can be read on their own, in a fixed
order: a tar shard, a Parquet file, or up to `unit_size` listed items of a folder / CSV / JSONL
(whose items are lazy: a path each, no image bytes). Batch jobs commit and resume per unit,
and Ray reads units in parallel; `iter_unit(unit)` yields a unit's items.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import itertools
import json
import logging
import os
import re
import tarfile
import zlib
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from vistas.images import DEFAULT_MAX_PIXELS, DecodeStats, ImageError, decode_image

log = logging.getLogger(__name__)

# Image members of a WebDataset sample, as img2dataset writes them (first one present wins).
TAR_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
# Files a folder walk skips silently: sidecars, lists, notes and archives are not images the
# user lost. Any other file is tried (PIL sniffs the content, not the name), see `_is_candidate`.
_NOT_IMAGES = {".txt", ".json", ".csv", ".jsonl", ".md", ".parquet", ".tar", ".gz", ".tgz"}
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_GLOB_CHARS = set("*?[")
_LOGGED_FAILURES = 20  # per decode_items call; the rest are only counted in DecodeStats


class SourceError(ImageError):
    """An item that the source itself could not provide (code is machine-readable).

    Codes: "missing_file", "unreadable_file", "bad_row", "url_not_supported",
    "missing_image", "bad_metadata", "unreadable_member".
    """


@dataclass
class Item:
    """One image of a source, not yet decoded.

    `data` is the image bytes (tar members, read with their shard) or the file to read them
    from when needed (folders, lists), so listing a source costs no image I/O.
    """

    id: str
    data: bytes | Path
    caption: str | None = None
    metadata: dict = field(default_factory=dict)
    error: SourceError | None = None  # set when the source could not provide this item

    def read(self) -> bytes:
        if self.error is not None:
            raise self.error
        if isinstance(self.data, bytes):
            return self.data
        try:
            return self.data.read_bytes()
        except FileNotFoundError:
            raise SourceError("missing_file", f"file {self.data} does not exist") from None
        except OSError as e:
            raise SourceError("unreadable_file", f"file {self.data} could not be read ({e})") from None


def _failed(id: str, code: str, message: str) -> Item:
    return Item(id=id, data=b"", error=SourceError(code, message))


# ---------------------------------------------------------------- kind detection


def _is_tar(path: Path) -> bool:
    return path.name.endswith((".tar", ".tar.gz", ".tgz"))


def _resolve(spec: str | os.PathLike) -> tuple[str, list[Path]]:
    """spec -> (kind, paths). Raises for a spec that names nothing readable."""
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        shards = [p for p in files if _is_tar(p)]
        if shards:
            return "shards", shards
        parquet = [p for p in files if p.suffix.lower() == ".parquet"]
        if parquet and not any(_is_candidate(p.name) for p in files):
            return "parquet", parquet
        return "folder", [path]
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return "csv", [path]
        if suffix == ".jsonl":
            return "jsonl", [path]
        if _is_tar(path):
            return "shards", [path]
        if suffix == ".parquet":
            return "parquet", [path]
        return "file", [path]  # a single image: tried like any other
    if _GLOB_CHARS & set(str(spec)):
        matches = [Path(m) for m in sorted(glob.glob(str(spec), recursive=True))]
        if not matches:
            raise FileNotFoundError(f"the pattern {spec!r} matches no file")
        return "glob", matches
    raise FileNotFoundError(
        f"{spec}: no such file or directory; expected a folder of images, a .csv or .jsonl list, "
        "a WebDataset .tar shard, a folder of shards, or a glob such as 'shards/*.tar'"
    )


def iter_source(spec: str | os.PathLike) -> Iterator[Item]:
    """Items of a source, in a deterministic order (sorted paths, file order within lists).

    Validates eagerly: a missing source or a CSV without a `path` column raises here, not on
    the first `next()`.
    """
    kind, paths = _resolve(spec)
    if kind == "csv":
        _csv_header(paths[0])
    return _iter(kind, paths)


def _iter(kind: str, paths: list[Path]) -> Iterator[Item]:
    if kind == "folder":
        yield from _iter_folder(paths[0])
    elif kind == "csv":
        yield from _iter_csv(paths[0])
    elif kind == "jsonl":
        yield from _iter_jsonl(paths[0])
    elif kind == "shards":
        for shard in paths:
            yield from _iter_tar(shard)
    elif kind == "parquet":
        for file in paths:
            yield from _iter_parquet(file)
    elif kind == "file":
        yield Item(id=str(paths[0]), data=paths[0])
    else:  # glob: every match by its own kind
        for match in paths:
            yield from iter_source(match)


def count_source(spec: str | os.PathLike) -> int | None:
    """How many items `iter_source(spec)` yields, when that is cheap to know; else None.

    For progress bars only. Tar shards return None: counting them means reading them.
    """
    kind, paths = _resolve(spec)
    if kind == "folder":
        return sum(1 for _ in _folder_images(paths[0]))
    if kind == "file":
        return 1
    if kind == "csv":
        with open(paths[0], newline="", encoding="utf-8-sig") as f:
            return max(0, sum(1 for row in csv.reader(f) if row) - 1)  # minus the header
    if kind == "jsonl":
        with open(paths[0], encoding="utf-8") as f:
            return sum(1 for line in f if line.strip())
    if kind == "parquet":
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
    if kind == "glob":
        counts = [count_source(p) for p in paths]
        return None if None in counts else sum(counts)
    return None


# ---------------------------------------------------------------- units


@dataclass(frozen=True)
class Unit:
    """A piece of a source read on its own: a whole file ("tar", "parquet") or listed "items"."""

    kind: str
    path: str | None = None
    items: tuple[Item, ...] = ()

    def describe(self) -> str:
        return f"{self.kind}:{self.path}" if self.path else "items:" + "\x1f".join(i.id for i in self.items)


def split_source(spec: str | os.PathLike, unit_size: int = 1024) -> list[Unit]:
    """The source's units in reading order (see the module docstring); validates like iter_source."""
    if unit_size < 1:
        raise ValueError(f"unit_size must be >= 1, got {unit_size}")
    kind, paths = _resolve(spec)
    if kind == "csv":
        _csv_header(paths[0])
    if kind == "shards":
        return [Unit("tar", str(p)) for p in paths]
    if kind == "parquet":
        return [Unit("parquet", str(p)) for p in paths]
    if kind == "glob":
        units: list[Unit] = []
        for match in paths:
            for unit in split_source(match, unit_size):
                last = units[-1] if units else None
                if unit.kind == "items" and last is not None and last.kind == "items" and len(last.items) < unit_size:
                    units[-1] = Unit("items", items=last.items + unit.items)  # a glob of images: one unit per unit_size
                else:
                    units.append(unit)
        return [piece for unit in units for piece in _resplit(unit, unit_size)]
    items = _iter(kind, paths)
    return [Unit("items", items=tuple(chunk)) for chunk in iter(lambda: tuple(itertools.islice(items, unit_size)), ())]


def _resplit(unit: Unit, unit_size: int) -> list[Unit]:
    if unit.kind != "items" or len(unit.items) <= unit_size:
        return [unit]
    return [Unit("items", items=unit.items[i : i + unit_size]) for i in range(0, len(unit.items), unit_size)]


def iter_unit(unit: Unit) -> Iterator[Item]:
    if unit.kind == "tar":
        yield from _iter_tar(Path(unit.path))
    elif unit.kind == "parquet":
        yield from _iter_parquet(Path(unit.path))
    else:
        yield from unit.items


def fingerprint(units: list[Unit]) -> str:
    """A short hash of what the units hold: resuming a job over a changed source is refused."""
    h = hashlib.sha256()
    for unit in units:
        h.update(unit.describe().encode() + b"\x1e")
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- folders


def _is_candidate(name: str) -> bool:
    """Hidden files and sidecars are skipped; everything else is meant to be an image.

    Unknown extensions are tried rather than skipped, so a file the user expected to be
    indexed (say `.heic`) is reported as a failure instead of silently missing.
    """
    return not name.startswith(".") and os.path.splitext(name)[1].lower() not in _NOT_IMAGES


def _folder_images(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # sorted: stable order
        for name in sorted(filenames):
            if _is_candidate(name):
                yield Path(dirpath) / name


def _iter_folder(root: Path) -> Iterator[Item]:
    for path in _folder_images(root):
        id = path.relative_to(root).as_posix()
        caption, metadata, error = None, {}, None
        txt, meta = path.with_suffix(".txt"), path.with_suffix(".json")
        try:
            if txt.is_file():
                caption = txt.read_text(encoding="utf-8").strip()
            if meta.is_file():
                metadata = json.loads(meta.read_text(encoding="utf-8"))
                if not isinstance(metadata, dict):
                    raise ValueError("expected a JSON object")
        except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            error = SourceError("bad_metadata", f"sidecar of {path} could not be read ({e})")
        yield Item(id=id, data=path, caption=caption, metadata=metadata, error=error)


# ---------------------------------------------------------------- CSV / JSONL lists


_PATH_KEYS, _CAPTION_KEYS = ("path", "image"), ("caption", "text")


def _first_key(keys: Container[str], wanted: tuple[str, ...]) -> str | None:
    return next((k for k in wanted if k in keys), None)


def _csv_header(file: Path) -> list[str]:
    try:
        with open(file, newline="", encoding="utf-8-sig") as f:  # -sig: Excel writes a BOM
            header = next(csv.reader(f), [])
    except UnicodeDecodeError:
        raise ValueError(f"{file}: not UTF-8 text; save the CSV as UTF-8") from None
    header = [h.strip() for h in header]
    if _first_key(header, _PATH_KEYS) is None:
        raise ValueError(
            f"{file}: line 1 must be a header with a 'path' column (found {header}); expected a header "
            "like 'path,caption' (optional 'id', other columns become metadata), paths relative to the CSV"
        )
    return header


def _list_item(file: Path, where: str, path: str, caption, id, metadata: dict) -> Item:
    """One CSV row or JSONL object -> Item; paths are relative to the list's own folder."""
    if not isinstance(path, str) or not path.strip():
        return _failed(where, "bad_row", f"{where}: empty or non-string image path")
    path = path.strip()
    id = str(id) if id not in (None, "") else path
    if _URL.match(path):
        return _failed(id, "url_not_supported", f"{where}: {path} is a URL; download it first (e.g. with img2dataset)")
    if caption is not None and not isinstance(caption, str):
        return _failed(id, "bad_row", f"{where}: caption must be a string, got {type(caption).__name__}")
    return Item(id=id, data=file.parent / path, caption=caption, metadata=metadata)


def _iter_csv(file: Path) -> Iterator[Item]:
    header = _csv_header(file)
    path_key, caption_key = _first_key(header, _PATH_KEYS), _first_key(header, _CAPTION_KEYS)
    reserved = {path_key, caption_key, "id"}
    with open(file, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        next(reader)
        try:
            for row in reader:
                where = f"{file}:{reader.line_num}"
                if not row:
                    continue
                if len(row) != len(header):
                    yield _failed(where, "bad_row", f"{where}: {len(row)} fields, the header has {len(header)}")
                    continue
                rec = dict(zip(header, row))
                metadata = {k: v for k, v in rec.items() if k not in reserved}
                yield _list_item(file, where, rec[path_key], rec.get(caption_key), rec.get("id"), metadata)
        except UnicodeDecodeError:
            raise ValueError(f"{file}: not UTF-8 text after line {reader.line_num}; save it as UTF-8") from None


def _iter_jsonl(file: Path) -> Iterator[Item]:
    with open(file, encoding="utf-8") as f:
        try:
            for lineno, line in enumerate(f, 1):
                where = f"{file}:{lineno}"
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    yield _failed(where, "bad_row", f"{where}: not valid JSON ({e})")
                    continue
                path_key = _first_key(rec, _PATH_KEYS) if isinstance(rec, dict) else None
                if path_key is None:
                    yield _failed(where, "bad_row", f'{where}: expected an object like {{"path": ..., "caption": ...}}')
                    continue
                caption_key = _first_key(rec, _CAPTION_KEYS)
                metadata = {k: v for k, v in rec.items() if k not in {path_key, caption_key, "id"}}
                yield _list_item(file, where, rec[path_key], rec.get(caption_key), rec.get("id"), metadata)
        except UnicodeDecodeError:
            raise ValueError(f"{file}: not UTF-8 text; save it as UTF-8") from None


# ---------------------------------------------------------------- WebDataset shards


def _split_key(name: str) -> tuple[str, str]:
    """'dir/000012.jpg' -> ('dir/000012', 'jpg'): key = name up to the basename's first dot.

    The WebDataset convention (webdataset `base_plus_ext`), so 'x.seg.png' belongs to key 'x'.
    """
    head, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{head}/{stem}" if head else stem), ext.lower()


def _sample(shard: Path, key: str, members: dict[str, bytes]) -> Item:
    """The members of one key -> Item (first image extension in TAR_IMAGE_EXTENSIONS wins)."""
    image = next((members[e] for e in TAR_IMAGE_EXTENSIONS if e in members), None)
    if image is None:
        return _failed(key, "missing_image", f"{shard}: sample {key} has no image member ({sorted(members)})")
    metadata, caption = {}, None
    try:
        if "json" in members:
            metadata = json.loads(members["json"])
            if not isinstance(metadata, dict):
                raise ValueError("expected a JSON object")
        if "txt" in members:
            caption = members["txt"].decode("utf-8").strip()
        elif isinstance(metadata.get("caption"), str):
            caption = metadata["caption"]  # img2dataset also stores the caption in the JSON
    except ValueError as e:
        return _failed(key, "bad_metadata", f"{shard}: sample {key} has unreadable metadata ({e})")
    return Item(id=key, data=image, caption=caption, metadata=metadata)


def _iter_tar(shard: Path) -> Iterator[Item]:
    """Samples of one shard, read as a stream (shards can be GBs; gz works too).

    Members of a sample must be consecutive, as img2dataset and `tar --sort=name` write them.
    A truncated or corrupt shard yields what it could read plus one failed item for the rest.
    """
    key, members, n = None, {}, 0
    try:
        with tarfile.open(shard, "r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                k, ext = _split_key(member.name)
                if k != key and key is not None:
                    yield _sample(shard, key, members)
                    n += 1
                    members = {}
                key = k
                members[ext] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:  # zlib.error: corrupt .tar.gz
        members = {}  # the sample being read may be incomplete: drop it, report the shard
        yield _failed(f"{shard.name}:{key}" if key else shard.name, "unreadable_member",
                      f"{shard}: unreadable after {n} samples ({type(e).__name__}: {e}); rest of the shard skipped")
    if members:
        yield _sample(shard, key, members)


# ---------------------------------------------------------------- Parquet


def _parquet_image(file: Path, where: str, value) -> bytes | Path | SourceError:
    """An image cell: bytes, a path string (relative to the file), or a {"bytes", "path"} struct."""
    if isinstance(value, dict):  # Hugging Face datasets' Image feature
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str) and value.strip():
        if _URL.match(value):
            return SourceError("url_not_supported", f"{where}: {value} is a URL; download it first")
        return file.parent / value.strip()
    return SourceError("bad_row", f"{where}: no image bytes or path in this row")


def _iter_parquet(file: Path) -> Iterator[Item]:
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(file)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
        yield _failed(file.name, "unreadable_file", f"{file}: not a readable Parquet file ({e})")
        return
    names = reader.schema_arrow.names
    image_key = _first_key(names, ("image", "path", "jpg", "png"))
    if image_key is None:
        raise ValueError(f"{file}: no image column; expected 'image' (bytes) or 'path' (file paths), found {names}")
    caption_key = _first_key(names, _CAPTION_KEYS)
    row = 0
    for batch in reader.iter_batches(batch_size=256):
        for rec in batch.to_pylist():
            where = f"{file}:{row}"
            row += 1
            id = str(rec["id"]) if rec.get("id") not in (None, "") else where
            data = _parquet_image(file, where, rec[image_key])
            if isinstance(data, SourceError):
                yield Item(id=id, data=b"", error=data)
                continue
            caption = rec.get(caption_key) if caption_key else None
            reserved = {image_key, caption_key, "id"}
            metadata = {k: v for k, v in rec.items() if k not in reserved and _json_value(v)}
            yield Item(id=id, data=data, caption=caption if isinstance(caption, str) else None, metadata=metadata)


def _json_value(value) -> bool:
    """Metadata keeps what JSON can hold (bytes columns and the like are dropped)."""
    try:
        json.dumps(value, allow_nan=False)
        return True
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------- decoding


def decode_items(
    items: Iterable[Item], max_pixels: int = DEFAULT_MAX_PIXELS, stats: DecodeStats | None = None
) -> Iterator[tuple[Item, Image.Image]]:
    """(item, RGB image) for every item that decodes; every failure is counted and skipped.

    Never raises for an item: missing files, corrupt or truncated images, bombs, bad rows and
    unreadable tar members all land in `stats` (code + "id: message"), so one bad file in a
    million cannot stop an indexing job. Pass `stats` to see them; they are also logged.
    """
    stats = stats if stats is not None else DecodeStats()
    logged = 0
    for item in items:
        try:
            img = decode_image(item.read(), max_pixels=max_pixels)
        except Exception as e:  # noqa: BLE001 - by contract nothing an item does is fatal
            stats.add_failure(item.id, e)
            if logged < _LOGGED_FAILURES:
                logged += 1
                log.warning("skipped %s: %s", item.id, e)
            continue
        stats.ok += 1
        yield item, img
