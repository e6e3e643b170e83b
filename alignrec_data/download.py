"""Verified, resumable downloads of a dataset's raw files into ``<data-dir>/<dataset>/raw``.

For each file of a registry entry (:mod:`alignrec_data.registry`):

1. If the final file is present and its sha256 is known (registry, else lock file), it is
   hashed and reported ``verified``; a file that no longer matches is moved aside as
   ``<name>.corrupt-<sha8>`` and downloaded again.
2. Otherwise the bytes stream into ``.<name>.part`` in the same folder. A
   ``.part`` left by an interrupted run, or a connection cut mid-file, is resumed with an HTTP
   ``Range`` request; a server that ignores the range (answers 200) makes a clean restart.
3. The finished ``.part`` is checked: size (a response longer than the registry size is cut
   off and rejected), sha256 (mismatch: the bytes are kept aside as ``<name>.corrupt-<sha8>``
   and :class:`ChecksumError` names URL, expected and found hash) and, for ``.gz`` files, gzip
   integrity (stream-decompressed to the end). Only then is it renamed to its final name.
4. The lock file (:mod:`alignrec_data.lockfile`) records URL, size, sha256 and when; hashes the
   registry lacks are recorded on the first download (trust on first use) and verified on
   every later use.

Retries of connection errors, 5xx and 429 (with ``Retry-After``) before the body starts are
urllib3's ``Retry``; resuming after a cut inside the body is this module's loop, with the same
capped exponential back-off. Every attempt is bounded in time: ``timeout`` bounds connecting
and each read, and a low-speed rule (``min_speed`` bytes/s over ``speed_window`` seconds, as
curl's ``--speed-limit`` / ``--speed-time``; :class:`alignrec_data.http.Watchdog`) cuts a
server that trickles, which a per-read time-out never does. A cut by that rule is resumed
like a cut connection. Files are fetched in parallel by a bounded thread pool, each with
a tqdm bar on stderr. Nothing here prints or prompts.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import urllib3.exceptions
from tqdm.auto import tqdm

from alignrec_data.atomic import clean_stale
from alignrec_data.errors import AlignrecError, ChecksumError, DownloadError, UsageError
from alignrec_data.http import (
    RangeNotSatisfiable,
    TooSlow,
    Watchdog,
    make_session,
    moved_hint,
    open_stream,
)
from alignrec_data.integrity import StreamVerifier, check_gzip_file, sha256_file
from alignrec_data.lockfile import LOCK_NAME, LockEntry, LockFile, utc_now
from alignrec_data.registry import (
    PACKAGE_SCHEME,
    DatasetSpec,
    FileSpec,
    check_links,
    file_url,
    get_dataset,
    raw_path,
    resolve_base_url,
)

log = logging.getLogger(__name__)

PART_SUFFIX = ".part"
CORRUPT_INFIX = ".corrupt-"

# Errors inside a body that has started (the connection was cut or stalled): resumed by the
# loop in _FileJob.fetch. Errors before the body are urllib3 Retry's job (see alignrec_data.http).
_BODY_ERRORS: tuple[type[BaseException], ...] = (
    TooSlow,
    urllib3.exceptions.HTTPError,
    requests.exceptions.ChunkedEncodingError,
    ConnectionError,
    TimeoutError,
)


class _Cancelled(Exception):
    """Raised inside a transfer when its call was interrupted (the part file is kept)."""


@dataclass(frozen=True)
class DownloadConfig:
    """The ``download`` section of params.yaml.

    Attributes:
        workers: Files fetched in parallel.
        retries: Retries per request (connection errors, 5xx, 429) and resumes per file after
            a cut inside the body.
        backoff_base: First back-off in seconds; doubles on each retry.
        backoff_cap: Longest back-off in seconds.
        retry_after_max: Longest ``Retry-After`` (sent with 429/503) honoured, in seconds.
        timeout: Connect and read timeout in seconds.
        min_speed: Low-speed rule: an attempt that receives fewer than
            ``min_speed * speed_window`` bytes within any ``speed_window`` seconds (waiting for
            the headers included) is cut and resumed like a cut connection; 0 turns it off.
        speed_window: Seconds over which ``min_speed`` is measured.
        chunk_size: Bytes read and written at a time.
        verify_gzip: Decompress ``.gz`` files to the end before accepting them.
    """

    workers: int = 2  # files in parallel
    retries: int = 5  # retries per request, and resumes per file
    backoff_base: float = 1.0  # seconds; 1, 2, 4, ... between retries
    backoff_cap: float = 60.0  # seconds; longest back-off
    retry_after_max: float = 300.0  # seconds; longest Retry-After honoured
    timeout: float = 60.0  # seconds; connect and read timeout
    min_speed: float = 1024.0  # bytes/s; slower for speed_window seconds: cut, resumed (0: off)
    speed_window: float = 60.0  # seconds over which min_speed is measured
    chunk_size: int = 1 << 20  # bytes per read/write (1 MiB)
    verify_gzip: bool = True  # stream-decompress .gz files fully before accepting them

    def __post_init__(self) -> None:
        checks = {
            "workers": self.workers >= 1,
            "retries": self.retries >= 0,
            "backoff_base": self.backoff_base >= 0,
            "backoff_cap": self.backoff_cap >= 0,
            "retry_after_max": self.retry_after_max >= 0,
            "timeout": self.timeout > 0,
            "min_speed": self.min_speed >= 0,
            "speed_window": self.speed_window > 0,
            "chunk_size": self.chunk_size >= 1024,
        }
        for key, ok in checks.items():
            if not ok:
                msg = (
                    f"download.{key} = {getattr(self, key)!r} is out of range "
                    "(workers >= 1, retries/back-offs >= 0, timeout > 0, min_speed >= 0, "
                    "speed_window > 0, chunk_size >= 1024)"
                )
                raise UsageError(msg)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based), capped."""
        return min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))


