"""The Hugging Face dataset release: ``<data-dir>/<dataset>/release/`` (no loading script).

:func:`build_release` turns one dataset's prepared tables, feature files, metrics and (with
``images: true``) packed images into a folder that *is* a Hugging Face dataset repository:

- ``items/train-00000-of-00001.parquet``: ``item_id``, ``item_key`` (raw asin / parent_asin),
  ``title``, ``text``, ``image_url`` and ``has_image``.
- ``interactions/{train,validation,test}-0000i-of-0000n.parquet``: ``user_id``, ``item_id``,
  ``user_key``, ``item_key``, ``rating``, ``timestamp`` (the ``valid`` split of the prepared
  table is published as ``validation``, the Hugging Face name).
- ``features-<variant>/train-...parquet`` for every feature set: ``item_id``, ``item_key``,
  ``embedding`` (``List(Value("float32"), length=d)``), ``missing``; row i = item i.
- ``images/train-...parquet`` (optional): ``item_id``, ``item_key``, ``image`` (a
  ``datasets.Image`` struct with the encoded bytes), ``width``, ``height``, ``sha256``, ``url``.
- ``README.md``: the dataset card (:mod:`alignrec_data.card`) whose YAML front matter lists
  every config and its shards, so ``datasets.load_dataset(folder_or_repo, "<config>")`` works.
- ``alignrec_release.json``: the manifest (rows, bytes and sha256 of every shard, feature
  dimensions), which :mod:`alignrec_data.loaders` and :mod:`alignrec_data.publish` use to
  detect missing or corrupt shards. It is also the release's marker: a folder without it is
  not a release (the loaders and ``publish`` refuse it, ``release --out`` will not replace it
  without ``overwrite``).
- ``figures/``: the PNGs the pipeline report references, when ``report/report.md`` exists.

Shards hold at most ``shard_size_mb`` MB of (uncompressed) Arrow data and are named
``<config>/<split>-<i:05d>-of-<n:05d>.parquet``. The output is deterministic: rebuilding
from the same inputs gives byte-identical files, so a second ``publish`` commits nothing.

Safety: ``out`` is checked first (:func:`alignrec_data.outputs.check_output_dir`): never the
data dir, a dataset's folder or a stage folder; a non-empty folder without the manifest only
with ``overwrite``. Every input (prepared tables, feature files: ids, keys, finite values) is
read and checked before the first byte is written. The folder is then built next to ``out``
(``.<out>.tmp-<pid>-*``, :func:`alignrec_data.atomic.atomic_dir`) and swapped in at the end,
so a failed build leaves the old release untouched, and a build killed mid-way leaves a
temporary that the next build removes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alignrec_data.atomic import atomic_dir
from alignrec_data.config import load_params, load_section, to_dict
from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.outputs import check_output_dir, protected_folders
from alignrec_data.paths import DatasetPaths
from alignrec_data.schema import INTERACTIONS_FILE, ITEMS_FILE, STATS_FILE

log = logging.getLogger(__name__)

MANIFEST_NAME = "alignrec_release.json"
MANIFEST_FORMAT = "alignrec-release"
MANIFEST_VERSION = 1
CARD_NAME = "README.md"
FEATURES_PREFIX = "features-"
# Prepared split name -> published split name (Hugging Face calls it "validation").
SPLIT_NAMES = {"train": "train", "valid": "validation", "test": "test"}
CHECKPOINT_NAME = "mmenc.pt"
# Params sections that describe how the released data and features were made (hashed for the card).
PROVENANCE_SECTIONS = ("download", "prepare", "images", "pretrain", "extract", "train", "evaluate")

_SHARD_NAME = re.compile(r"^(?P<split>[a-z]+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.parquet$")
_VARIANT = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class ReleaseConfig:
    """The ``release:`` section of ``params.yaml``.

    Attributes:
        shard_size_mb: Largest shard, in MB of uncompressed Arrow data (Hub guidance: a few
            hundred MB at most).
        features: Feature variants to release; empty = every ``features/<variant>.parquet``.
        images: Also release the ``images`` config (packed image bytes; large).
        compression: Parquet codec of the shards (``zstd``, ``snappy``, ``gzip`` or ``none``).
        repo_id: Hub repo id used in the card's loading examples; empty = ``ORG/NAME``.
    """

    shard_size_mb: float = 500  # largest shard, MB of uncompressed Arrow data
    features: tuple[str, ...] = ()  # variants to release; () = all found in features/
    images: bool = False  # add the large `images` config (packed bytes)
    compression: str = "zstd"  # parquet codec of the shards
    repo_id: str = ""  # repo id in the card's load_dataset lines ("" = ORG/NAME)

    def __post_init__(self) -> None:
        if not self.shard_size_mb > 0:
            msg = f"release.shard_size_mb must be positive, found {self.shard_size_mb}"
            raise UsageError(msg)
        if self.compression not in ("zstd", "snappy", "gzip", "none"):
            msg = (
                f"release.compression must be one of zstd, snappy, gzip, none; "
                f"found {self.compression!r}"
            )
            raise UsageError(msg)
        for v in self.features:
            if not _VARIANT.match(v):
                msg = f"release.features: {v!r} is not a valid variant name (a-z, 0-9, ._-)"
                raise UsageError(msg)


def load_config(params_path: str | Path | None) -> ReleaseConfig:
    """Load the ``release:`` section (defaults without a params file)."""
    return load_section(params_path, "release", ReleaseConfig)


@dataclass(frozen=True)
class ShardInfo:
    """One parquet shard of a config split (path relative to the release folder)."""

    path: str
    rows: int
    bytes: int
    sha256: str


@dataclass
class ConfigInfo:
    """One config of the release.

    Attributes:
        name: Config name (``items``, ``interactions``, ``features-<variant>``, ``images``).
        kind: ``items``, ``interactions``, ``features`` or ``images``.
        splits: Split name -> its shards.
        columns: Column names.
        dim: Embedding length (feature configs only).
        variant: Feature variant (feature configs only).
        extra: Card details (feature provenance, missing counts).
    """

    name: str
    kind: str
    splits: dict[str, list[ShardInfo]]
    columns: list[str]
    dim: int | None = None
    variant: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def rows(self, split: str | None = None) -> int:
        """Rows of one split, or of all splits."""
        splits = [split] if split else list(self.splits)
        return sum(s.rows for sp in splits for s in self.splits[sp])

    def to_manifest(self) -> dict[str, Any]:
        """The manifest entry of this config."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "columns": self.columns,
            "splits": {
                sp: {
                    "rows": sum(s.rows for s in shards),
                    "shards": [
                        {"path": s.path, "rows": s.rows, "bytes": s.bytes, "sha256": s.sha256}
                        for s in shards
                    ],
                }
                for sp, shards in self.splits.items()
            },
        }
        if self.dim is not None:
            out["dim"] = self.dim
        if self.variant is not None:
            out["variant"] = self.variant
        return out


