"""Load a release (a local folder or a Hub dataset repo) into numpy / torch, ids checked.

Every release must carry its manifest ``alignrec_release.json`` (rows, bytes and sha256 of
every shard): a folder or Hub repo without it is refused (a
:class:`~alignrec_data.errors.DataFormatError` saying to rebuild it with ``alignrec-data
release``), since nothing else says whether its shards are the ones that were released.

- :func:`load_features`: one feature set as an (N_items, d) float32 matrix, row i = item i.
  The first load verifies every shard against ``alignrec_release.json`` (present, same size
  and sha256; a missing or corrupt shard is named in the error), reads the parquet shards,
  checks that the item ids are 0..N-1 and writes the matrix to a cache as ``.npy``. Later
  loads memory-map that file copy-on-write (``numpy.load(mmap_mode="c")`` and
  ``torch.from_numpy``: no copy, writable), so a cached load costs about what ``numpy.load``
  costs. The cache key covers every shard's path, size and modification time: a changed
  shard is read and verified again. Cache folder: ``cache_dir``, else
  ``$ALIGNREC_CACHE_DIR``, else ``$XDG_CACHE_HOME/alignrec`` (``~/.cache/alignrec``).
- :func:`load_interactions`: columns ``user_id``, ``item_id``, ``rating``, ``timestamp`` of
  one split (or all, with MMRec's ``x_label`` 0/1/2), as numpy, torch or pandas; every shard
  read is verified against the manifest first.
- :func:`load_items`: the ``items`` config as a pandas DataFrame, row i = item i (verified
  likewise).
- :func:`to_mmrec`: a release to the MMRec / AlignRec folder layout.

``source`` is a local release folder or a Hub repo id ``ORG/NAME`` (with ``revision``: a
branch, tag or commit sha; pin a commit to reproduce exactly). From the Hub the manifest and
the needed shards are fetched with ``huggingface_hub.hf_hub_download`` into the Hub cache
(with ``HF_HUB_OFFLINE=1`` only the cache is used). An unknown config or variant is a
:class:`~alignrec_data.errors.UsageError` that lists what the release has.

Deadlines (``timeout``, default :data:`~alignrec_data.hub.DEFAULT_TIMEOUT` = 60 seconds, on
every public function): each Hub request may take at most ``timeout`` seconds to connect and
for each wait for the server, and each Hub call as a whole (huggingface_hub's retries
included) must end within ``timeout`` seconds; a shard's download within ``timeout`` plus
one second per :data:`~alignrec_data.hub.MIN_TRANSFER_RATE` bytes of it (its size is in the
manifest). The mechanism is the one ``publish`` uses (:mod:`alignrec_data.hub`). When the
Hub cannot be reached (refused, stalled past the deadline, not answering HTTP) the loaders
fall back to the Hub cache alone (a warning is logged); what the cache lacks is a
:class:`~alignrec_data.errors.DownloadError` naming the repo, the endpoint, what failed and
the fix (check the network / ``endpoint``, or raise ``timeout``).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alignrec_data.atomic import atomic_path
from alignrec_data.errors import DataFormatError, DownloadError, UsageError
from alignrec_data.hub import (
    DEFAULT_TIMEOUT,
    MIN_TRANSFER_RATE,
    check_endpoint,
    check_timeout,
    hub_timeouts,
    network_problem,
    public_url,
    with_deadline,
)
from alignrec_data.release import (
    CARD_NAME,
    FEATURES_PREFIX,
    MANIFEST_NAME,
    SPLIT_NAMES,
    read_manifest,
    sha256_file,
)

log = logging.getLogger(__name__)

CACHE_ENV = "ALIGNREC_CACHE_DIR"
RETURN_TYPES = ("numpy", "torch")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Published split name -> MMRec x_label.
X_LABELS = {"train": 0, "validation": 1, "test": 2}

F = TypeVar("F", bound=Callable[..., Any])


def _one_hub_session(func: F) -> F:
    """Keep the Hub client's timeouts installed for a whole loader call on a Hub repo id.

    Each Hub call also enters :func:`~alignrec_data.hub.hub_timeouts` itself; holding it for
    the whole call lets the shard downloads share the client's connections (it is closed,
    ending any call abandoned at its deadline, when the loader returns or raises).
    """
    signature = inspect.signature(func)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind_partial(*args, **kwargs).arguments
        source = bound.get("source")
        if isinstance(source, str) and _REPO_ID.match(source) and not Path(source).is_dir():
            timeout = check_timeout(bound.get("timeout", DEFAULT_TIMEOUT), "timeout")
            with hub_timeouts(timeout):
                return func(*args, **kwargs)
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


class ReleaseSource:
    """A release folder on disk (local, or a Hub snapshot in the Hub cache).

    Attributes:
        folder: The folder.
        label: How to name it in messages (the path or ``repo_id@revision``).
        manifest: ``alignrec_release.json``, checked by
            :func:`alignrec_data.release.read_manifest` (a release without one is refused).
        fetch: Callable fetching a relative path for Hub sources (None when local).
    """

    def __init__(
        self,
        folder: Path,
        label: str,
        manifest: dict[str, Any],
        fetch: Callable[[str], Path] | None = None,
    ):
        self.folder = folder
        self.label = label
        self.manifest = manifest
        self.fetch = fetch

    # -- configs -------------------------------------------------------------------------

    def configs(self) -> list[str]:
        """Config names of the release."""
        return list(self.manifest["configs"])

    def require(self, config: str) -> None:
        """Raise a UsageError listing the configs when ``config`` is not one of them."""
        names = self.configs()
        if config in names:
            return
        variants = [c[len(FEATURES_PREFIX) :] for c in names if c.startswith(FEATURES_PREFIX)]
        if config.startswith(FEATURES_PREFIX):
            what = f"no feature variant {config[len(FEATURES_PREFIX) :]!r}"
        else:
            what = f"no config {config!r}"
        msg = (
            f"release {self.label} has {what}; configs: {', '.join(names) or 'none'}; "
            f"feature variants: {', '.join(variants) or 'none'}"
        )
        raise UsageError(msg)

    def splits(self, config: str) -> list[str]:
        """Split names of a config."""
        self.require(config)
        names = list(self.manifest["configs"][config]["splits"])
        order = {s: i for i, s in enumerate(X_LABELS)}  # train, validation, test first
        return sorted(names, key=lambda s: (order.get(s, len(order)), s))

    def shards(self, config: str, split: str) -> list[tuple[Path, dict[str, Any]]]:
        """The shard files of one split, in order, each with its manifest entry.

        Raises:
            UsageError: Unknown config or split.
            DataFormatError: A shard is missing (named in the message).
        """
        self.require(config)
        splits = self.manifest["configs"][config]["splits"]
        if split not in splits:
            have = ", ".join(splits)
            msg = f"config {config!r} of {self.label} has no split {split!r}; splits: {have}"
            raise UsageError(msg)
        out = []
        for e in splits[split]["shards"]:
            rel = e["path"]  # a safe relative path: checked by read_manifest
            if self.fetch is not None:
                self.fetch(rel)
            path = self.folder / rel
            if not path.is_file():
                msg = (
                    f"release {self.label}: shard {rel} is missing (listed in {MANIFEST_NAME}); "
                    "rebuild the release (`alignrec-data release`) or download it again"
                )
                raise DataFormatError(msg)
            out.append((path, e))
        return out


def _verify_shard(path: Path, entry: dict[str, Any], label: str, rel: str) -> None:
    """Check a shard's size and sha256 against its manifest entry."""
    size = path.stat().st_size
    if size != entry["bytes"]:
        msg = (
            f"release {label}: shard {rel} is corrupt or truncated ({size} bytes, "
            f"{MANIFEST_NAME} says {entry['bytes']}); rebuild or download the release again"
        )
        raise DataFormatError(msg)
    if sha256_file(path) != entry["sha256"]:
        msg = (
            f"release {label}: shard {rel} is corrupt (sha256 differs from {MANIFEST_NAME}); "
            "rebuild or download the release again"
        )
        raise DataFormatError(msg)


