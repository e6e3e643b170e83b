"""A release to load from: its folder, its manifest and its shards, each verified on read.

Every release must carry its manifest ``alignrec_release.json`` (rows, bytes and sha256 of
every shard, checked by :func:`alignrec_data.release.read_manifest`): a folder without it is
refused, since nothing else says whether its shards are the ones that were released. A
:class:`ReleaseSource` is a local release folder (:func:`local_release`) or a snapshot of a Hub
dataset repo in the Hub cache (:class:`alignrec_data.hub_source.HubRelease`), whose shards are
fetched when first asked for.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.integrity import sha256_file
from alignrec_data.release_layout import (
    CARD_NAME,
    FEATURES_PREFIX,
    MANIFEST_NAME,
    SPLIT_NAMES,
    read_manifest,
)

# A Hub repo id ORG/NAME: each part starts with a letter or digit, at most 96 characters.
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
# Published split name -> MMRec x_label.
X_LABELS = {"train": 0, "validation": 1, "test": 2}


def is_repo_id(source: object) -> bool:
    """Whether ``source`` is spelled as a Hub repo id ``ORG/NAME``."""
    return isinstance(source, str) and bool(_REPO_ID.match(source))


def verify_shard(path: Path, entry: dict[str, Any], label: str, rel: str) -> None:
    """Check a shard's size and sha256 against its manifest entry.

    Raises:
        DataFormatError: The shard is truncated or corrupt (named in the message).
    """
    size = path.stat().st_size
    if size != entry["bytes"]:
        msg = (
            f"release {label}: shard {rel} is corrupt or truncated ({size} bytes, "
            f"{MANIFEST_NAME} says {entry['bytes']}); rebuild or download the release again"
        )
        raise DataFormatError(msg)
    if sha256_file(path) != entry["sha256"]:
        msg = (
            f"release {label}: shard {rel} is corrupt (sha256 differs from {MANIFEST_NAME}); "
            "rebuild or download the release again"
        )
        raise DataFormatError(msg)


def read_shard(path: Path, label: str, rel: str, columns: list[str] | None = None) -> pa.Table:
    """Read a parquet shard (memory-mapped).

    Raises:
        DataFormatError: Not parquet, or a column missing.
    """
    try:
        return pq.read_table(path, columns=columns, memory_map=True)
    except (pa.ArrowInvalid, OSError) as err:
        msg = f"release {label}: shard {rel} is not a readable parquet file ({err})"
        raise DataFormatError(msg) from err
    except (KeyError, ValueError) as err:
        msg = f"release {label}: shard {rel} lacks column(s) {columns} ({err})"
        raise DataFormatError(msg) from err


@dataclass(eq=False)
class ReleaseSource:
    """A release folder on disk (local, or a Hub snapshot in the Hub cache).

    Attributes:
        folder: The folder.
        label: How to name it in messages (the path or ``repo_id@revision``).
        manifest: ``alignrec_release.json``, checked by
            :func:`alignrec_data.release.read_manifest` (a release without one is refused).
        fetch: Callable fetching a relative path for Hub sources (None when local).
    """

    folder: Path
    label: str
    manifest: dict[str, Any]
    fetch: Callable[[str], Path] | None = None

    def require(self, config: str) -> None:
        """Raise a UsageError listing the configs when ``config`` is not one of them."""
        names = list(self.manifest["configs"])
        if config in names:
            return
        variants = [c.removeprefix(FEATURES_PREFIX) for c in names if c.startswith(FEATURES_PREFIX)]
        variant = config.removeprefix(FEATURES_PREFIX)
        what = f"no config {config!r}" if variant == config else f"no feature variant {variant!r}"
        msg = (
            f"release {self.label} has {what}; configs: {', '.join(names) or 'none'}; "
            f"feature variants: {', '.join(variants) or 'none'}"
        )
        raise UsageError(msg)

    def splits(self, config: str) -> list[str]:
        """Split names of a config."""
        self.require(config)
        names = self.manifest["configs"][config]["splits"]
        # train, validation, test first (the x_label order), then the others by name
        return sorted(names, key=lambda s: (X_LABELS.get(s, len(X_LABELS)), s))

    # -- shards --------------------------------------------------------------------------

    def shards(self, config: str, split: str) -> list[tuple[Path, dict[str, Any]]]:
        """The shard files of one split, in order, each with its manifest entry.

        Raises:
            UsageError: Unknown config or split.
            DataFormatError: A shard is missing (named in the message).
        """
        self.require(config)
        splits = self.manifest["configs"][config]["splits"]
        if split not in splits:
            have = ", ".join(splits)
            msg = f"config {config!r} of {self.label} has no split {split!r}; splits: {have}"
            raise UsageError(msg)
        out = []
        for e in splits[split]["shards"]:
            rel = e["path"]  # a safe relative path: checked by read_manifest
            if self.fetch is not None:
                self.fetch(rel)
            path = self.folder / rel
            if not path.is_file():
                msg = (
                    f"release {self.label}: shard {rel} is missing (listed in {MANIFEST_NAME}); "
                    "rebuild the release (`alignrec-data release`) or download it again"
                )
                raise DataFormatError(msg)
            out.append((path, e))
        return out

    def read(self, config: str, split: str, columns: list[str] | None = None) -> pa.Table:
        """Verify every shard of a split against the manifest, then read them as one table.

        Raises:
            UsageError: Unknown config or split.
            DataFormatError: A shard is missing, corrupt or not readable parquet.
        """
        parts = []
        for path, entry in self.shards(config, split):
            rel = f"{config}/{path.name}"
            verify_shard(path, entry, self.label, rel)
            parts.append(read_shard(path, self.label, rel, columns))
        return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


def local_release(path: Path) -> ReleaseSource:
    """Open a local release folder.

    Raises:
        UsageError: The folder has neither a manifest nor a card.
        DataFormatError: The manifest is missing or not valid.
    """
    if not (path / MANIFEST_NAME).is_file() and not (path / CARD_NAME).is_file():
        msg = (
            f"{path} is not a release folder (no {MANIFEST_NAME} and no {CARD_NAME}); "
            "build one with `alignrec-data release DATASET --out FOLDER`"
        )
        raise UsageError(msg)
    return ReleaseSource(path, str(path), read_manifest(path, str(path)))


def prepared_tables(src: ReleaseSource) -> tuple[pa.Table, pa.Table, pa.Table]:
    """``(interactions, items, users)`` of a release in the prepared layout and order."""
    from alignrec_data.prepare import users_table

    # Interactions in the prepared layout (split column with the prepared names).
    back = {v: k for k, v in SPLIT_NAMES.items()}
    parts = []
    for s in src.splits("interactions"):
        t = src.read("interactions", s)
        parts.append(t.append_column("split", pa.array([back.get(s, s)] * t.num_rows, pa.string())))
    inter = pa.concat_tables(parts)
    # Back to the prepared order (user_id, timestamp, item_id; unknown timestamps first).
    ts = inter.column("timestamp").fill_null(np.iinfo(np.int64).min).to_numpy()
    order = np.lexsort((inter.column("item_id").to_numpy(), ts, inter.column("user_id").to_numpy()))
    inter = inter.take(pa.array(order))
    items = src.read("items", "train", ["item_id", "item_key"]).sort_by("item_id")
    uid = inter.column("user_id").to_numpy()
    n_users = int(uid.max()) + 1 if len(uid) else 0
    ukeys = [str(u) for u in range(n_users)]
    for u, k in zip(uid.tolist(), inter.column("user_key").to_pylist(), strict=True):
        if k is not None:
            ukeys[u] = k
    return inter, items, users_table(ukeys, uid)