@dataclass(frozen=True)
class ReleaseResult:
    """What :func:`build_release` wrote.

    Attributes:
        out: The release folder.
        configs: Config name -> {split: rows}.
        variants: Released feature variants.
        files: Number of files in the folder.
        total_bytes: Size of the folder in bytes.
        notes: Things the card says are missing (no features, no metrics...).
    """

    out: Path
    configs: dict[str, dict[str, int]]
    variants: list[str]
    files: int
    total_bytes: int
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for ``--format json``)."""
        return {
            "out": str(self.out),
            "configs": self.configs,
            "variants": self.variants,
            "files": self.files,
            "total_bytes": self.total_bytes,
            "notes": self.notes,
        }


# ----------------------------------------------------------------------------- helpers


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_manifest(folder: str | Path, label: str | None = None) -> dict[str, Any]:
    """Read and check the manifest ``alignrec_release.json`` of a release folder.

    The manifest is what makes a release verifiable (every shard's rows, bytes and sha256):
    a folder without it is refused, since its shards could have been changed unseen.

    Args:
        folder: The release folder.
        label: How to name the release in messages (default: the folder).

    Returns:
        The manifest, with every config's splits and shards checked for shape.

    Raises:
        DataFormatError: The manifest is missing, not JSON, or not in the documented layout.
    """
    folder = Path(folder)
    label = label or str(folder)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        msg = (
            f"release {label} has no {MANIFEST_NAME} (the manifest listing every shard's size "
            "and sha256), so its files cannot be verified; rebuild it with "
            "`alignrec-data release DATASET --out FOLDER` (add --overwrite to rebuild it in place)"
        )
        raise DataFormatError(msg)
    fix = "rebuild the release with `alignrec-data release`"
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        msg = f"release {label}: {MANIFEST_NAME} is not readable JSON ({err}); {fix}"
        raise DataFormatError(msg) from err

    def bad(what: str) -> DataFormatError:
        return DataFormatError(f"release {label}: {MANIFEST_NAME} {what}; {fix}")

    if not isinstance(doc, dict) or not isinstance(doc.get("configs"), dict):
        raise bad("has no `configs` mapping")
    for name, config in doc["configs"].items():
        splits = config.get("splits") if isinstance(config, dict) else None
        if not isinstance(splits, dict) or not splits:
            raise bad(f"config {name!r} has no `splits` mapping")
        for split, entry in splits.items():
            shards = entry.get("shards") if isinstance(entry, dict) else None
            if not isinstance(shards, list) or not shards or not isinstance(entry.get("rows"), int):
                raise bad(f"config {name!r} split {split!r} has no `rows` and `shards` list")
            for shard in shards:
                ok = (
                    isinstance(shard, dict)
                    and isinstance(shard.get("path"), str)
                    and isinstance(shard.get("bytes"), int)
                    and isinstance(shard.get("sha256"), str)
                    and re.fullmatch(r"[0-9a-f]{64}", shard["sha256"]) is not None
                )
                if not ok:
                    raise bad(
                        f"config {name!r} split {split!r} lists a shard without path, bytes "
                        f"and sha256: {str(shard)[:80]}"
                    )
                parts = shard["path"].split("/")
                if shard["path"].startswith("/") or any(p in ("", ".", "..") for p in parts):
                    raise bad(f"lists shard path {shard['path']!r}, not a safe relative path")
    return doc


def params_hash(sections: dict[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces) of some params sections."""
    text = json.dumps(sections, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def code_version() -> dict[str, str | None]:
    """The package version and, when the package lives in a git checkout, its commit."""
    from alignrec_data import __version__

    commit = None
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if res.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", res.stdout.strip()):
            commit = res.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"version": __version__, "git_commit": commit}


def shard_name(split: str, i: int, n: int) -> str:
    """``<split>-<i:05d>-of-<n:05d>.parquet``."""
    return f"{split}-{i:05d}-of-{n:05d}.parquet"


def _write_shards(
    table: pa.Table,
    root: Path,
    config: str,
    split: str,
    max_bytes: int,
    compression: str,
) -> list[ShardInfo]:
    """Write ``table`` as ``root/config/<split>-0000i-of-0000n.parquet`` shards."""
    n_rows = table.num_rows
    n = max(1, math.ceil(table.nbytes / max_bytes)) if n_rows else 1
    n = min(n, max(1, n_rows))
    per = math.ceil(n_rows / n) if n_rows else 0
    folder = root / config
    folder.mkdir(parents=True, exist_ok=True)
    shards = []
    for i in range(n):
        part = table.slice(i * per, per) if n_rows else table
        path = folder / shard_name(split, i, n)
        pq.write_table(
            part,
            path,
            compression=None if compression == "none" else compression,
            row_group_size=max(1, min(max(part.num_rows, 1), 100_000)),
        )
        shards.append(
            ShardInfo(
                path=f"{config}/{path.name}",
                rows=part.num_rows,
                bytes=path.stat().st_size,
                sha256=sha256_file(path),
            )
        )
    return shards


def _read_table(path: Path, what: str, fix: str) -> pa.Table:
    if not path.is_file():
        msg = f"{what} {path} does not exist; {fix}"
        raise UsageError(msg)
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        msg = f"{what} {path} is not a readable parquet file ({err}); {fix}"
        raise DataFormatError(msg) from err


def _require(table: pa.Table, cols: tuple[str, ...], path: Path) -> None:
    missing = [c for c in cols if c not in table.column_names]
    if missing:
        msg = (
            f"{path}: missing column(s) {', '.join(missing)} "
            f"(found {', '.join(table.column_names)}); "
            "re-run `alignrec-data prepare` to rewrite it in the current layout"
        )
        raise DataFormatError(msg)


def _items_table(items: pa.Table, fetched: dict[int, str] | None) -> pa.Table:
    """The published ``items`` table (see module docstring)."""
    n = items.num_rows
    urls = items.column("image_urls").to_pylist() if "image_urls" in items.column_names else None
    image_url: list[str | None] = [(u[0] if u else None) for u in urls] if urls else [None] * n
    has_image = (
        items.column("has_image").to_pylist()
        if "has_image" in items.column_names
        else [u is not None for u in image_url]
    )
    if fetched is not None:  # the images stage ran: the URL that served, and whether one did
        image_url = [fetched.get(i, image_url[i]) for i in range(n)]
        has_image = [i in fetched for i in range(n)]

    def text_col(name: str) -> pa.Array:
        if name in items.column_names:
            return items.column(name).combine_chunks().cast(pa.string())
        return pa.nulls(n, pa.string())

    return pa.table(
        {
            "item_id": items.column("item_id").cast(pa.int64()),
            "item_key": items.column("item_key").cast(pa.string()),
            "title": text_col("title"),
            "text": text_col("text"),
            "image_url": pa.array(image_url, pa.string()),
            "has_image": pa.array(has_image, pa.bool_()),
        }
    )


def _image_index(images_dir: Path) -> pa.Table | None:
    """The images stage's ``index.parquet`` (authoritative), or None when it did not run."""
    from alignrec_data.images.store import INDEX_FILE

    path = images_dir / INDEX_FILE
    return pq.read_table(path) if path.is_file() else None


def _fetched_images(images_dir: Path) -> dict[int, str | None] | None:
    """item_id -> URL that served, for items with a stored image (None: no images stage)."""
    index = _image_index(images_dir)
    if index is None:
        return None
    rows = index.select(["item_id", "has_image", "url"]).to_pylist()
    return {int(r["item_id"]): r["url"] for r in rows if r["has_image"]}


IMAGE_FEATURES = {
    "item_id": {"dtype": "int64", "_type": "Value"},
    "item_key": {"dtype": "string", "_type": "Value"},
    "image": {"_type": "Image"},
    "width": {"dtype": "int32", "_type": "Value"},
    "height": {"dtype": "int32", "_type": "Value"},
    "sha256": {"dtype": "string", "_type": "Value"},
    "url": {"dtype": "string", "_type": "Value"},
}


def _write_image_shards(
    images_dir: Path, root: Path, max_bytes: int, compression: str
) -> list[ShardInfo] | None:
    """Stream the stored images into ``root/images/train-*.parquet`` (storage order).

    The image column is a ``datasets.Image`` struct (``bytes``, ``path``), declared in the
    schema's ``huggingface`` metadata so ``load_dataset`` decodes it. Memory stays bounded by
    one shard. Returns None when the images stage did not run.
    """
    from alignrec_data.images.store import iter_image_bytes

    index = _image_index(images_dir)
    if index is None:
        return None
    meta = {int(r["item_id"]): r for r in index.to_pylist() if r["has_image"]}
    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    schema = pa.schema(
        [
            ("item_id", pa.int64()),
            ("item_key", pa.string()),
            ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("sha256", pa.string()),
            ("url", pa.string()),
        ],
        metadata={b"huggingface": json.dumps({"info": {"features": IMAGE_FEATURES}}).encode()},
    )
    parts: list[tuple[Path, int]] = []
    rows: list[dict[str, Any]] = []
    size = 0

    def flush() -> None:
        nonlocal rows, size
        if not rows and parts:
            return
        part = folder / f".part-{len(parts):05d}.parquet"
        table = pa.Table.from_pylist(rows, schema=schema)
        pq.write_table(table, part, compression=None if compression == "none" else compression)
        parts.append((part, len(rows)))
        rows, size = [], 0

    for item_id, data in iter_image_bytes(images_dir):
        m = meta[item_id]
        rows.append(
            {
                "item_id": item_id,
                "item_key": m["item_key"],
                "image": {"bytes": data, "path": None},
                "width": m["width"],
                "height": m["height"],
                "sha256": m["sha256"],
                "url": m["url"],
            }
        )
        size += len(data)
        if size >= max_bytes:
            flush()
    if rows or not parts:
        flush()
    shards = []
    for i, (part, n_rows) in enumerate(parts):
        path = folder / shard_name("train", i, len(parts))
        os.replace(part, path)
        shards.append(
            ShardInfo(f"images/{path.name}", n_rows, path.stat().st_size, sha256_file(path))
        )
    return shards


def _feature_meta(schema: pa.Schema) -> dict[str, Any]:
    """Provenance a producer stored in the feature file's schema metadata (JSON values)."""
    out: dict[str, Any] = {}
    for k, v in (schema.metadata or {}).items():
        key = k.decode("utf-8", "replace")
        if key in ("huggingface", "pandas", "ARROW:schema"):
            continue
        text = v.decode("utf-8", "replace")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def _features_table(path: Path, variant: str, item_keys: list[str]) -> tuple[pa.Table, int]:
    """Read and check ``features/<variant>.parquet``; return the published table and dim."""
    table = _read_table(path, f"feature file of {variant!r}", "re-run `alignrec-data extract`")
    _require(table, ("item_id", "embedding"), path)
    emb = table.column("embedding").combine_chunks()
    if not pa.types.is_fixed_size_list(emb.type) or emb.type.value_type != pa.float32():
        msg = (
            f"feature file {path}: embedding must be a fixed-size list of float32, found "
            f"{emb.type}; re-run `alignrec-data extract` (features.write_features writes it)"
        )
        raise DataFormatError(msg)
    if emb.null_count or emb.values.null_count:
        msg = (
            f"feature file {path} of variant {variant!r}: {emb.null_count + emb.values.null_count} "
            "null embedding value(s); re-run `alignrec-data extract`"
        )
        raise DataFormatError(msg)
    values = emb.flatten().to_numpy(zero_copy_only=False).reshape(-1, emb.type.list_size)
    bad_rows = ~np.isfinite(values).all(axis=1)
    if bad_rows.any():
        n_bad = int(np.count_nonzero(~np.isfinite(values)))
        msg = (
            f"feature file {path} of variant {variant!r}: {n_bad} non-finite (NaN or infinite) "
            f"value(s) in {int(bad_rows.sum())} of {len(values)} items (first: item "
            f"{int(np.argmax(bad_rows))}); nothing was written. Re-run `alignrec-data extract`, "
            "or leave the variant out with --features"
        )
        raise DataFormatError(msg)
    ids = table.column("item_id").to_numpy()
    if not np.array_equal(ids, np.arange(len(item_keys))):
        msg = (
            f"feature file {path}: expected item_id 0..{len(item_keys) - 1} in order "
            f"({len(item_keys)} items in prepared/items.parquet), found {len(ids)} rows"
        )
        raise DataFormatError(msg)
    keys = (
        table.column("item_key").to_pylist()
        if "item_key" in table.column_names
        else list(item_keys)
    )
    if keys != list(item_keys):
        bad = next(i for i, (a, b) in enumerate(zip(keys, item_keys, strict=True)) if a != b)
        msg = (
            f"feature file {path}: item {bad} has key {keys[bad]!r} but prepared/items.parquet "
            f"says {item_keys[bad]!r}; the features were extracted from another prepare run: "
            "re-run `alignrec-data extract`"
        )
        raise DataFormatError(msg)
    missing = (
        table.column("missing").combine_chunks().cast(pa.bool_())
        if "missing" in table.column_names
        else pa.array(np.zeros(len(ids), dtype=bool))
    )
    out = pa.table(
        {
            "item_id": pa.array(ids.astype(np.int64)),
            "item_key": pa.array(keys, pa.string()),
            "embedding": emb,
            "missing": missing,
        }
    )
    return out, emb.type.list_size


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        log.warning("ignore %s: not readable JSON (%s)", path, err)
        return None


def _read_lock(raw_dir: Path) -> dict[str, dict[str, Any]]:
    """Raw files pinned by ``raw/alignrec.lock.json`` (read defensively; {} when absent)."""
    from alignrec_data.lockfile import LOCK_NAME

    doc = _read_json(raw_dir / LOCK_NAME) if (raw_dir / LOCK_NAME).is_file() else None
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict):
        return {}
    out = {}
    for name, entry in sorted(files.items()):
        if isinstance(entry, dict):
            out[str(name)] = {
                k: entry.get(k) for k in ("role", "url", "size", "sha256", "trust") if k in entry
            }
    return out


