"""Where each dataset lives on disk: ``<data-dir>/<dataset>/{raw,prepared,...}``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV = "ALIGNREC_DATA_DIR"
DEFAULT_DATA_DIR = "data"


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
        """Paths for ``dataset`` under ``data_dir``."""
        return cls(Path(data_dir) / dataset)

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
