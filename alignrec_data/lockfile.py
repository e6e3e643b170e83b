"""The lock file beside the raw data: ``<raw>/alignrec.lock.json``.

It pins every raw file of a dataset: the URL it came from, its size, sha256, where that hash
came from (``trust``) and when it was recorded. Hashes the registry does not know are recorded
on the first download (trust on first use, ``trust: "first-use"``) and every later use checks
the file against them. The file is rewritten atomically and only when an entry changes, so a
repeated ``download`` that only verifies leaves it byte-for-byte unchanged (DVC sees no change).

Layout::

    {
      "version": 1,
      "dataset": "amazon-mini",
      "files": {
        "reviews_Mini_5.json.gz": {
          "role": "reviews", "url": "file:///.../reviews_Mini_5.json.gz",
          "size": 12345, "sha256": "...", "trust": "first-use",
          "when": "2025-01-01T00:00:00Z"
        }
      }
    }
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from alignrec_data.atomic import write_json
from alignrec_data.errors import DataFormatError

LOCK_NAME = "alignrec.lock.json"
LOCK_VERSION = 1


@dataclass(frozen=True)
class LockEntry:
    """What the lock file pins for one raw file.

    Attributes:
        role: The file's role in its dataset.
        url: The URL it was fetched from (a mirror URL when a mirror was used).
        size: Size in bytes.
        sha256: Lower-case hex sha256.
        trust: ``"registry"`` (hash from the registry) or ``"first-use"`` (recorded on the
            first download, not known beforehand).
        when: UTC time the entry was recorded, ISO 8601.
    """

    role: str
    url: str
    size: int
    sha256: str
    trust: str
    when: str


def utc_now() -> str:
    """The current UTC time as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class LockFile:
    """Thread-safe view of one dataset's lock file.

    Args:
        raw_dir: The dataset's raw folder; the lock file is ``raw_dir/alignrec.lock.json``.
        dataset: The dataset id stored in the file.
    """

    def __init__(self, raw_dir: Path, dataset: str) -> None:
        self.path = Path(raw_dir) / LOCK_NAME
        self.dataset = dataset
        self._lock = threading.Lock()
        self._entries: dict[str, LockEntry] = self._read()

    def _read(self) -> dict[str, LockEntry]:
        if not self.path.is_file():
            return {}
        try:
            files = json.loads(self.path.read_text(encoding="utf-8"))["files"]
            return {name: LockEntry(**entry) for name, entry in files.items()}
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
            msg = (
                f"lock file {self.path} is not a valid alignrec lock file ({err}); "
                "restore it from version control, or delete it to re-record the hashes "
                "on the next download (trust on first use)"
            )
            raise DataFormatError(msg) from err

    def get(self, name: str) -> LockEntry | None:
        """The entry for file ``name`` (its name in the raw folder), or None."""
        with self._lock:
            return self._entries.get(name)

    def record(self, name: str, entry: LockEntry) -> None:
        """Store ``entry`` for ``name`` and rewrite the file if anything changed.

        An unchanged entry keeps its first ``when``: the caller passes it again
        (:func:`alignrec_data.download.download_dataset`).
        """
        with self._lock:
            if self._entries.get(name) == entry:
                return
            self._entries[name] = entry
            files = {k: asdict(v) for k, v in sorted(self._entries.items())}
            write_json(
                self.path, {"version": LOCK_VERSION, "dataset": self.dataset, "files": files}
            )
