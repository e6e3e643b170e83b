"""Integrity checks of downloaded bytes: sha256 and gzip, of a file or of a stream in a thread.

:class:`StreamVerifier` hashes (and, for ``.gz`` files, decompresses to check CRC32 and
length) the bytes a download writes, in a second thread, while the first one keeps reading
the network: ``hashlib`` and ``zlib`` release the GIL on large buffers, so on two cores the
check costs almost no wall time instead of a second pass over the file. A resumed download
hashes the prefix already on disk in the same thread first; a file found already downloaded
is checked the same way (all of it a prefix, nothing streamed after it).
"""

from __future__ import annotations

import hashlib
import queue
import threading
import zlib
from pathlib import Path

_GZIP_MAGIC = b"\x1f\x8b"
_INFLATE_STEP = 1 << 22  # max decompressed bytes per zlib call (bounds memory)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file (read in chunks by :func:`hashlib.file_digest`)."""
    with Path(path).open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class GzipStreamCheck:
    """Incremental gzip validation with the rules of :mod:`gzip` (an empty file is no gzip file).

    Multi-member files are accepted, as is zero padding after or between members (wherever a
    chunk ends); zlib checks each member's CRC32 and length (``wbits=31``). Decompressed bytes
    are discarded.
    """

    def __init__(self) -> None:
        self._d: zlib._Decompress | None = zlib.decompressobj(31)
        self.members = 0

    def feed(self, data: bytes) -> None:
        """Check the next bytes of the stream.

        Raises:
            zlib.error: Corrupt data, bad CRC or length.
            ValueError: Bytes after a member that are neither padding nor another member.
        """
        while data:
            if self._d is None:
                stripped = data.lstrip(b"\x00")
                if not stripped:
                    return
                if not stripped.startswith(_GZIP_MAGIC[: len(stripped)]):
                    msg = "trailing garbage after the last gzip member"
                    raise ValueError(msg)
                self._d, data = zlib.decompressobj(31), stripped
            d = self._d
            d.decompress(data, _INFLATE_STEP)
            while d.unconsumed_tail and not d.eof:
                d.decompress(d.unconsumed_tail, _INFLATE_STEP)
            if not d.eof:
                return
            self.members += 1
            data = d.unused_data
            self._d = None

    def close(self) -> None:
        """Raise when the stream ended inside a member (a truncated file)."""
        if self._d is not None:
            msg = "compressed data ended before the end-of-stream marker (truncated)"
            raise EOFError(msg)


class StreamVerifier:
    """sha256 (and optionally gzip) of a byte stream, computed in a background thread.

    Args:
        prefix: A file whose first ``prefix_len`` bytes come before the streamed bytes (a
            resumed part file, or a whole file with nothing streamed), or None.
        prefix_len: Number of bytes of ``prefix`` to hash first.
        gzip_check: Also validate the bytes as a gzip file.
    """

    def __init__(
        self, prefix: Path | None = None, prefix_len: int = 0, *, gzip_check: bool = False
    ) -> None:
        self._sha = hashlib.sha256()
        self._gz = GzipStreamCheck() if gzip_check else None
        # At most 16 chunks wait: feed() blocks then (bounds memory).
        self._q: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(prefix, prefix_len), name="alignrec-verify", daemon=True
        )
        self.count = prefix_len  # bytes covered so far, prefix included
        self._thread.start()

    def _update(self, data: bytes) -> None:
        self._sha.update(data)
        if self._gz is not None and self._error is None:
            try:
                self._gz.feed(data)
            except (zlib.error, ValueError) as err:
                self._error = err

    def _run(self, prefix: Path | None, prefix_len: int) -> None:
        if prefix is not None and prefix_len:
            left = prefix_len
            with prefix.open("rb") as f:
                while left and (block := f.read(min(left, 1 << 22))):
                    self._update(block)
                    left -= len(block)
            if left:
                self._error = EOFError(f"{prefix} is shorter than {prefix_len} bytes")
        while (item := self._q.get()) is not None:
            self._update(item)

    def feed(self, data: bytes) -> None:
        """Queue the next written bytes for checking."""
        self.count += len(data)
        self._q.put(data)

    def result(self) -> tuple[str, str | None]:
        """Wait for the thread; return (sha256 hex, gzip problem or None)."""
        self._q.put(None)
        self._thread.join()
        problem = None if self._error is None else str(self._error)
        if self._gz is not None and problem is None:
            try:
                self._gz.close()
            except EOFError as err:
                problem = str(err)
        return self._sha.hexdigest(), problem

    def abandon(self) -> None:
        """Stop the thread without a result (the stream is being restarted or failed)."""
        self._q.put(None)
        self._thread.join()
