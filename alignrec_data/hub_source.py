"""A release in a Hub dataset repo: its manifest and shards fetched into the Hub cache.

``HubRelease(...).open()`` resolves the revision (``repo_info``), fetches
``alignrec_release.json`` with ``huggingface_hub.hf_hub_download`` and returns a
:class:`~alignrec_data.release_source.ReleaseSource` whose shards are fetched when first
asked for (with ``HF_HUB_OFFLINE=1`` only the cache is used). Every Hub call runs under the
deadlines of :mod:`alignrec_data.hub`: ``timeout`` seconds to connect, for each wait and for
the call as a whole, a shard's download ``timeout`` plus one second per
:data:`~alignrec_data.hub.MIN_TRANSFER_RATE` bytes of it. When the Hub cannot be reached the
Hub cache alone is used (a warning is logged); what it lacks is a
:class:`~alignrec_data.errors.DownloadError` naming the repo, the endpoint and the fix.
"""

from __future__ import annotations

import logging
import re
from dataclasses import KW_ONLY, dataclass, field
from functools import partial
from pathlib import Path

from alignrec_data.atomic import write_text
from alignrec_data.errors import DataFormatError, DownloadError, UsageError
from alignrec_data.hub import (
    MIN_TRANSFER_RATE,
    check_endpoint,
    hub_timeouts,
    network_problem,
    with_deadline,
)
from alignrec_data.release_layout import MANIFEST_NAME, read_manifest
from alignrec_data.release_source import ReleaseSource

log = logging.getLogger(__name__)


