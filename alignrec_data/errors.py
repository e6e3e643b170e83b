"""Error types shared by the library and the CLI.

Every error a user can fix is an :class:`AlignrecError`; its message names the object (file,
URL, value), what was expected, what was found and the fix. The CLI prints ``Error: <message>``
and exits with :attr:`AlignrecError.exit_code`.
"""

from __future__ import annotations


class AlignrecError(Exception):
    """A failure the user can act on (bad data, failed download, missing input).

    Attributes:
        exit_code: Process exit code the CLI uses for this error.
        hint: Optional next step shown under the message by the CLI.
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class UsageError(AlignrecError):
    """Bad usage: unknown dataset id, invalid parameter, missing input file (exit code 2)."""

    exit_code = 2


class DownloadError(AlignrecError):
    """A file could not be fetched or did not verify."""


class ChecksumError(DownloadError):
    """Downloaded bytes do not match the expected sha256 or size."""


class DataFormatError(AlignrecError):
    """A raw or prepared file does not have the expected format."""
