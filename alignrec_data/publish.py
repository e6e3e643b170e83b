"""Publish a release folder to the Hugging Face Hub as a dataset repository.

:func:`publish_release` checks the folder (card with ``configs:``, every shard of
``alignrec_release.json`` present with its size and sha256), then with
``huggingface_hub.HfApi``: ``create_repo(repo_type="dataset", exist_ok=True)``, for a
``revision`` other than ``main`` ``create_branch(exist_ok=True)``, then ``upload_folder``.
``upload_folder`` asks the Hub which files it already has (the ``preupload`` answer carries
each remote file's object id) and leaves unchanged files out, so publishing the same folder
twice creates no second commit (``committed`` is then False).

The token comes from the usual huggingface_hub places (``$HF_TOKEN``, the token file written
by ``hf auth login``) unless passed explicitly. It is never logged, printed or written: Hub
errors are turned into :class:`PublishError` messages scrubbed of it. ``dry_run=True`` only
lists the files that would be uploaded and their sizes (no network, no token needed).

A folder without its manifest is refused (also on a dry run): nothing else says whether its
shards are the ones that were built. A parquet file the manifest does not list is refused
too (``datasets`` would load it with the rest).

Deadlines (``timeout``, default :data:`DEFAULT_TIMEOUT` seconds): every request to the Hub
may take at most ``timeout`` seconds to connect and ``timeout`` seconds for each wait for the
server (an answer, or its next bytes); each Hub call as a whole (retries included) must end
within ``timeout`` seconds, the upload within ``timeout`` plus one second per
:data:`~alignrec_data.hub.MIN_TRANSFER_RATE` bytes of the folder. A server that accepts the
connection and never answers, or one that trickles bytes, ends in a :class:`PublishError` at
the deadline. The mechanism (:mod:`alignrec_data.hub`) is the one the loaders use.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from alignrec_data.card import front_matter, scrub
from alignrec_data.errors import AlignrecError, DataFormatError, UsageError
from alignrec_data.hub import (
    DEFAULT_TIMEOUT,
    MIN_TRANSFER_RATE,
    Deadline,
    check_endpoint,
    check_timeout,
    hub_timeouts,
    network_problem,
    public_url,
    reason,
    with_deadline,
)
from alignrec_data.release_layout import CARD_NAME, MANIFEST_NAME, read_manifest
from alignrec_data.release_source import ReleaseSource, is_repo_id, verify_shard

log = logging.getLogger(__name__)

IGNORE_PATTERNS = [".*", "**/.*"]  # temporary and hidden files are never uploaded
_OFFLINE = "HF_HUB_OFFLINE=1 is set: publishing needs the Hub; unset HF_HUB_OFFLINE to publish"


class PublishError(AlignrecError):
    """The Hub refused or failed an upload (bad token, no rights, server error)."""


@dataclass(frozen=True)
class PublishResult:
    """What :func:`publish_release` did.

    Attributes:
        repo_id: The dataset repo.
        revision: The branch written.
        files: ``(path in repo, bytes)`` of every file of the folder.
        total_bytes: Their total size.
        dry_run: Nothing was sent.
        url: URL of the repo (None on a dry run).
        commit: The head commit after the upload (None on a dry run).
        committed: A new commit was made (False when nothing changed).
    """

    repo_id: str
    revision: str
    files: list[tuple[str, int]]
    total_bytes: int
    dry_run: bool
    url: str | None = None
    commit: str | None = None
    committed: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "files": [{"path": p, "bytes": b} for p, b in self.files]}


def release_files(folder: str | Path) -> list[tuple[str, int]]:
    """``(relative posix path, size)`` of every non-hidden file of the folder, sorted."""
    folder = Path(folder)
    return [
        (p.relative_to(folder).as_posix(), p.stat().st_size)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]


def check_release_folder(folder: str | Path) -> None:
    """Check that ``folder`` is a complete, verified release (card, manifest, every shard).

    The shards are checked as the loaders check them (:meth:`ReleaseSource.shards` and
    :func:`~alignrec_data.release_source.verify_shard`).

    Raises:
        UsageError: Not a folder, or no card / no ``configs:`` in it.
        DataFormatError: No (valid) manifest, a shard listed in it is missing or corrupt, or a
            parquet file is not listed in it (each named).
    """
    import yaml

    folder = Path(folder)
    if not folder.is_dir():
        msg = f"release folder {folder} does not exist; build it with `alignrec-data release`"
        raise UsageError(msg)
    card = folder / CARD_NAME  # it exists, its YAML front matter parses and has configs:
    if not card.is_file():
        msg = f"{folder} has no {CARD_NAME}: not a release folder (run `alignrec-data release`)"
        raise UsageError(msg)
    try:
        meta = front_matter(card.read_text(encoding="utf-8", errors="replace"))
    except yaml.YAMLError as err:
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        msg = f"{card}: its YAML front matter does not parse ({why}); rebuild the release"
        raise UsageError(msg) from err
    if not meta.get("configs"):
        msg = f"{card} has no `configs:` in its YAML front matter; rebuild the release"
        raise UsageError(msg)
    src = ReleaseSource(folder, str(folder), read_manifest(folder))
    listed = set()
    for config, entry in src.manifest["configs"].items():
        for split in entry["splits"]:
            for path, shard in src.shards(config, split):
                verify_shard(path, shard, src.label, shard["path"])
                listed.add(shard["path"])
    for rel, _ in release_files(folder):
        if rel.endswith(".parquet") and rel not in listed:
            msg = (
                f"release {folder}: {rel} is not listed in {MANIFEST_NAME} (it would be published "
                "and loaded with the release unverified); remove it or rebuild the release"
            )
            raise DataFormatError(msg)


def _hub_error(err: Exception, repo_id: str, endpoint: str, token: str | None) -> PublishError:
    """A clear, token-free error for a failed Hub call."""
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    endpoint = public_url(endpoint)
    response = err.response if isinstance(err, HfHubHTTPError) else None
    status = None if response is None else response.status_code
    problem = network_problem(err, endpoint, f"publishing {repo_id}")
    if problem is not None:
        msg = problem
    elif status == 401 and not isinstance(err, RepositoryNotFoundError):
        msg = (
            f"the Hub at {endpoint} rejected the token (401 Unauthorized) while publishing "
            f"{repo_id}; check $HF_TOKEN or run `hf auth login` with a token that has write access"
        )
    elif isinstance(err, RepositoryNotFoundError) or status == 404:
        msg = (
            f"dataset repo {repo_id} was not found at {endpoint} and could not be created; "
            "check the id (ORG/NAME) and that the token may write to ORG"
        )
    elif status == 403:
        msg = (
            f"the token may not write to {repo_id} at {endpoint} (403 Forbidden); use a token "
            "with write access to that organisation, or another --repo-id"
        )
    else:
        msg = f"publishing {repo_id} to {endpoint} failed: {type(err).__name__}: {reason(err)}"
    return PublishError(scrub(msg, [token] if token else []))


def publish_release(
    folder: str | Path,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    dry_run: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> PublishResult:
    """Upload a release folder to a Hub dataset repo (see module docstring).

    Args:
        folder: The release folder (``alignrec-data release`` output).
        repo_id: ``ORG/NAME``.
        revision: Branch to commit to (created from ``main`` if missing); default ``main``.
        private: Create the repo private (ignored when it exists).
        dry_run: Only list the files and their sizes.
        endpoint: Hub URL (default: huggingface_hub's, i.e. ``$HF_ENDPOINT`` or the Hub).
        token: Hub token (default: huggingface_hub's usual places).
        commit_message: Commit summary.
        timeout: Seconds: the connect and read deadline of every request, and the total
            deadline of each Hub call (the upload gets one more second per
            :data:`~alignrec_data.hub.MIN_TRANSFER_RATE` bytes; see module docstring).

    Returns:
        What was (or would be) uploaded.

    Raises:
        UsageError: Bad repo id, endpoint or timeout, not a release folder, no token, offline
            mode.
        DataFormatError: No manifest, or a shard is missing, corrupt or not in the manifest.
        PublishError: The Hub refused the upload, could not be reached, did not answer as a
            Hub, or not before the deadline.
    """
    from huggingface_hub import constants

    if not is_repo_id(repo_id):
        msg = (
            f"--repo-id {repo_id!r} is not a Hub repo id; expected ORG/NAME (letters, digits, ._-)"
        )
        raise UsageError(msg)
    timeout = check_timeout(timeout)
    if endpoint is not None:
        endpoint = check_endpoint(endpoint)
    folder = Path(folder)
    check_release_folder(folder)
    files = release_files(folder)
    total = sum(b for _, b in files)
    branch = revision or constants.DEFAULT_REVISION
    result = PublishResult(repo_id, branch, files, total, dry_run=dry_run)
    if dry_run:
        log.info("dry run: %d files, %d bytes would be uploaded to %s", len(files), total, repo_id)
        return result

    api = _hub_api(repo_id, endpoint, token)
    message = commit_message or f"Upload release of {folder.name} (alignrec)"
    repo_url, before, info = _upload(api, folder, result, private, message, timeout)
    commit = getattr(info, "oid", None)
    committed = commit is not None and commit != before
    log.info("%s %s@%s: %s", "published" if committed else "unchanged", repo_id, branch, commit)
    return replace(result, url=str(repo_url), commit=commit, committed=committed)


def _hub_api(repo_id: str, endpoint: str | None, token: str | None) -> Any:
    """The Hub client to publish with: ``endpoint`` (default ``$HF_ENDPOINT`` or the Hub), token.

    Raises:
        UsageError: No token anywhere, or offline mode.
    """
    from huggingface_hub import HfApi, constants, get_token

    endpoint = endpoint or check_endpoint(constants.ENDPOINT, "$HF_ENDPOINT")
    token = token or get_token()
    if not token:
        msg = (
            f"no Hugging Face token found to publish {repo_id}; set HF_TOKEN or run "
            "`hf auth login` (a token with write access)"
        )
        raise UsageError(msg)
    if constants.HF_HUB_OFFLINE:
        raise UsageError(_OFFLINE)
    return HfApi(endpoint=endpoint, token=token)


def _upload(
    api: Any, folder: Path, plan: PublishResult, private: bool, message: str, timeout: float
) -> tuple[Any, str | None, Any]:
    """Create the repo (and branch), then upload the folder, each Hub call under its deadline.

    Returns:
        ``(repo URL, head commit before the upload, upload_folder's CommitInfo)``.

    Raises:
        UsageError: Offline mode.
        PublishError: A Hub call failed or ran past its deadline (token scrubbed).
    """
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    failures = (Deadline, HfHubHTTPError, httpx2.HTTPError, httpx2.InvalidURL, ValueError, OSError)

    def call(name: str, seconds: float = timeout, **kwargs: Any) -> Any:
        hub_call = partial(getattr(api, name), repo_id=plan.repo_id, repo_type="dataset", **kwargs)
        return with_deadline(hub_call, seconds, name)

    try:
        with hub_timeouts(timeout):
            repo_url = call("create_repo", exist_ok=True, private=private)
            if plan.revision != constants.DEFAULT_REVISION:
                call("create_branch", branch=plan.revision, exist_ok=True)
            before = call("repo_info", revision=plan.revision).sha
            info = call(
                "upload_folder",
                timeout + plan.total_bytes / MIN_TRANSFER_RATE,
                folder_path=folder,
                revision=plan.revision,
                commit_message=message,
                ignore_patterns=IGNORE_PATTERNS,
            )
    except OfflineModeIsEnabled as err:
        raise UsageError(_OFFLINE) from err
    except failures as err:
        raise _hub_error(err, plan.repo_id, api.endpoint, api.token) from None
    return repo_url, before, info
