"""The one shard writer of a release: tables or row streams -> ``<config>/<split>-*.parquet``.

Shards hold at most ``max_bytes`` of data (uncompressed Arrow bytes for a table, the caller's
row sizes for a stream) and are named ``<split>-<i:05d>-of-<n:05d>.parquet``; every written
shard is returned as a :class:`~alignrec_data.release_layout.ShardInfo` (rows, bytes, sha256).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from alignrec_data.integrity import sha256_file
from alignrec_data.release_layout import ShardInfo, shard_name

MAX_ROW_GROUP = 100_000  # rows per parquet row group of a table shard


@dataclass(frozen=True)
class ShardWriter:
    """Writes the shards of every config under ``root`` (the staging release folder).

    Attributes:
        root: The release folder being built.
        max_bytes: Largest shard, in bytes of data.
        compression: Parquet codec (``zstd``, ``snappy``, ``gzip`` or ``none``).
    """

    root: Path
    max_bytes: int
    compression: str

    def write_table(self, table: pa.Table, config: str, split: str) -> list[ShardInfo]:
        """Write ``table`` as equal-row shards ``config/<split>-0000i-of-0000n.parquet``."""
        n_rows = table.num_rows
        n = min(max(1, math.ceil(table.nbytes / self.max_bytes)), max(1, n_rows))
        per = math.ceil(n_rows / n)
        folder = self._folder(config)
        shards = []
        for i in range(n):
            part = table.slice(i * per, per) if n_rows else table
            path = folder / shard_name(split, i, n)
            self._write(part, path, row_group_size=min(max(part.num_rows, 1), MAX_ROW_GROUP))
            shards.append(self._info(config, path, part.num_rows))
        return shards

    def write_stream(
        self,
        rows: Iterable[tuple[dict[str, Any], int]],
        schema: pa.Schema,
        config: str,
        split: str,
    ) -> list[ShardInfo]:
        """Write ``(row, size)`` pairs in order, starting a shard once ``max_bytes`` is reached.

        Memory stays bounded by one shard: each is written as ``.part-<i>.parquet`` and
        renamed once the number of shards is known. An empty stream gives one empty shard.
        """
        folder = self._folder(config)
        parts: list[tuple[Path, int]] = []
        batch: list[dict[str, Any]] = []
        size = 0
        for row, row_size in rows:
            batch.append(row)
            size += row_size
            if size >= self.max_bytes:
                parts.append(self._write_part(folder, len(parts), batch, schema))
                batch, size = [], 0
        if batch or not parts:
            parts.append(self._write_part(folder, len(parts), batch, schema))
        shards = []
        for i, (part, n_rows) in enumerate(parts):
            path = folder / shard_name(split, i, len(parts))
            os.replace(part, path)
            shards.append(self._info(config, path, n_rows))
        return shards

    def _folder(self, config: str) -> Path:
        folder = self.root / config
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _write_part(
        self, folder: Path, i: int, rows: list[dict[str, Any]], schema: pa.Schema
    ) -> tuple[Path, int]:
        part = folder / f".part-{i:05d}.parquet"
        self._write(pa.Table.from_pylist(rows, schema=schema), part)
        return part, len(rows)

    def _write(self, table: pa.Table, path: Path, row_group_size: int | None = None) -> None:
        # Streamed shards keep pyarrow's default row groups (row_group_size None).
        codec = None if self.compression == "none" else self.compression
        pq.write_table(table, path, compression=codec, row_group_size=row_group_size)

    def _info(self, config: str, path: Path, rows: int) -> ShardInfo:
        return ShardInfo(f"{config}/{path.name}", rows, path.stat().st_size, sha256_file(path))
