"""The layout of a release folder: names, shard and config records, the manifest.

A release holds ``<config>/<split>-<i:05d>-of-<n:05d>.parquet`` shards, the card
:data:`CARD_NAME` and the manifest :data:`MANIFEST_NAME` (rows, bytes and sha256 of every
shard, feature dimensions, code version, params hash). This module is what the writers
(:mod:`alignrec_data.release_configs`), the loaders and ``publish`` agree on.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alignrec_data.errors import DataFormatError

MANIFEST_NAME = "alignrec_release.json"
MANIFEST_FORMAT = "alignrec-release"
MANIFEST_VERSION = 1
CARD_NAME = "README.md"
FEATURES_PREFIX = "features-"
# Prepared split name -> published split name (Hugging Face calls it "validation").
SPLIT_NAMES = {"train": "train", "valid": "validation", "test": "test"}


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
        splits: Split name -> its shards (before writing: its table or row stream).
        columns: Column names.
        dim: Embedding length (feature configs only).
        variant: Feature variant (feature configs only).
        extra: Card details (feature provenance, missing counts).
    """

    name: str
    kind: str
    splits: dict[str, Any]  # list[ShardInfo] once written
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
                sp: {"rows": self.rows(sp), "shards": [asdict(s) for s in shards]}
                for sp, shards in self.splits.items()
            },
        }
        optional = {
            "dim": self.dim,
            "variant": self.variant,
            "modality": self.extra.get("modality") or None,  # image | text | joint (feature_info)
        }
        return out | {k: v for k, v in optional.items() if v is not None}


def manifest_text(
    dataset: str, code: dict[str, Any], params_hash: str, configs: list[ConfigInfo]
) -> str:
    """The manifest's JSON text (sorted keys, 2-space indent, final newline)."""
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "dataset": dataset,
        "code": code,
        "params_hash": params_hash,
        "configs": {c.name: c.to_manifest() for c in configs},
    }
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


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
                    msg = (
                        f"config {name!r} split {split!r} lists a shard without path, bytes "
                        f"and sha256: {str(shard)[:80]}"
                    )
                    raise bad(msg)
                path = shard["path"]
                if path.startswith("/") or any(p in ("", ".", "..") for p in path.split("/")):
                    msg = f"lists shard path {path!r}, not a safe relative path"
                    raise bad(msg)
    return doc