def _metrics(metrics_dir: Path) -> dict[str, Any]:
    """All ``metrics/*.json`` files by stem."""
    if not metrics_dir.is_dir():
        return {}
    out = {}
    for p in sorted(metrics_dir.glob("*.json")):
        doc = _read_json(p)
        if doc is not None:
            out[p.stem] = doc
    return out


_FIGURE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)")


def _report(report_dir: Path, out: Path) -> str | None:
    """The pipeline report with its local figures copied to ``out/figures`` (links rewritten)."""
    path = report_dir / "report.md"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    root = report_dir.resolve()

    def copy(m: re.Match[str]) -> str:
        src = m.group("src")
        if re.match(r"^[a-z]+://", src) or src.startswith("/"):
            return m.group(0)
        fig = (report_dir / src).resolve()
        inside = root in fig.parents
        if not inside or fig.suffix.lower() not in (".png", ".jpg", ".jpeg", ".svg"):
            log.warning("report figure %s is outside %s or not an image: not copied", src, root)
            return f"*(figure `{src}` not included)*"
        if not fig.is_file():
            log.warning("report figure %s does not exist: not copied", fig)
            return f"*(figure `{src}` not included)*"
        rel = fig.relative_to(root).as_posix().replace("/", "_")
        (out / "figures").mkdir(exist_ok=True)
        shutil.copyfile(fig, out / "figures" / rel)
        return f"![{m.group('alt')}](figures/{rel})"

    return _FIGURE.sub(copy, text)


