"""Verified, resumable downloads of a dataset's raw files into ``<data-dir>/<dataset>/raw``.

By default only the files ``prepare`` reads (roles ``reviews`` and ``meta``,
:data:`alignrec_data.registry.PREPARE_ROLES`) are fetched; ``all_files`` adds the optional ones
(the all-ratings CSV). An optional file the server or mirror does not have (HTTP 404/410, no
such local file) is reported as ``missing``, never an error.

For each file fetched (:mod:`alignrec_data.registry`):

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

Retries follow one policy (:class:`alignrec_data.http.RetryPolicy`, shared with the image
fetcher): connection errors and the statuses in :data:`alignrec_data.http.RETRY_STATUSES`
(408, 429, 500, 502, 503, 504) before the body starts are retried by the session, waiting for
``Retry-After`` when sent (capped at ``retry_after_max``), else the capped exponential
back-off; a cut inside the body is resumed by the file's job
(:mod:`alignrec_data.download_job`) after the same back-off. Every attempt is bounded in time:
``timeout`` bounds connecting and each read, and a low-speed rule (``min_speed`` bytes/s over
``speed_window`` seconds, as curl's ``--speed-limit`` / ``--speed-time``;
:class:`alignrec_data.watchdog.Watchdog`) cuts a server that trickles, which a per-read
time-out never does. A cut by that rule is resumed
like a cut connection. Files are fetched in parallel by a bounded thread pool, each with
a tqdm bar on stderr. Nothing here prints or prompts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from alignrec_data.atomic import clean_stale
from alignrec_data.config import check_ranges
from alignrec_data.download_job import FileJob
from alignrec_data.download_result import Expected, FileResult, expected_for
from alignrec_data.errors import ChecksumError, DownloadError, UsageError
from alignrec_data.http import RetryPolicy
from alignrec_data.integrity import sha256_file
from alignrec_data.links import check_links
from alignrec_data.lockfile import LOCK_NAME, LockEntry, LockFile, utc_now
from alignrec_data.registry import (
    PACKAGE_SCHEME,
    DatasetSpec,
    FileSpec,
    file_url,
    get_dataset,
    raw_path,
    resolve_base_url,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DownloadConfig:
    """The ``download`` section of params.yaml.

    Attributes:
        workers: Files fetched in parallel.
        retries: Retries per request (connection errors, 408, 429, 5xx) and resumes per file after
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
        """Reject values the downloader cannot run with."""
        check_ranges(
            self,
            "download",
            {
                "workers": (self.workers >= 1, ">= 1"),
                "retries": (self.retries >= 0, ">= 0"),
                "backoff_base": (self.backoff_base >= 0, ">= 0 seconds"),
                "backoff_cap": (self.backoff_cap >= 0, ">= 0 seconds"),
                "retry_after_max": (self.retry_after_max >= 0, ">= 0 seconds"),
                "timeout": (self.timeout > 0, "> 0 seconds"),
                "min_speed": (self.min_speed >= 0, ">= 0 bytes/s (0: off)"),
                "speed_window": (self.speed_window > 0, "> 0 seconds"),
                "chunk_size": (self.chunk_size >= 1024, ">= 1024 bytes"),
            },
        )

    def retry_policy(self) -> RetryPolicy:
        """The retry policy these settings ask for."""
        return RetryPolicy(self.retries, self.backoff_base, self.backoff_cap, self.retry_after_max)


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
    all_files: bool = False,
) -> list[FileResult]:
    """Download and verify a dataset's files into ``raw_dir``: those prepare reads, or all.

    Args:
        spec_or_id: The registry entry or its id.
        raw_dir: Target folder (created), normally ``<data-dir>/<dataset>/raw``.
        mirror: Base URL or folder replacing the official base URL (else ``$ALIGNREC_MIRROR``);
            not used for a declared dataset's files, which name their own URLs.
        workers: Files in parallel (default ``config.workers``).
        config: Retry, timeout and chunk settings (the ``download`` params section).
        progress: Show a tqdm bar per file on stderr.
        all_files: Also fetch the optional files (roles prepare does not read, e.g. the
            all-ratings CSV); one the source lacks is reported ``missing``, not an error.

    Returns:
        One result per file fetched, in registry order. Failed files have ``status="failed"``
        and their error; use :func:`raise_for_failures` to raise it. Optional files that are
        not there have ``status="missing"``.

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
    lock, targets = _targets(spec, raw_dir, base, spec.files_for(all_files))
    cancel = threading.Event()
    lock_url = _package_urls(spec, base)
    jobs = [FileJob(*target, config, progress, i, cancel) for i, target in enumerate(targets)]
    log.info("download %s (%d files) from %s into %s", spec.id, len(jobs), base, raw_dir)

    def run(job: FileJob) -> FileResult:
        result = job.run()
        if result.status not in ("failed", "missing"):
            _record(lock, job, result, lock_url.get(job.f.name, result.url))
        return result

    with ThreadPoolExecutor(max_workers=min(workers, len(jobs)) or 1) as pool:
        try:
            futures = [pool.submit(run, job) for job in jobs]
            return [fut.result() for fut in futures]
        except BaseException:
            # Ctrl-C (or any crash): stop every transfer at its next chunk; .part files stay
            # for the next run to resume.
            cancel.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _targets(
    spec: DatasetSpec, raw_dir: Path, base: str, wanted: tuple[FileSpec, ...]
) -> tuple[LockFile, list[tuple[FileSpec, str, Path, Expected]]]:
    """The lock file and, per file, its URL, final path and what it must hash to.

    Every name is validated and every target checked for a broken link before the disk is
    touched: an unsafe name fails the whole call. Then the raw folder is created.
    """
    # A declared dataset's files have their own URLs (alignrec_data.declared); no mirror.
    named = [(f, f.url or file_url(base, f), raw_path(raw_dir, spec, f.role)) for f in wanted]
    check_links([*(p for _, _, p in named), raw_dir / LOCK_NAME])
    if spec.declared is not None:
        from alignrec_data import declared

        declared.check_sources(spec, wanted)
    raw_dir.mkdir(parents=True, exist_ok=True)
    # Temporaries of the lock file left by a killed run (the .part files stay: they resume).
    clean_stale(raw_dir, LOCK_NAME)
    lock = LockFile(raw_dir, spec.id)
    if spec.declared is not None:
        return lock, [(f, u, p, declared.expected(f, lock.get(p.name), p, u)) for f, u, p in named]
    return lock, [(f, u, p, expected_for(f, lock.get(p.name), p.name)) for f, u, p in named]


def _package_urls(spec: DatasetSpec, base: str) -> dict[str, str]:
    """The URLs recorded for files read from the package itself, by file name.

    Files shipped in the package are recorded as package:<folder>/<name>, not as the absolute
    path of this installation, so the lock file is the same on every machine.
    """
    if base.startswith("file:") and spec.base_url.startswith(PACKAGE_SCHEME):
        if resolve_base_url(spec, None) == base:
            return {f.name: spec.base_url.rstrip("/") + "/" + f.name for f in spec.files}
    return {}


def _record(lock: LockFile, job: FileJob, result: FileResult, url: str) -> None:
    """Record a verified or fetched file in the lock file (kept as it was when unchanged)."""
    trust = "registry" if job.expected.trust == "registry" else "first-use"
    entry = lock.get(job.final.name)
    when = utc_now()
    if entry is not None and entry.trust == trust and entry.sha256 == result.sha256:
        url = entry.url if result.status == "verified" else url
        when = entry.when
    entry = LockEntry(job.f.role, url, result.bytes, result.sha256 or "", trust, when)
    lock.record(job.final.name, entry)


def verify_dataset(
    spec_or_id: DatasetSpec | str, raw_dir: str | Path, *, all_files: bool = False
) -> list[FileResult]:
    """Check the raw files against the registry and the lock file, fetching nothing.

    For stages that read raw files (``prepare``): every later use of a file verifies it.

    Args:
        spec_or_id: The registry entry or its id.
        raw_dir: The raw folder.
        all_files: Check the optional files too (default: only those prepare reads, the
            roles in :data:`alignrec_data.registry.PREPARE_ROLES`).

    Returns:
        One ``verified`` result per file checked.

    Raises:
        UsageError: A file is a broken symbolic link (a loop, or a link to nothing).
        DownloadError: A file is missing (run ``alignrec-data download``).
        ChecksumError: A file does not match its recorded size or sha256.
    """
    spec = _spec(spec_or_id)
    raw_dir = Path(raw_dir)
    files = spec.files_for(all_files)
    check_links([*(raw_path(raw_dir, spec, f.role) for f in files), raw_dir / LOCK_NAME])
    lock = LockFile(raw_dir, spec.id)
    results = []
    for f in files:
        path = raw_path(raw_dir, spec, f.role)
        exp = expected_for(f, lock.get(path.name), path.name)
        if not path.is_file():
            msg = f"{path} is missing"
            raise DownloadError(msg, hint=f"run `alignrec-data download {spec.id}`")
        size = path.stat().st_size
        sha = sha256_file(path)
        if exp.sha256 is None:
            msg = f"{path} has no recorded sha256 (not in the registry nor in {lock.path})"
            raise DownloadError(msg, hint=f"run `alignrec-data download {spec.id}` to record it")
        if not exp.matches(size, sha):
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
            FileResult(f.role, path, "", "verified", bytes=size, sha256=sha, trust=exp.trust)
        )
    return results