@dataclass(frozen=True)
class FileResult:
    """What happened to one file.

    Attributes:
        role: The file's role (reviews, meta, ratings).
        path: Its final path in the raw folder.
        url: The URL it was (or would have been) fetched from.
        status: ``"fetched"``, ``"resumed"`` (completed from a partial file), ``"verified"``
            (already present and verified, nothing fetched) or ``"failed"``.
        bytes: File size (0 when failed).
        sha256: Its sha256 (None when failed).
        trust: Where the expected hash came from: ``"registry"``, ``"lock"`` (recorded by an
            earlier download) or ``"first-use"`` (unknown before; recorded now).
        transferred: Bytes received in this run.
        error: The error message when failed.
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
        return {
            "role": self.role,
            "path": str(self.path),
            "url": self.url,
            "status": self.status,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "trust": self.trust,
            "transferred": self.transferred,
            "error": self.error,
        }


def raise_for_failures(results: Sequence[FileResult]) -> None:
    """Raise the error of the first failed file, if any.

    Raises:
        AlignrecError: The first failure (ChecksumError, DownloadError, ...).
    """
    for r in results:
        if r.status == "failed":
            if r.exception is not None:
                raise r.exception
            raise DownloadError(r.error or f"{r.url} failed")


def _set_aside(part: Path, final: Path, sha: str) -> Path:
    """Move bad bytes to ``<final>.corrupt-<sha8>`` (never the final name) and return it."""
    aside = final.with_name(f"{final.name}{CORRUPT_INFIX}{sha[:8]}")
    os.replace(part, aside)
    return aside


def _no_space(err: OSError, path: Path, size: int | None) -> DownloadError:
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
class _Expected:
    size: int | None
    sha256: str | None
    trust: str

    @property
    def source(self) -> str:
        """Where the expectation comes from, for messages."""
        return {"registry": "from the registry", "lock": f"recorded in {LOCK_NAME}"}.get(
            self.trust, "registry size"
        )


class _FileJob:
    """Fetch and verify one file (one thread)."""

    def __init__(
        self,
        f: FileSpec,
        url: str,
        final: Path,
        expected: _Expected,
        config: DownloadConfig,
        progress: bool,
        position: int,
        cancel: threading.Event,
    ) -> None:
        self.f, self.url, self.final, self.expected = f, url, final, expected
        self.cancel = cancel  # set when the caller is interrupted: stop at the next chunk
        self.config, self.progress, self.position = config, progress, position
        self.part = final.with_name(f".{final.name}{PART_SUFFIX}")
        self.transferred = 0
        self._verifier: StreamVerifier | None = None  # checks the bytes as they are written
        self._gzip = config.verify_gzip and final.name.endswith(".gz")

    # -- phase 1: already present? -------------------------------------------------------
    def check_present(self) -> FileResult | None:
        """Verify a present final file; None when it must be (re)fetched."""
        if not self.final.is_file():
            return None
        exp = self.expected
        size = self.final.stat().st_size
        if exp.sha256 is None:
            # Present but never recorded (e.g. copied in by hand): check it, then trust it.
            if self._gzip:
                try:
                    check_gzip_file(self.final, self.url, self.config.chunk_size)
                except DownloadError:
                    return self._mismatch_present(size, sha256_file(self.final))
            if exp.size is not None and size != exp.size:
                return self._mismatch_present(size, sha256_file(self.final))
            sha = sha256_file(self.final)
            log.info(
                "verify %s: no known hash; recorded %s (trust on first use)", self.final.name, sha
            )
            return self._ok("verified", size, sha, 0)
        if exp.size is not None and size != exp.size:
            return self._mismatch_present(size, sha256_file(self.final))
        sha = sha256_file(self.final)
        if sha != exp.sha256:
            return self._mismatch_present(size, sha)
        log.info("verify %s: sha256 matches (%s)", self.final.name, exp.trust)
        return self._ok("verified", size, sha, 0)

    def _mismatch_present(self, size: int, sha: str) -> None:
        """Move a present file that no longer verifies aside; it is then fetched again."""
        aside = _set_aside(self.final, self.final, sha)
        log.warning(
            "%s changed on disk (size %d, sha256 %s; expected %s, %s): moved aside to %s, "
            "downloading it again",
            self.final.name,
            size,
            sha,
            self.expected.size,
            self.expected.sha256,
            aside.name,
        )
        return None

    # -- phase 2: fetch into .part, resuming -----------------------------------------------
    def fetch(self) -> FileResult:
        cfg, exp = self.config, self.expected
        session = make_session(cfg.retries, cfg.backoff_base, cfg.backoff_cap, cfg.retry_after_max)
        resumed = False
        self.transferred = 0
        failures = 0
        bar = tqdm(
            total=exp.size,
            desc=self.final.name,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            disable=not self.progress,
            position=self.position,
            leave=True,
            dynamic_ncols=True,
        )
        try:
            while True:
                offset = self.part.stat().st_size if self.part.is_file() else 0
                if exp.size is not None and offset > exp.size:
                    log.warning("%s is larger than %d bytes; restarting", self.part, exp.size)
                    self.part.unlink()
                    offset = 0
                try:
                    with Watchdog(min_speed=cfg.min_speed, window=cfg.speed_window) as dog:
                        did_resume, complete = self._transfer(session, offset, bar, dog)
                    resumed = resumed or did_resume
                    if complete:
                        break
                except _BODY_ERRORS as err:
                    failures += 1
                    if failures > cfg.retries:
                        if isinstance(err, TooSlow):
                            raise self._too_slow(err, failures) from err
                        msg = f"GET {self.url} failed after {failures} attempts: {err}"
                        raise DownloadError(msg, hint=moved_hint(self.final.name)) from err
                    wait = cfg.backoff(failures)
                    log.warning(
                        "%s: %s; resuming in %.2f s (attempt %d of %d)",
                        self.final.name,
                        err if isinstance(err, TooSlow) else err.__class__.__name__,
                        wait,
                        failures,
                        cfg.retries,
                    )
                    time.sleep(wait)
            return self._finish("resumed" if resumed else "fetched", self.transferred)
        finally:
            bar.close()
            session.close()
            if self._verifier is not None:
                self._verifier.abandon()
                self._verifier = None

    def _transfer(
        self, session: requests.Session, offset: int, bar: tqdm, dog: Watchdog
    ) -> tuple[bool, bool]:
        """One GET from ``offset`` into the part file: (resumed?, complete?).

        Bytes received are added to ``self.transferred`` as they arrive. ``dog`` is the
        attempt's watchdog (low-speed rule); a cut inside the body raises :class:`TooSlow`.
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
            if err.total is not None and err.total == offset:
                self._verifier_at(offset)
                return True, True  # the part file already holds the whole file
            log.warning("%s: server refused Range from %d; restarting", self.final.name, offset)
            self.part.unlink(missing_ok=True)
            return False, False
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
            mode = "ab" if stream.start > 0 else "wb"
            verifier = self._verifier_at(stream.start)
            if bar.total is None and stream.total is not None:
                bar.total = stream.total
            if bar.n != stream.start:
                bar.n = stream.start  # resumed part, or a restart from 0
                bar.refresh()
            written = stream.start
            try:
                with open(self.part, mode) as out:
                    for chunk in stream.chunks:
                        if self.cancel.is_set():
                            raise _Cancelled
                        if limit is not None and written + len(chunk) > limit:
                            # Cut off at the registry size: never store more than that.
                            out.write(chunk[: limit - written])
                            msg = (
                                f"GET {stream.url}: response is larger than the size of "
                                f"{self.f.name} ({limit:,} bytes, {exp.source}); cut off "
                                "and rejected"
                            )
                            raise ChecksumError(msg, hint=moved_hint(self.final.name))
                        out.write(chunk)
                        verifier.feed(chunk)
                        written += len(chunk)
                        self.transferred += len(chunk)
                        bar.update(len(chunk))
            except OSError as err:
                if err.errno == errno.ENOSPC:
                    raise _no_space(err, self.part, exp.size) from err
                raise
            return stream.start > 0, True
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
    def _finish(self, status: str, transferred: int) -> FileResult:
        exp = self.expected
        size = self.part.stat().st_size
        verifier, self._verifier = self._verifier, None
        gzip_problem = None
        if verifier is not None and verifier.count == size:
            sha, gzip_problem = verifier.result()
        else:  # not streamed (cannot happen in practice): check the file on disk
            if verifier is not None:
                verifier.abandon()
            sha = sha256_file(self.part)
            if self._gzip:
                try:
                    check_gzip_file(self.part, self.url, self.config.chunk_size)
                except DownloadError as err:
                    gzip_problem = str(err)
        if (exp.size is not None and size != exp.size) or (
            exp.sha256 is not None and sha != exp.sha256
        ):
            aside = _set_aside(self.part, self.final, sha)
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
            aside = _set_aside(self.part, self.final, sha)
            msg = (
                f"{self.url}: the downloaded file is not a complete gzip file ({gzip_problem}); "
                f"the bad bytes are kept as {aside}"
            )
            raise DownloadError(msg, hint=moved_hint(self.final.name))
        os.replace(self.part, self.final)
        log.info("%s %s (%d bytes, sha256 %s, %s)", status, self.final.name, size, sha, exp.trust)
        return self._ok(status, size, sha, transferred)

    def _ok(self, status: str, size: int, sha: str, transferred: int) -> FileResult:
        return FileResult(
            role=self.f.role,
            path=self.final,
            url=self.url,
            status=status,
            bytes=size,
            sha256=sha,
            trust=self.expected.trust,
            transferred=transferred,
        )

    def run(self) -> FileResult:
        """Verify or fetch the file; errors become a ``failed`` result."""
        try:
            return self.check_present() or self.fetch()
        except AlignrecError as err:
            log.error("%s failed: %s", self.final.name, err)
            return FileResult(
                role=self.f.role,
                path=self.final,
                url=self.url,
                status="failed",
                trust=self.expected.trust,
                error=str(err),
                exception=err,
            )
        except OSError as err:
            wrapped = (
                _no_space(err, self.part, self.expected.size)
                if err.errno == errno.ENOSPC
                else DownloadError(f"{self.url}: {err}", hint=moved_hint(self.final.name))
            )
            log.error("%s failed: %s", self.final.name, wrapped)
            return FileResult(
                role=self.f.role,
                path=self.final,
                url=self.url,
                status="failed",
                trust=self.expected.trust,
                error=str(wrapped),
                exception=wrapped,
            )