def _spec(dataset: str) -> Any:
    """The registry entry, or None for imported datasets the registry does not know."""
    from alignrec_data.registry import get_dataset

    try:
        return get_dataset(dataset)
    except UsageError:
        return None


def _folder_stats(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


# ----------------------------------------------------------------------------- build


def build_release(
    data_dir: str | Path,
    dataset: str,
    out: str | Path | None = None,
    config: ReleaseConfig | None = None,
    *,
    params_path: str | Path | None = None,
    overwrite: bool = False,
) -> ReleaseResult:
    """Build the Hugging Face dataset folder of one dataset (see module docstring).

    Args:
        data_dir: The data directory (``<data-dir>/<dataset>/...``).
        dataset: Dataset id (the folder name; need not be in the registry).
        out: The release folder; default ``<data-dir>/<dataset>/release``. Replaced as a whole
            when it is a previous release (holds :data:`MANIFEST_NAME`) or empty.
        config: The ``release:`` params; default :class:`ReleaseConfig()`.
        params_path: The params file, read for the card's provenance (model config, seeds,
            params hash of the sections in :data:`PROVENANCE_SECTIONS`).
        overwrite: Replace ``out`` even when it is a non-empty folder that is not a release.
            The data dir, dataset folders and their stage folders are refused regardless.

    Returns:
        What was written.

    Raises:
        UsageError: ``out`` may not be written (see above), prepared tables or requested
            feature variants are missing.
        DataFormatError: An input does not have the documented layout, feature rows do not
            match the prepared items, or an embedding holds NaN / infinite values.
    """
    from alignrec_data import card

    config = config or ReleaseConfig()
    paths = DatasetPaths.of(data_dir, dataset)
    out = check_output_dir(
        out if out is not None else paths.release,
        marker=MANIFEST_NAME,
        what="release folder",
        overwrite=overwrite,
        protected=protected_folders(data_dir, allow=[paths.release]),
    )
    fix = f"run `alignrec-data prepare {dataset}` (or `alignrec-data import`) first"
    inter_path = paths.prepared / INTERACTIONS_FILE
    items_path = paths.prepared / ITEMS_FILE
    inter = _read_table(inter_path, "prepared interactions", fix)
    items = _read_table(items_path, "prepared items", fix)
    _require(inter, ("user_id", "item_id", "split"), inter_path)
    _require(items, ("item_id", "item_key"), items_path)
    items = items.sort_by("item_id")
    n_items = items.num_rows
    if not np.array_equal(items.column("item_id").to_numpy(), np.arange(n_items)):
        msg = f"{items_path}: item_id must be 0..N-1 (contiguous); re-run prepare"
        raise DataFormatError(msg)
    item_ids = inter.column("item_id").to_numpy()
    if len(item_ids) and (item_ids.min() < 0 or item_ids.max() >= n_items):
        msg = f"{inter_path}: item_id outside 0..{n_items - 1} of {items_path}; re-run prepare"
        raise DataFormatError(msg)
    item_keys = items.column("item_key").to_pylist()
    stats = (
        _read_json(paths.prepared / STATS_FILE) if (paths.prepared / STATS_FILE).is_file() else None
    )

    # Which feature variants.
    found = (
        sorted(p.stem for p in paths.features.glob("*.parquet") if not p.name.startswith("."))
        if paths.features.is_dir()
        else []
    )
    variants = list(config.features) or found
    absent = [v for v in variants if v not in found]
    if absent:
        have = ", ".join(found) or "none"
        msg = (
            f"feature variant(s) {', '.join(absent)} requested by release.features have no file "
            f"in {paths.features} (found: {have}); run `alignrec-data extract` or change "
            "release.features"
        )
        raise UsageError(msg)

    # Every feature file is read and checked (ids, keys, finite values) before writing begins.
    feature_tables = {
        v: _features_table(paths.features / f"{v}.parquet", v, item_keys) for v in variants
    }

    # The published interactions (casts and split names checked before writing).
    cols = ["user_id", "item_id", "user_key", "item_key", "rating", "timestamp"]
    n = inter.num_rows
    pub = pa.table(
        {
            "user_id": inter.column("user_id").cast(pa.int64()),
            "item_id": inter.column("item_id").cast(pa.int64()),
            "user_key": inter.column("user_key").cast(pa.string())
            if "user_key" in inter.column_names
            else pa.nulls(n, pa.string()),
            "item_key": inter.column("item_key").cast(pa.string())
            if "item_key" in inter.column_names
            else pa.array([item_keys[i] for i in item_ids], pa.string()),
            "rating": inter.column("rating").cast(pa.float32())
            if "rating" in inter.column_names
            else pa.nulls(n, pa.float32()),
            "timestamp": inter.column("timestamp").cast(pa.int64())
            if "timestamp" in inter.column_names
            else pa.nulls(n, pa.int64()),
        }
    )
    split_col = inter.column("split").to_numpy(zero_copy_only=False)
    unknown = sorted(set(split_col) - set(SPLIT_NAMES))
    if unknown:
        msg = f"{inter_path}: unknown split value(s) {unknown}; expected train, valid, test"
        raise DataFormatError(msg)

    max_bytes = max(1, int(config.shard_size_mb * 1024 * 1024))
    notes: list[str] = []
    with atomic_dir(out) as staging:
        configs: list[ConfigInfo] = []
        fetched = _fetched_images(paths.images)
        items_pub = _items_table(items, fetched)
        configs.append(
            ConfigInfo(
                "items",
                "items",
                {
                    "train": _write_shards(
                        items_pub, staging, "items", "train", max_bytes, config.compression
                    )
                },
                items_pub.column_names,
            )
        )

        splits = {}
        for src, dst in SPLIT_NAMES.items():
            part = pub.filter(pa.array(split_col == src))
            splits[dst] = _write_shards(
                part, staging, "interactions", dst, max_bytes, config.compression
            )
        configs.append(ConfigInfo("interactions", "interactions", splits, cols))

        ckpt = paths.models / CHECKPOINT_NAME
        ckpt_sha = sha256_file(ckpt) if ckpt.is_file() else None
        for v in variants:
            path = paths.features / f"{v}.parquet"
            table, dim = feature_tables.pop(v)
            name = FEATURES_PREFIX + v
            missing = int(np.count_nonzero(table.column("missing").to_numpy(zero_copy_only=False)))
            extra = {
                "missing": missing,
                "file_meta": _feature_meta(pq.read_schema(path)),
                "checkpoint_sha256": ckpt_sha if card.uses_encoder(v) else None,
            }
            shards = _write_shards(table, staging, name, "train", max_bytes, config.compression)
            configs.append(
                ConfigInfo(name, "features", {"train": shards}, table.column_names, dim, v, extra)
            )
        if not variants:
            notes.append(f"no feature files in {paths.features}: the release has no features")

        if config.images:
            shards = _write_image_shards(paths.images, staging, max_bytes, config.compression)
            if shards is None:
                notes.append(
                    f"release.images is true but {paths.images} has no index.parquet "
                    f"(run `alignrec-data images {dataset}`): no images config"
                )
            else:
                configs.append(
                    ConfigInfo("images", "images", {"train": shards}, list(IMAGE_FEATURES))
                )

        params = load_params(params_path)
        sections = {s: params[s] for s in PROVENANCE_SECTIONS if s in params}
        context = card.CardContext(
            dataset=dataset,
            spec=_spec(dataset),
            configs=configs,
            n_users=int(inter.column("user_id").to_numpy().max()) + 1 if n else 0,
            n_items=n_items,
            stats=stats if isinstance(stats, dict) else None,
            raw_files=_read_lock(paths.raw),
            metrics=_metrics(paths.metrics),
            report=_report(paths.root / "report", staging),
            params_sections=sections,
            params_hash=params_hash(sections),
            release_config=to_dict(config),
            code=code_version(),
            checkpoint_sha256=ckpt_sha,
            notes=notes,
        )
        (staging / CARD_NAME).write_text(card.render_card(context), encoding="utf-8")
        manifest = {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "dataset": dataset,
            "code": context.code,
            "params_hash": context.params_hash,
            "configs": {c.name: c.to_manifest() for c in configs},
        }
        # The manifest is written last: a folder holding it is a complete release.
        (staging / MANIFEST_NAME).write_text(
            json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    n_files, total = _folder_stats(out)
    for note in notes:
        log.warning("%s", note)
    log.info("release of %s written to %s (%d files, %d bytes)", dataset, out, n_files, total)
    return ReleaseResult(
        out=out,
        configs={c.name: {sp: c.rows(sp) for sp in c.splits} for c in configs},
        variants=variants,
        files=n_files,
        total_bytes=total,
        notes=notes,
    )
