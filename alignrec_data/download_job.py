"""One raw file's download: verify what is present, else fetch into ``.part``, resuming.

The job behind :func:`alignrec_data.download.download_dataset` (one thread per file; the steps
are described there): check a present file, stream the bytes into ``.<name>.part`` while
hashing them, resume a cut body with a Range request after the retry policy's back-off
(:class:`alignrec_data.http.RetryPolicy`), then verify size, sha256 and gzip integrity and
rename. Bad bytes are set aside as ``<name>.corrupt-<sha8>``, never given the final name.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import requests
import urllib3.exceptions
from tqdm.auto import tqdm

from alignrec_data.download_result import Expected, FileResult
from alignrec_data.errors import AlignrecError, ChecksumError, DownloadError
from alignrec_data.http import (
    NotThere,
    RangeNotSatisfiable,
    TooSlow,
    Watchdog,
    make_session,
    moved_hint,
    open_stream,
)
from alignrec_data.integrity import StreamVerifier
from alignrec_data.registry import FileSpec

if TYPE_CHECKING:
    from alignrec_data.download import DownloadConfig

# Logged as the download stage (the logger name users see on stderr).
log = logging.getLogger("alignrec_data.download")

PART_SUFFIX = ".part"
CORRUPT_INFIX = ".corrupt-"

# Errors inside a body that has started (the connection was cut or stalled): resumed by the
# loop in FileJob.fetch. Errors before the body are retried by the session (PolicyRetry).
_BODY_ERRORS = (TooSlow, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)


class _Cancelled(Exception):
    """Raised inside a transfer when its call was interrupted (the part file is kept)."""


def set_aside(part: Path, final: Path, sha: str) -> Path:
    """Move bad bytes to ``<final>.corrupt-<sha8>`` (never the final name) and return it."""
    aside = final.with_name(f"{final.name}{CORRUPT_INFIX}{sha[:8]}")
    os.replace(part, aside)
    return aside


def no_space(path: Path, size: int | None) -> DownloadError:
    """The error for a full disk while writing ``path`` (how much it needs, how much is free)."""
    free = shutil.disk_usage(path.parent).free if path.parent.exists() else None
    need = f"{size:,} bytes" if size is not None else "an unknown size"
    have = f"{free:,} bytes free" if free is not None else "free space unknown"
    msg = f"no space left on the device writing {path} (the file needs {need}; {have})"
    hint = (
        "free some space and rerun the same command (the partial file is kept and resumed), "
        "or pass --out DIR on another disk"
    )
    return DownloadError(msg, hint=hint)


@dataclass
class FileJob:
    """Fetch and verify one file (one thread)."""

    f: FileSpec
    url: str
    final: Path
    expected: Expected
    config: DownloadConfig
    progress: bool
    position: int
    cancel: threading.Event  # set when the caller is interrupted: stop at the next chunk
    transferred: int = 0  # bytes received in this run

    def __post_init__(self) -> None:
        self.part = self.final.with_name(f".{self.final.name}{PART_SUFFIX}")
        self._verifier: StreamVerifier | None = None  # checks the bytes as they are written
        self._gzip = self.config.verify_gzip and self.final.name.endswith(".gz")

    # -- phase 1: already present? -------------------------------------------------------
    def check_present(self) -> FileResult | None:
        """Verify a present final file; None when it must be (re)fetched.

        A file that no longer verifies is moved aside; it is then fetched again.
        """
        if not self.final.is_file():
            return None
        exp = self.expected
        size = self.final.stat().st_size
        # Present but never recorded (e.g. copied in by hand): checked as a fetched file is
        # (the same verifier, one pass), then trusted.
        gzip_check = self._gzip and exp.sha256 is None
        sha, problem = StreamVerifier(self.final, size, gzip_check=gzip_check).result()
        if problem is not None or not exp.matches(size, sha):
            aside = set_aside(self.final, self.final, sha)
            log.warning(
                "%s changed on disk (size %d, sha256 %s; expected %s, %s): moved aside to %s, "
                "downloading it again",
                self.final.name,
                size,
                sha,
                exp.size,
                exp.sha256,
                aside.name,
            )
            return None
        if exp.sha256 is None:
            log.info(
                "verify %s: no known hash; recorded %s (trust on first use)", self.final.name, sha
            )
        else:
            log.info("verify %s: sha256 matches (%s)", self.final.name, exp.trust)
        return self._result("verified", bytes=size, sha256=sha, transferred=self.transferred)

    # -- phase 2: fetch into .part, resuming -----------------------------------------------
    def fetch(self) -> FileResult:
        """Fetch into the part file, resuming after cuts, then verify and rename it."""
        cfg, exp = self.config, self.expected
        policy = cfg.retry_policy()
        failures = 0
        bar = tqdm(
            total=exp.size,
            desc=self.final.name,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            disable=not self.progress,
            position=self.position,
            dynamic_ncols=True,
        )
        with bar, make_session(policy) as session:
            while True:
                offset = self.part.stat().st_size if self.part.is_file() else 0
                if exp.size is not None and offset > exp.size:
                    log.warning("%s is larger than %d bytes; restarting", self.part, exp.size)
                    self.part.unlink()
                    offset = 0
                try:
                    with Watchdog(min_speed=cfg.min_speed, window=cfg.speed_window) as dog:
                        resumed = self._transfer(session, offset, bar, dog)
                    if resumed is not None:
                        break
                except _BODY_ERRORS as err:
                    failures += 1
                    if failures > cfg.retries:
                        if isinstance(err, TooSlow):
                            raise self._too_slow(err, failures) from err
                        msg = f"GET {self.url} failed after {failures} attempts: {err}"
                        raise DownloadError(msg, hint=moved_hint(self.final.name)) from err
                    wait = policy.backoff(failures)
                    log.warning(
                        "%s: %s; resuming in %.2f s (attempt %d of %d)",
                        self.final.name,
                        err if isinstance(err, TooSlow) else err.__class__.__name__,
                        wait,
                        failures,
                        cfg.retries,
                    )
                    time.sleep(wait)
            return self._finish("resumed" if resumed else "fetched")

    def _transfer(
        self, session: requests.Session, offset: int, bar: tqdm, dog: Watchdog
    ) -> bool | None:
        """One GET from ``offset`` into the part file: resumed? (None: not complete, try again).

        Bytes received are added to ``self.transferred`` as they arrive. ``dog`` is the
        attempt's watchdog (low-speed rule); a cut inside the body raises :class:`TooSlow`.
        A full disk (``OSError``) ends the job: :meth:`run` reports it.
        """
        cfg, exp = self.config, self.expected
        try:
            stream = open_stream(
                self.url, offset, session=session, timeout=cfg.timeout, chunk_size=cfg.chunk_size
            )
        except requests.RequestException as err:  # urllib3 already retried it
            if dog.cuts:  # no answer in time: the watchdog cut the wait for the headers
                raise self._too_slow(dog.error(), dog.cuts) from err
            msg = f"GET {self.url} failed: {err}"
            raise DownloadError(msg, hint=moved_hint(self.final.name)) from err
        except RangeNotSatisfiable as err:
            if err.total == offset:
                self._verifier_at(offset)
                return True  # the part file already holds the whole file
            log.warning("%s: server refused Range from %d; restarting", self.final.name, offset)
            self.part.unlink(missing_ok=True)
            return None
        try:
            if stream.start == 0 and offset > 0:
                log.warning(
                    "%s: server ignored the Range request; restarting from 0", self.final.name
                )
            limit = exp.size
            if limit is not None and stream.total is not None and stream.total > limit:
                msg = (
                    f"GET {stream.url}: the server announces {stream.total:,} bytes but "
                    f"{self.f.name} has {limit:,} bytes ({exp.source}); refused"
                )
                raise ChecksumError(msg, hint=moved_hint(self.final.name))
            verifier = self._verifier_at(stream.start)
            if bar.total is None and stream.total is not None:
                bar.total = stream.total
            if bar.n != stream.start:
                bar.n = stream.start  # resumed part, or a restart from 0
                bar.refresh()
            with open(self.part, "ab" if stream.start > 0 else "wb") as out:
                for chunk in stream.chunks:
                    if self.cancel.is_set():
                        raise _Cancelled
                    if limit is not None and verifier.count + len(chunk) > limit:
                        # Cut off at the registry size: never store more than that.
                        out.write(chunk[: limit - verifier.count])
                        msg = (
                            f"GET {stream.url}: response is larger than the size of "
                            f"{self.f.name} ({limit:,} bytes, {exp.source}); cut off "
                            "and rejected"
                        )
                        raise ChecksumError(msg, hint=moved_hint(self.final.name))
                    out.write(chunk)
                    verifier.feed(chunk)
                    self.transferred += len(chunk)
                    bar.update(len(chunk))
            return stream.start > 0
        except ChecksumError:
            self.part.unlink(missing_ok=True)
            raise
        finally:
            stream.close()

    def _too_slow(self, err: TooSlow, cuts: int) -> DownloadError:
        """The final error after ``cuts`` attempts cut by the low-speed rule."""
        cfg = self.config
        rate = err.seen / err.span if err.span > 0 else 0.0
        kept = self.part.stat().st_size if self.part.is_file() else 0
        state = (
            f"the {kept:,} bytes received are kept in {self.part} and the next run resumes them"
            if kept
            else "no byte of the body was received"
        )
        msg = (
            f"GET {self.url} is too slow: {err.seen:,} bytes in {err.span:.1f} s "
            f"({rate:,.0f} bytes/s), below download.min_speed = {cfg.min_speed:g} bytes/s over "
            f"download.speed_window = {cfg.speed_window:g} s; cut {cuts} "
            f"time{'s' if cuts != 1 else ''}, {state}; use another mirror (--mirror "
            "URL_OR_PATH or ALIGNREC_MIRROR) or lower download.min_speed in params.yaml "
            "(0 turns the rule off)"
        )
        return DownloadError(msg)

    def _verifier_at(self, start: int) -> StreamVerifier:
        """The verifier for the bytes written from offset ``start``.

        The current one is kept when it covers exactly the bytes before ``start`` (a resume
        within this run); otherwise a new one first re-reads those bytes from the part file.
        """
        if self._verifier is not None and self._verifier.count == start:
            return self._verifier
        if self._verifier is not None:
            self._verifier.abandon()
        self._verifier = StreamVerifier(self.part if start else None, start, gzip_check=self._gzip)
        return self._verifier

    # -- phase 3: verify the part file, then rename ----------------------------------------
    def _finish(self, status: str) -> FileResult:
        exp = self.expected
        size = self.part.stat().st_size
        # The verifier fed while streaming; one behind the part file (not streamed: cannot
        # happen in practice) is replaced by one that re-reads the file on disk.
        verifier, self._verifier = self._verifier_at(size), None
        sha, gzip_problem = verifier.result()
        if not exp.matches(size, sha):
            aside = set_aside(self.part, self.final, sha)
            msg = (
                f"checksum mismatch for {self.url}: expected sha256 {exp.sha256} "
                f"({exp.size if exp.size is not None else 'unknown'} bytes, {exp.source}), "
                f"found sha256 {sha} ({size} bytes); the bad bytes are kept as {aside}"
            )
            hint = (
                "try another --mirror; if the file changed upstream on purpose, delete its "
                f"entry from {self.final.parent / 'alignrec.lock.json'} and download again"
                if exp.trust != "registry"
                else "try another --mirror (ALIGNREC_MIRROR), or report the registry entry"
            )
            raise ChecksumError(msg, hint=hint)
        if gzip_problem is not None:
            aside = set_aside(self.part, self.final, sha)
            msg = (
                f"{self.url}: the downloaded file is not a complete gzip file ({gzip_problem}); "
                f"the bad bytes are kept as {aside}"
            )
            raise DownloadError(msg, hint=moved_hint(self.final.name))
        os.replace(self.part, self.final)
        log.info("%s %s (%d bytes, sha256 %s, %s)", status, self.final.name, size, sha, exp.trust)
        return self._result(status, bytes=size, sha256=sha, transferred=self.transferred)

    def _result(self, status: str, **fields: object) -> FileResult:
        return FileResult(
            self.f.role, self.final, self.url, status, trust=self.expected.trust, **fields
        )

    def run(self) -> FileResult:
        """Verify or fetch the file; errors become a ``failed`` result.

        An optional file (:attr:`FileSpec.optional`) that is not there (HTTP 404 or 410, or no
        such file in a local mirror) becomes a ``missing`` result instead: reported, no error.
        """
        try:
            return self.check_present() or self.fetch()
        except AlignrecError as err:
            if self.f.optional and isinstance(err, NotThere):
                log.warning("%s: optional file not found, skipped (%s)", self.final.name, err)
                return self._result("missing", error=str(err))
            error = err
        except OSError as err:
            error = (
                no_space(self.part, self.expected.size)
                if err.errno == errno.ENOSPC
                else DownloadError(f"{self.url}: {err}", hint=moved_hint(self.final.name))
            )
        finally:
            if self._verifier is not None:  # the fetch failed: stop its verifier thread
                self._verifier.abandon()
                self._verifier = None
        log.error("%s failed: %s", self.final.name, error)
        return self._result("failed", error=str(error), exception=error)