@dataclass(eq=False)
class HubRelease:
    """The files of one Hub dataset repo at one revision, fetched with deadlines.

    Attributes:
        label: ``repo_id@revision``, for messages.
        commit: The commit ``repo_info`` resolved the revision to (else the revision).
        unreachable: Set when the Hub could not be reached: only its cache is used.
        sizes: Shard path -> bytes (from the manifest), sizing each download's deadline.
    """

    repo_id: str
    revision: str | None
    _: KW_ONLY
    endpoint: str | None
    token: str | bool | None = field(repr=False)
    cache_dir: str | Path | None
    timeout: float
    unreachable: str | None = field(default=None, init=False)
    sizes: dict[str, int] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.label = f"{self.repo_id}@{self.revision or 'main'}"
        if self.endpoint is not None:
            self.endpoint = check_endpoint(self.endpoint, "endpoint")
        self.commit = self.revision

    def problem(self, err: BaseException) -> str | None:
        """One line naming the endpoint (no user:password@) and the fix for a network failure."""
        from huggingface_hub import constants

        hint = f"timeout= (now {self.timeout:g} s)"
        doing = f"loading dataset repo {self.label}"
        endpoint = self.endpoint or constants.ENDPOINT
        return network_problem(err, endpoint, doing, endpoint_hint="endpoint=", timeout_hint=hint)

    def resolve(self) -> None:
        """Resolve the revision to a commit; on a network failure use the Hub cache only.

        Raises:
            UsageError: The repo or the revision does not exist.
        """
        from huggingface_hub import HfApi
        from huggingface_hub.errors import (
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        timeout = self.timeout
        try:
            api = HfApi(endpoint=self.endpoint, token=self.token)
            with hub_timeouts(timeout):
                info = with_deadline(
                    lambda: api.repo_info(
                        self.repo_id, repo_type="dataset", revision=self.revision, timeout=timeout
                    ),
                    timeout,
                    "repo_info",
                )
            self.commit = info.sha or self.revision
        except OfflineModeIsEnabled:
            log.info("HF_HUB_OFFLINE is set: loading %s from the Hub cache only", self.label)
        except RepositoryNotFoundError as err:
            msg = (
                f"Hub dataset repo {self.repo_id!r} was not found (or it is private and no valid "
                "token was given); check the id, or log in with `hf auth login` / set HF_TOKEN"
            )
            raise UsageError(msg) from err
        except RevisionNotFoundError as err:
            msg = f"Hub dataset repo {self.repo_id!r} has no revision {self.revision!r}"
            raise UsageError(msg) from err
        except Exception as err:  # any other failure: the downloads will tell
            self.unreachable = self.problem(err)  # network down: the cache only, no second wait
            if self.unreachable is not None:
                log.warning("%s; trying the Hub cache", self.unreachable)
            else:
                log.warning("repo_info of %s failed (%s); trying the downloads", self.label, err)

    def fetch(self, rel: str) -> Path:
        """Fetch one file of the repo into the Hub cache, within its deadline.

        Raises:
            DownloadError: The Hub could not be reached and the cache lacks the file.
            DataFormatError: The repo has no such file.
            UsageError: The repo does not exist.
        """
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

        download = partial(
            hf_hub_download,
            self.repo_id,
            rel,
            repo_type="dataset",
            revision=self.commit,
            endpoint=self.endpoint,
            token=self.token,
            cache_dir=self.cache_dir,
            etag_timeout=self.timeout,
            local_files_only=self.unreachable is not None,
        )

        seconds = self.timeout + self.sizes.get(rel, 0) / MIN_TRANSFER_RATE
        try:
            with hub_timeouts(self.timeout):
                return Path(with_deadline(download, seconds, f"the download of {rel}"))
        except RepositoryNotFoundError as err:
            msg = f"Hub dataset repo {self.repo_id!r} was not found (or it is private)"
            raise UsageError(msg) from err
        except Exception as err:
            missing = isinstance(err, EntryNotFoundError)  # also LocalEntryNotFoundError
            if missing and self.unreachable is not None:
                msg = f"{self.unreachable} ({rel} is not in the Hub cache either)"
                raise DownloadError(msg) from None
            text = self.problem(err)
            if text is not None:
                raise DownloadError(text) from None
            if not missing:
                raise
            msg = (
                f"release {self.label}: {rel} could not be fetched ({type(err).__name__}); "
                "with HF_HUB_OFFLINE=1 only files already in the Hub cache can be loaded"
            )
            raise DataFormatError(msg) from err

    def open(self) -> ReleaseSource:
        """Resolve the revision and fetch the manifest: the release, its shards fetched later.

        Raises:
            UsageError: The repo or the revision does not exist.
            DataFormatError: The repo has no (valid) manifest.
            DownloadError: The Hub could not be reached and the cache lacks the manifest.
        """
        self.resolve()
        try:
            manifest_path = self.fetch(MANIFEST_NAME)
        except DataFormatError as err:
            msg = (
                f"Hub dataset repo {self.label} has no readable {MANIFEST_NAME}: it was not "
                "built by `alignrec-data release` (use datasets.load_dataset for other repos) "
                f"({err})"
            )
            raise DataFormatError(msg) from err
        folder = manifest_path.parent
        if self.unreachable is None and self.commit:
            _remember_ref(folder, self.revision or "main", self.commit)
        manifest = read_manifest(folder, self.label)
        for config in manifest["configs"].values():
            for split in config["splits"].values():
                self.sizes.update((s["path"], int(s["bytes"])) for s in split["shards"])
        return ReleaseSource(folder, self.label, manifest, self.fetch)


def _remember_ref(snapshot: Path, ref: str, commit: str) -> None:
    """Record ``ref -> commit`` in the Hub cache, as ``hf_hub_download`` does for a branch.

    The loaders download at the commit ``repo_info`` named, so huggingface_hub records no
    ref; without one a later load of the branch from the cache alone (``HF_HUB_OFFLINE=1``,
    or the Hub unreachable) would not find the snapshot.
    """
    parts = ref.split("/")
    if (
        ref == commit
        or snapshot.name != commit
        or snapshot.parent.name != "snapshots"
        or not all(re.fullmatch(r"[\w.-]+", p) and p not in (".", "..") for p in parts)
    ):
        return
    path = snapshot.parent.parent.joinpath("refs", *parts)
    try:
        if not (path.is_file() and path.read_text() == commit):
            write_text(path, commit)
    except OSError as err:  # a read-only cache must not break loading
        log.debug("could not record %s -> %s in the Hub cache (%s)", ref, commit, err)