def _expected(f: FileSpec, entry: LockEntry | None, name: str) -> _Expected:
    if f.sha256 is not None:
        if entry is not None and entry.sha256 != f.sha256:
            log.warning(
                "%s: the lock file's sha256 differs from the registry; using the registry's", name
            )
        return _Expected(f.size, f.sha256, "registry")
    if entry is not None:
        return _Expected(entry.size, entry.sha256, "lock")
    return _Expected(f.size, None, "first-use")


def _spec(spec_or_id: DatasetSpec | str) -> DatasetSpec:
    return spec_or_id if isinstance(spec_or_id, DatasetSpec) else get_dataset(spec_or_id)


def download_dataset(
    spec_or_id: DatasetSpec | str,
    raw_dir: str | Path,
    *,
    mirror: str | None = None,
    workers: int | None = None,
    config: DownloadConfig | None = None,
    progress: bool = True,
    on_result: Callable[[FileResult], None] | None = None,
) -> list[FileResult]:
    """Download and verify every file of a dataset into ``raw_dir``.

    Args:
        spec_or_id: The registry entry or its id.
        raw_dir: Target folder (created), normally ``<data-dir>/<dataset>/raw``.
        mirror: Base URL or folder replacing the official base URL (else ``$ALIGNREC_MIRROR``).
        workers: Files in parallel (default ``config.workers``).
        config: Retry, timeout and chunk settings (the ``download`` params section).
        progress: Show a tqdm bar per file on stderr.
        on_result: Called with each result as soon as its file is done.

    Returns:
        One result per file, in registry order. Failed files have ``status="failed"`` and
        their error; use :func:`raise_for_failures` to raise it.

    Raises:
        UsageError: Unknown dataset id, unsafe file name, bad mirror or config, or a target
            that is a broken symbolic link (a loop, or a link to nothing).
    """
    spec = _spec(spec_or_id)
    config = config or DownloadConfig()
    workers = workers if workers is not None else config.workers
    if workers < 1:
        msg = f"--workers must be at least 1, found {workers}"
        raise UsageError(msg)
    raw_dir = Path(raw_dir)
    base = resolve_base_url(spec, mirror)
    # Validate every name before touching the disk: an unsafe name fails the whole call.
    named = [(f, file_url(base, f), raw_path(raw_dir, spec, f.role)) for f in spec.files]
    check_links([*(p for _, _, p in named), raw_dir / LOCK_NAME])
    raw_dir.mkdir(parents=True, exist_ok=True)
    # Temporaries of the lock file left by a killed run (the .part files stay: they resume).
    clean_stale(raw_dir, LOCK_NAME)
    lock = LockFile(raw_dir, spec.id)
    targets = [(f, u, p, _expected(f, lock.get(p.name), p.name)) for f, u, p in named]
    cancel = threading.Event()
    # Files shipped in the package are recorded as package:<folder>/<name>, not as the
    # absolute path of this installation, so the lock file is the same on every machine.
    lock_url = {}
    if base.startswith("file:") and spec.base_url.startswith(PACKAGE_SCHEME):
        if resolve_base_url(spec, None) == base:
            lock_url = {f.name: spec.base_url.rstrip("/") + "/" + f.name for f in spec.files}
    jobs = [
        _FileJob(f, url, final, expect, config, progress, i, cancel)
        for i, (f, url, final, expect) in enumerate(targets)
    ]
    log.info("download %s (%d files) from %s into %s", spec.id, len(jobs), base, raw_dir)

    def run(job: _FileJob) -> FileResult:
        result = job.run()
        if result.status != "failed":
            trust = "registry" if job.expected.trust == "registry" else "first-use"
            entry = lock.get(job.final.name)
            url = lock_url.get(job.f.name, result.url)
            if entry is not None and entry.trust == trust and entry.sha256 == result.sha256:
                url = entry.url if result.status == "verified" else url
                when = entry.when
            else:
                when = utc_now()
            lock.record(
                job.final.name,
                LockEntry(
                    role=job.f.role,
                    url=url,
                    size=result.bytes,
                    sha256=result.sha256 or "",
                    trust=trust,
                    when=when,
                ),
            )
        if on_result is not None:
            on_result(result)
        return result

    pool = ThreadPoolExecutor(max_workers=min(workers, len(jobs)) or 1)
    try:
        futures = [pool.submit(run, job) for job in jobs]
        return [fut.result() for fut in futures]
    except BaseException:
        # Ctrl-C (or any crash): stop every transfer at its next chunk; .part files stay
        # for the next run to resume.
        cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)


