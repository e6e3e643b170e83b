"""What one raw file's download must give and what it gave.

:class:`Expected` is a file's size and sha256 and where they come from (the registry, the lock
file, or nothing: trust on first use; :func:`expected_for`); :class:`FileResult` is the
outcome of its job (:class:`alignrec_data.download_job.FileJob`), one per file of
:func:`alignrec_data.download.download_dataset`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from alignrec_data.errors import AlignrecError
from alignrec_data.lockfile import LOCK_NAME, LockEntry
from alignrec_data.registry import FileSpec

# Logged as the download stage (the logger name users see on stderr).
log = logging.getLogger("alignrec_data.download")


@dataclass(frozen=True)
class FileResult:
    """What happened to one file.

    Attributes:
        role: The file's role (reviews, meta, ratings).
        path: Its final path in the raw folder.
        url: The URL it was (or would have been) fetched from.
        status: ``"fetched"``, ``"resumed"`` (completed from a partial file), ``"verified"``
            (already present and verified, nothing fetched), ``"missing"`` (an optional file the
            server or mirror does not have: HTTP 404/410 or no such local file; not an error)
            or ``"failed"``.
        bytes: File size (0 when failed).
        sha256: Its sha256 (None when failed).
        trust: Where the expected hash came from: ``"registry"``, ``"lock"`` (recorded by an
            earlier download) or ``"first-use"`` (unknown before; recorded now).
        transferred: Bytes received in this run.
        error: The error message when failed or missing.
        exception: The error itself when failed (not serialised).
    """

    role: str
    path: Path
    url: str
    status: str
    bytes: int = 0
    sha256: str | None = None
    trust: str = "first-use"
    transferred: int = 0
    error: str | None = None
    exception: AlignrecError | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (without the exception object)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "exception"}
        return {**out, "path": str(self.path)}


@dataclass
class Expected:
    """What a file must be: its size and sha256 (when known) and where that comes from."""

    size: int | None
    sha256: str | None
    trust: str

    @property
    def source(self) -> str:
        """Where the expectation comes from, for messages."""
        return {"registry": "from the registry", "lock": f"recorded in {LOCK_NAME}"}.get(
            self.trust, "registry size"
        )

    def matches(self, size: int, sha256: str) -> bool:
        """Whether a file of ``size`` bytes and this ``sha256`` is what is expected."""
        return (self.size is None or size == self.size) and self.sha256 in (None, sha256)


def expected_for(f: FileSpec, entry: LockEntry | None, name: str) -> Expected:
    """The expectation for file ``f``: the registry's hash, else the lock file's, else none."""
    if f.sha256 is not None:
        if entry is not None and entry.sha256 != f.sha256:
            log.warning(
                "%s: the lock file's sha256 differs from the registry; using the registry's", name
            )
        return Expected(f.size, f.sha256, "registry")
    if entry is not None:
        return Expected(entry.size, entry.sha256, "lock")
    return Expected(f.size, None, "first-use")
