"""Where each dataset lives on disk: ``<data-dir>/<dataset>/{raw,prepared,...}``."""

from __future__ import annotations

import os
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


def default_data_dir() -> Path:
    """Return ``$ALIGNREC_DATA_DIR`` or ``./data``."""
    return Path(os.environ.get(DATA_DIR_ENV, DEFAULT_DATA_DIR))


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

    @property
    def raw(self) -> Path:
        """Downloaded raw files and their lock file."""
        return self.root / "raw"

    @property
    def prepared(self) -> Path:
        """``interactions.parquet``, ``items.parquet``, ``users.parquet``, ``stats.json``."""
        return self.root / "prepared"

    @property
    def images(self) -> Path:
        """Packed image shards and their index."""
        return self.root / "images"

    @property
    def features(self) -> Path:
        """One ``<variant>.parquet`` per feature set."""
        return self.root / "features"

    @property
    def models(self) -> Path:
        """Checkpoints (encoder, recommenders)."""
        return self.root / "models"

    @property
    def metrics(self) -> Path:
        """Metrics JSON files."""
        return self.root / "metrics"

    @property
    def release(self) -> Path:
        """The Hugging Face dataset folder."""
        return self.root / "release"

    def feature_file(self, variant: str) -> Path:
        """``features/<variant>.parquet`` (the variant is checked by :func:`check_name`)."""
        return self.features / f"{check_name(variant, 'feature variant')}.parquet"