def verify_dataset(spec_or_id: DatasetSpec | str, raw_dir: str | Path) -> list[FileResult]:
    """Check the raw files against the registry and the lock file, fetching nothing.

    For stages that read raw files (``prepare``): every later use of a file verifies it.

    Returns:
        One ``verified`` result per file.

    Raises:
        UsageError: A file is a broken symbolic link (a loop, or a link to nothing).
        DownloadError: A file is missing (run ``alignrec-data download``).
        ChecksumError: A file does not match its recorded size or sha256.
    """
    spec = _spec(spec_or_id)
    raw_dir = Path(raw_dir)
    check_links([*(raw_path(raw_dir, spec, f.role) for f in spec.files), raw_dir / LOCK_NAME])
    lock = LockFile(raw_dir, spec.id)
    results = []
    for f in spec.files:
        path = raw_path(raw_dir, spec, f.role)
        exp = _expected(f, lock.get(path.name), path.name)
        if not path.is_file():
            msg = f"{path} is missing"
            raise DownloadError(msg, hint=f"run `alignrec-data download {spec.id}`")
        size = path.stat().st_size
        sha = sha256_file(path)
        if exp.sha256 is None:
            msg = f"{path} has no recorded sha256 (not in the registry nor in {lock.path})"
            raise DownloadError(msg, hint=f"run `alignrec-data download {spec.id}` to record it")
        if sha != exp.sha256 or (exp.size is not None and size != exp.size):
            msg = (
                f"{path} changed: expected sha256 {exp.sha256} ({exp.size} bytes, from "
                f"{'the registry' if exp.trust == 'registry' else lock.path}), found {sha} "
                f"({size} bytes)"
            )
            raise ChecksumError(
                msg,
                hint=f"run `alignrec-data download {spec.id}` to fetch "
                "it again (the changed file is moved aside)",
            )
        results.append(
            FileResult(
                role=f.role,
                path=path,
                url="",
                status="verified",
                bytes=size,
                sha256=sha,
                trust=exp.trust,
            )
        )
    return results
