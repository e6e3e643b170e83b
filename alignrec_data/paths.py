"""Where each dataset lives on disk: ``<data-dir>/<dataset>/{raw,prepared,...}``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from alignrec_data.errors import UsageError

DATA_DIR_ENV = "ALIGNREC_DATA_DIR"
DEFAULT_DATA_DIR = "data"

# A dataset id, feature variant or run name becomes one path component under the data dir:
# letters, digits, '.', '_', '+', '-'; no separator, no leading dot, no '..'.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def check_name(value: object, what: str) -> str:
    """Return ``value`` if it is safe as one path component under the data dir.

    Every dataset id, feature variant and run name goes through this one check before it
    names a file, so no command can read or write outside ``<data-dir>/<dataset>/``.

    Args:
        value: The name given by the user or a params file.
        what: What it names, for the message (``"dataset"``, ``"feature variant"``, ...).

    Returns:
        ``value``, unchanged.

    Raises:
        UsageError: The name is empty, too long, has a path separator, '..' or other
            characters.
    """
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value) or ".." in value:
        msg = (
            f"{what} {value!r} is not a valid name: use 1-128 letters, digits, '.', '_', '+' "
            "or '-', starting with a letter or digit (no '/', '\\' or '..')"
        )
        raise UsageError(msg)
    return value


def _folder(name: str, doc: str) -> property:
    """A read-only property: the folder ``name`` under the dataset's root."""
    return property(lambda self: self.root / name, doc=doc)


@dataclass(frozen=True)
class DatasetPaths:
    """The folders of one dataset under a data directory.

    Attributes:
        root: ``<data-dir>/<dataset>``.
    """

    root: Path

    @classmethod
    def of(cls, data_dir: str | Path, dataset: str) -> DatasetPaths:
        """Paths for ``dataset`` under ``data_dir`` (the id is checked by :func:`check_name`)."""
        return cls(Path(data_dir) / check_name(dataset, "dataset"))

    @property
    def name(self) -> str:
        """The dataset id (the folder name)."""
        return self.root.name

    raw = _folder("raw", "Downloaded raw files and their lock file.")
    prepared = _folder("prepared", "``{interactions,items,users}.parquet`` and ``stats.json``.")
    images = _folder("images", "Packed image shards and their index.")
    features = _folder("features", "One ``<variant>.parquet`` per feature set.")
    models = _folder("models", "Checkpoints (encoder, recommenders).")
    metrics = _folder("metrics", "Metrics JSON files.")
    release = _folder("release", "The Hugging Face dataset folder.")

    def feature_file(self, variant: str) -> Path:
        """``features/<variant>.parquet`` (the variant is checked by :func:`check_name`)."""
        return self.features / f"{check_name(variant, 'feature variant')}.parquet"