def _read_shard(path: Path, label: str, rel: str, columns: list[str] | None = None) -> pa.Table:
    try:
        return pq.read_table(path, columns=columns, memory_map=True)
    except (pa.ArrowInvalid, OSError) as err:
        msg = f"release {label}: shard {rel} is not a readable parquet file ({err})"
        raise DataFormatError(msg) from err
    except (KeyError, ValueError) as err:
        msg = f"release {label}: shard {rel} lacks column(s) {columns} ({err})"
        raise DataFormatError(msg) from err


# ----------------------------------------------------------------------------- sources


def _hub_source(
    repo_id: str,
    revision: str | None,
    *,
    endpoint: str | None,
    token: str | bool | None,
    cache_dir: str | Path | None,
    timeout: float,
) -> ReleaseSource:
    from huggingface_hub import HfApi, constants, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    label = f"{repo_id}@{revision or 'main'}"
    if endpoint is not None:
        endpoint = check_endpoint(endpoint, "endpoint")
    shown = public_url(endpoint or constants.ENDPOINT)  # for messages (no user:password@)
    doing = f"loading dataset repo {label}"

    def problem(err: BaseException) -> str | None:
        hint = f"timeout= (now {timeout:g} s)"
        return network_problem(err, shown, doing, endpoint_hint="endpoint=", timeout_hint=hint)

    commit = revision
    unreachable: str | None = None  # set: the Hub is not reachable, only its cache is used
    try:
        api = HfApi(endpoint=endpoint, token=token)
        with hub_timeouts(timeout):
            info = with_deadline(
                lambda: api.repo_info(
                    repo_id, repo_type="dataset", revision=revision, timeout=timeout
                ),
                timeout,
                "repo_info",
            )
        commit = info.sha or revision
    except OfflineModeIsEnabled:
        log.info("HF_HUB_OFFLINE is set: loading %s from the Hub cache only", label)
    except RepositoryNotFoundError as err:
        msg = (
            f"Hub dataset repo {repo_id!r} was not found (or it is private and no valid token "
            "was given); check the id, or log in with `hf auth login` / set HF_TOKEN"
        )
        raise UsageError(msg) from err
    except RevisionNotFoundError as err:
        msg = f"Hub dataset repo {repo_id!r} has no revision {revision!r}"
        raise UsageError(msg) from err
    except Exception as err:  # any other failure: the downloads will tell
        unreachable = problem(err)  # network down: the Hub cache only, no second wait
        if unreachable is not None:
            log.warning("%s; trying the Hub cache", unreachable)
        else:
            log.warning("repo_info of %s failed (%s); trying the downloads", label, err)
    sizes: dict[str, int] = {}  # shard path -> bytes, from the manifest

    def fetch(rel: str) -> Path:
        seconds = timeout + sizes.get(rel, 0) / MIN_TRANSFER_RATE

        def download() -> str:
            return hf_hub_download(
                repo_id,
                rel,
                repo_type="dataset",
                revision=commit,
                endpoint=endpoint,
                token=token,
                cache_dir=cache_dir,
                etag_timeout=timeout,
                local_files_only=unreachable is not None,
            )

        try:
            with hub_timeouts(timeout):
                return Path(with_deadline(download, seconds, f"the download of {rel}"))
        except (EntryNotFoundError, LocalEntryNotFoundError) as err:
            if unreachable is not None:
                msg = f"{unreachable} ({rel} is not in the Hub cache either)"
                raise DownloadError(msg) from None
            text = problem(err)
            if text is not None:
                raise DownloadError(text) from None
            msg = (
                f"release {label}: {rel} could not be fetched ({type(err).__name__}); "
                "with HF_HUB_OFFLINE=1 only files already in the Hub cache can be loaded"
            )
            raise DataFormatError(msg) from err
        except RepositoryNotFoundError as err:
            msg = f"Hub dataset repo {repo_id!r} was not found (or it is private)"
            raise UsageError(msg) from err
        except Exception as err:
            text = problem(err)
            if text is None:
                raise
            raise DownloadError(text) from None

    try:
        manifest_path = fetch(MANIFEST_NAME)
    except DataFormatError as err:
        msg = (
            f"Hub dataset repo {label} has no readable {MANIFEST_NAME}: it was not built by "
            f"`alignrec-data release` (use datasets.load_dataset for other repos) ({err})"
        )
        raise DataFormatError(msg) from err
    folder = manifest_path.parent
    if unreachable is None and commit:
        _remember_ref(folder, revision or "main", commit)
    manifest = read_manifest(folder, label)
    for config in manifest["configs"].values():
        for split in config["splits"].values():
            for shard in split["shards"]:
                sizes[shard["path"]] = int(shard["bytes"])
    return ReleaseSource(folder, label, manifest, fetch)


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
        if path.is_file() and path.read_text() == commit:
            return
        with atomic_path(path) as tmp:
            Path(tmp).write_text(commit)
    except OSError as err:  # a read-only cache must not break loading
        log.debug("could not record %s -> %s in the Hub cache (%s)", ref, commit, err)


@_one_hub_session
def open_release(
    source: str | Path,
    *,
    revision: str | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> ReleaseSource:
    """Open a local release folder or a Hub dataset repo id.

    Args:
        source: Release folder or Hub repo id ``ORG/NAME``.
        revision: Hub revision (branch, tag or commit sha); ignored for folders.
        endpoint: Hub endpoint (default: huggingface_hub's, i.e. ``$HF_ENDPOINT``).
        token: Hub token (default: huggingface_hub's usual places).
        cache_dir: Hub cache folder (default: huggingface_hub's).
        timeout: Seconds: connect / read deadline of each Hub request and total deadline of
            each Hub call (see module docstring); the later shard downloads keep it.

    Raises:
        UsageError: ``source`` is neither an existing folder nor an ``ORG/NAME`` repo id, the
            repo does not exist, or a bad ``endpoint`` / ``timeout``.
        DataFormatError: The release has no (valid) manifest ``alignrec_release.json``.
        DownloadError: The Hub could not be reached, did not answer as a Hub, or not before
            the deadline, and the Hub cache lacks the file.
    """
    timeout = check_timeout(timeout, "timeout")
    path = Path(source)
    if path.is_dir():
        if not (path / MANIFEST_NAME).is_file() and not (path / CARD_NAME).is_file():
            msg = (
                f"{path} is not a release folder (no {MANIFEST_NAME} and no {CARD_NAME}); "
                "build one with `alignrec-data release DATASET --out FOLDER`"
            )
            raise UsageError(msg)
        label = str(path)
        return ReleaseSource(path, label, read_manifest(path, label))
    if isinstance(source, str) and _REPO_ID.match(source):
        return _hub_source(
            source, revision, endpoint=endpoint, token=token, cache_dir=cache_dir, timeout=timeout
        )
    msg = f"release source {source!r} is neither an existing folder nor a Hub repo id ORG/NAME"
    raise UsageError(msg)


# ----------------------------------------------------------------------------- features


def _cache_root(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "alignrec"


def _cache_key(shards: list[tuple[Path, dict[str, Any]]], variant: str) -> str:
    h = hashlib.sha256(variant.encode())
    for path, entry in shards:
        st = path.stat()
        rec = [str(path.resolve()), st.st_size, st.st_mtime_ns, entry["sha256"]]
        h.update(json.dumps(rec).encode())
    return h.hexdigest()[:32]


def _read_feature_matrix(
    src: ReleaseSource, config: str, shards: list[tuple[Path, dict[str, Any]]]
) -> np.ndarray:
    """Verify and read the shards of a feature config into one (N, d) float32 matrix."""
    ids_parts, emb_parts, dim = [], [], None
    for path, entry in shards:
        rel = f"{config}/{path.name}"
        _verify_shard(path, entry, src.label, rel)
        table = _read_shard(path, src.label, rel, ["item_id", "embedding"])
        emb = table.column("embedding").combine_chunks()
        if not pa.types.is_fixed_size_list(emb.type):
            msg = (
                f"release {src.label}: shard {rel}: embedding is {emb.type}, not a fixed-size list"
            )
            raise DataFormatError(msg)
        if dim is not None and emb.type.list_size != dim:
            msg = (
                f"release {src.label}: shard {rel} has dimension {emb.type.list_size}, others {dim}"
            )
            raise DataFormatError(msg)
        dim = emb.type.list_size
        values = emb.flatten().to_numpy(zero_copy_only=False)  # zero-copy for float32 w/o nulls
        emb_parts.append(values.astype(np.float32, copy=False).reshape(-1, dim))
        ids_parts.append(table.column("item_id").to_numpy())
    ids = np.concatenate(ids_parts) if ids_parts else np.zeros(0, np.int64)
    matrix = np.concatenate(emb_parts) if len(emb_parts) > 1 else emb_parts[0]
    n = len(ids)
    if not np.array_equal(ids, np.arange(n)):
        order = np.argsort(ids, kind="stable")
        if not np.array_equal(ids[order], np.arange(n)):
            msg = f"release {src.label}: {config} item_id values are not 0..{n - 1} (each once)"
            raise DataFormatError(msg)
        matrix = matrix[order]
    if not matrix.flags.writeable or not matrix.flags.c_contiguous:
        matrix = np.array(matrix, dtype=np.float32, order="C")
    return matrix


def _as_type(matrix: np.ndarray, return_type: str) -> Any:
    if return_type == "torch":
        import torch

        if not matrix.flags.writeable:  # Arrow buffers are read-only; torch wants writable
            matrix = matrix.copy()
        return torch.from_numpy(matrix)
    return matrix


def _check_return_type(return_type: str, allowed: Sequence[str] = RETURN_TYPES) -> None:
    if return_type not in allowed:
        msg = f"return_type {return_type!r} is not one of {', '.join(allowed)}"
        raise UsageError(msg)


@_one_hub_session
def load_features(
    source: str | Path,
    variant: str = "alignrec",
    *,
    revision: str | None = None,
    return_type: str = "numpy",
    with_keys: bool = False,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Any:
    """Load one feature set of a release: (N_items, d) float32, row i = item_id i.

    Args:
        source: Release folder or Hub repo id ``ORG/NAME``.
        variant: Feature variant (config ``features-<variant>``).
        revision: Hub revision (branch, tag or commit sha); ignored for folders.
        return_type: ``numpy`` or ``torch`` (``torch.from_numpy``: no copy).
        with_keys: Also return the raw item keys (list of str, in item_id order).
        cache: Use / fill the ``.npy`` cache (see module docstring).
        cache_dir: Cache folder (default ``$ALIGNREC_CACHE_DIR`` or ``~/.cache/alignrec``).
        endpoint: Hub endpoint (default: huggingface_hub's, i.e. ``$HF_ENDPOINT``).
        token: Hub token (default: huggingface_hub's usual places).
        timeout: Seconds (default 60): the connect / read and total deadline of each Hub call
            (see module docstring).

    Returns:
        The matrix, or ``(matrix, item_keys)`` with ``with_keys=True``.

    Raises:
        UsageError: Unknown variant (the message lists those the release has).
        DataFormatError: A shard is missing or corrupt (named), or ids are not 0..N-1.
        DownloadError: The Hub was unreachable, stalled past the deadline or did not answer
            as a Hub (the message names the repo, endpoint and fix).
    """
    _check_return_type(return_type)
    src = open_release(source, revision=revision, endpoint=endpoint, token=token, timeout=timeout)
    config = FEATURES_PREFIX + variant
    src.require(config)
    shards = src.shards(config, "train")
    matrix = None
    cache_file = None
    if cache:
        cache_file = _cache_root(cache_dir) / "features" / f"{_cache_key(shards, variant)}.npy"
        if cache_file.is_file():
            try:
                # Copy-on-write map: no read now, writable (torch.from_numpy needs that).
                matrix = np.load(cache_file, mmap_mode="c", allow_pickle=False).view(np.ndarray)
                log.debug("cached load of %s from %s", config, cache_file)
            except (ValueError, OSError) as err:
                log.warning("ignoring unreadable cache file %s (%s)", cache_file, err)
                matrix = None
    if matrix is None:
        matrix = _read_feature_matrix(src, config, shards)
        if cache_file is not None:
            try:
                with atomic_path(cache_file, suffix=".npy") as tmp, open(tmp, "wb") as f:
                    np.save(f, matrix, allow_pickle=False)
            except OSError as err:  # a read-only cache must not break loading
                log.warning("could not write the feature cache %s (%s)", cache_file, err)
    entry = src.manifest["configs"][config]
    rows, dim = entry["splits"]["train"]["rows"], entry.get("dim")
    if matrix.shape[0] != rows or (dim and matrix.shape[1] != dim):
        msg = (
            f"release {src.label}: {config} has shape {matrix.shape}, {MANIFEST_NAME} says "
            f"({rows}, {dim}); rebuild or download the release again"
        )
        raise DataFormatError(msg)
    result = _as_type(matrix, return_type)
    if not with_keys:
        return result
    keys: list[str] = []
    for path, _ in shards:
        rel = f"{config}/{path.name}"
        keys += _read_shard(path, src.label, rel, ["item_key"]).column("item_key").to_pylist()
    return result, keys


# ----------------------------------------------------------------------------- tables


def _split_name(split: str) -> str:
    return "validation" if split == "valid" else split


def _read_config(
    src: ReleaseSource, config: str, split: str, columns: list[str] | None
) -> pa.Table:
    parts = []
    for path, entry in src.shards(config, split):
        rel = f"{config}/{path.name}"
        _verify_shard(path, entry, src.label, rel)
        parts.append(_read_shard(path, src.label, rel, columns))
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


@_one_hub_session
def load_interactions(
    source: str | Path,
    split: str | None = None,
    *,
    revision: str | None = None,
    return_type: str = "numpy",
    endpoint: str | None = None,
    token: str | bool | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Any:
    """Load the interactions of a release.

    Args:
        source: Release folder or Hub repo id.
        split: ``train``, ``validation`` (or ``valid``), ``test``, or None for all splits in
            that order with an ``x_label`` column (MMRec's 0 / 1 / 2).
        revision: Hub revision.
        return_type: ``numpy`` or ``torch`` (dict of arrays: ``user_id``, ``item_id``,
            ``rating``, ``timestamp`` [, ``x_label``]), or ``pandas`` (a DataFrame that also
            has ``user_key`` and ``item_key``).
        endpoint: Hub endpoint.
        token: Hub token.
        timeout: Seconds (default 60): deadlines of each Hub call (see module docstring).

    Returns:
        Rows in the release's order (per split: by user_id, timestamp, item_id).

    Raises:
        UsageError: Unknown split (the message lists them).
        DownloadError: The Hub was unreachable, stalled past the deadline or did not answer
            as a Hub.
    """
    _check_return_type(return_type, (*RETURN_TYPES, "pandas"))
    src = open_release(source, revision=revision, endpoint=endpoint, token=token, timeout=timeout)
    names = src.splits("interactions")
    wanted = names if split is None else [_split_name(split)]
    for s in wanted:
        if s not in names:
            have = ", ".join(names)
            msg = f"release {src.label}: interactions have no split {split!r}; splits: {have}"
            raise UsageError(msg)
    parts = []
    for s in wanted:
        t = _read_config(src, "interactions", s, None)
        if split is None:
            t = t.append_column(
                "x_label", pa.array(np.full(t.num_rows, X_LABELS.get(s, -1), np.int8))
            )
        parts.append(t)
    table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    if return_type == "pandas":
        return table.to_pandas()
    cols = ["user_id", "item_id", "rating", "timestamp"] + (["x_label"] if split is None else [])
    out = {}
    for c in cols:
        col = table.column(c)
        if c in ("rating",):
            arr = col.to_numpy(zero_copy_only=False).astype(np.float32)  # nulls -> NaN
        elif c == "timestamp" and col.null_count:
            arr = col.fill_null(-1).to_numpy()  # unknown timestamps -> -1
        else:
            arr = col.to_numpy(zero_copy_only=False)
        out[c] = _as_type(np.ascontiguousarray(arr), return_type)
    return out


@_one_hub_session
def load_items(
    source: str | Path,
    *,
    revision: str | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Any:
    """Load the ``items`` config as a pandas DataFrame, row i = item_id i.

    ``timeout``: seconds (default 60), the deadlines of each Hub call (see module docstring).

    Raises:
        DataFormatError: item ids are not 0..N-1.
        DownloadError: The Hub was unreachable, stalled past the deadline or did not answer
            as a Hub.
    """
    src = open_release(source, revision=revision, endpoint=endpoint, token=token, timeout=timeout)
    table = _read_config(src, "items", "train", None).sort_by("item_id")
    ids = table.column("item_id").to_numpy()
    if not np.array_equal(ids, np.arange(len(ids))):
        msg = f"release {src.label}: items item_id values are not 0..{len(ids) - 1}"
        raise DataFormatError(msg)
    return table.to_pandas()


@_one_hub_session
def to_mmrec(
    source: str | Path,
    out: str | Path,
    *,
    features: str | Sequence[str] | None = None,
    layout: str = "mmrec",
    name: str | None = None,
    overwrite: bool = False,
    revision: str | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """Write a release as an MMRec (or official AlignRec) dataset folder, all or nothing.

    The writer is the one of ``alignrec-data export mmrec``
    (:func:`alignrec_data.interop.write_export`): ``out`` is checked before the release is
    read, everything is read before the first byte is written, the files go to temporaries
    and are renamed into place, and the marker ``alignrec_export.json`` lists them. A
    non-empty ``out`` without the marker is refused unless ``overwrite``; files the export
    did not write are never deleted (those a previous export listed and this one does not
    write are).

    Args:
        source: Release folder or Hub repo id.
        out: Target folder, e.g. ``MMRec/data/baby``.
        features: Feature variants of the release, e.g. ``"effnet-image,minilm-text"``
            (layout ``mmrec``) or ``"alignrec"`` (layout ``alignrec``, the default there).
        layout: ``mmrec`` or ``alignrec`` (see :mod:`alignrec_data.export_features`).
        name: MMRec dataset name (``<name>.inter``); default: the name of ``out``.
        overwrite: Write into a non-empty ``out`` that is not a previous export (its files of
            other names are kept).
        revision: Hub revision.
        endpoint: Hub endpoint.
        token: Hub token.
        timeout: Seconds (default 60): deadlines of each Hub call (see module docstring).

    Returns:
        ``{"out", "name", "files", "removed", "interactions", "features"}``.

    Raises:
        UsageError: Bad name, unknown variant, a layout that cannot hold the features, or an
            ``out`` that may not be written.
    """
    from alignrec_data.export_features import (
        FeatureInput,
        assign_files,
        check_specs,
        parse_feature_specs,
        variant_modality,
    )
    from alignrec_data.interop import check_export_dir, mmrec_frames, write_export
    from alignrec_data.paths import check_name
    from alignrec_data.prepare import users_table

    out = Path(out)
    name = check_name(name or out.name, "MMRec dataset name")
    check_export_dir(out, overwrite=overwrite, option="out")
    src = open_release(source, revision=revision, endpoint=endpoint, token=token, timeout=timeout)
    for v in parse_feature_specs(features):
        src.require(FEATURES_PREFIX + v)
    specs = check_specs(features, layout)  # the layout can hold them: checked before reading
    # Interactions in the prepared layout (split column with the prepared names).
    back = {v: k for k, v in SPLIT_NAMES.items()}
    parts = []
    for s in src.splits("interactions"):
        t = _read_config(src, "interactions", s, None)
        parts.append(t.append_column("split", pa.array([back.get(s, s)] * t.num_rows, pa.string())))
    inter = pa.concat_tables(parts)
    # Back to the prepared order (user_id, timestamp, item_id; unknown timestamps first).
    ts = inter.column("timestamp").fill_null(np.iinfo(np.int64).min).to_numpy()
    order = np.lexsort((inter.column("item_id").to_numpy(), ts, inter.column("user_id").to_numpy()))
    inter = inter.take(pa.array(order))
    items = _read_config(src, "items", "train", ["item_id", "item_key"]).sort_by("item_id")
    uid = inter.column("user_id").to_numpy()
    n_users = int(uid.max()) + 1 if len(uid) else 0
    ukeys = [str(u) for u in range(n_users)]
    for u, k in zip(uid.tolist(), inter.column("user_key").to_pylist(), strict=True):
        if k is not None:
            ukeys[u] = k
    users = users_table(ukeys, uid)
    inputs = [
        FeatureInput(
            v,
            variant_modality(v),
            load_features(
                src.folder if src.fetch is None else source,
                v,
                revision=revision,
                endpoint=endpoint,
                token=token,
                cache=False,
                timeout=timeout,
            ),
        )
        for v in specs
    ]
    written = write_export(
        out,
        mmrec_frames(inter, items, users, name),
        assign_files(inputs, layout) if inputs else {},
        layout=layout,
        meta={"tool": "alignrec_data.to_mmrec", "source": src.label, "name": name},
        overwrite=overwrite,
        option="out",
    )
    return {
        "out": str(out),
        "name": name,
        "files": written["files"],
        "removed": written["removed"],
        "interactions": inter.num_rows,
        "features": written["features"],
    }


__all__ = [
    "load_features",
    "load_interactions",
    "load_items",
    "open_release",
    "to_mmrec",
]
