"""Load a release (a local folder or a Hub dataset repo) into numpy / torch, ids checked.

Every release must carry its manifest ``alignrec_release.json`` (rows, bytes and sha256 of
every shard): a folder or Hub repo without it is refused (a
:class:`~alignrec_data.errors.DataFormatError` saying to rebuild it with ``alignrec-data
release``), since nothing else says whether its shards are the ones that were released.

- :func:`load_features`: one feature set as an (N_items, d) float32 matrix, row i = item i.
  The first load verifies every shard against ``alignrec_release.json`` (present, same size
  and sha256; a missing or corrupt shard is named in the error), reads the parquet shards,
  checks that the item ids are 0..N-1 and writes the matrix to a ``.npy`` cache
  (:mod:`alignrec_data.feature_cache`: ``cache_dir``, else ``$ALIGNREC_CACHE_DIR``, else
  ``~/.cache/alignrec``). Later loads memory-map that file copy-on-write (no copy, writable),
  so a cached load costs about what ``numpy.load`` costs; a changed shard is read again.
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
every public function) bound each Hub request and each Hub call as a whole, and a shard's
download by its size (:mod:`alignrec_data.hub_source`, the mechanism ``publish`` uses). When
the Hub cannot be reached the loaders fall back to the Hub cache alone (a warning is logged);
what the cache lacks is a :class:`~alignrec_data.errors.DownloadError` naming the repo, the
endpoint, what failed and the fix (check the network / ``endpoint``, or raise ``timeout``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.feature_cache import cache_file, read_cached, write_cache
from alignrec_data.hub import DEFAULT_TIMEOUT, check_timeout, hub_timeouts
from alignrec_data.hub_source import HubRelease
from alignrec_data.release_layout import FEATURES_PREFIX, MANIFEST_NAME
from alignrec_data.release_source import (
    X_LABELS,
    ReleaseSource,
    is_repo_id,
    local_release,
    prepared_tables,
    read_shard,
    verify_shard,
)

log = logging.getLogger(__name__)

RETURN_TYPES = ("numpy", "torch")

F = TypeVar("F", bound=Callable[..., Any])


def _one_hub_session(func: F) -> F:
    """Keep the Hub client's timeouts installed for a whole loader call on a Hub repo id.

    Each Hub call also enters :func:`~alignrec_data.hub.hub_timeouts` itself; holding it for
    the whole call lets the shard downloads share the client's connections (it is closed,
    ending any call abandoned at its deadline, when the loader returns or raises).
    """

    @functools.wraps(func)
    def wrapper(source: Any, *args: Any, **kwargs: Any) -> Any:
        if is_repo_id(source) and not Path(source).is_dir():
            with hub_timeouts(check_timeout(kwargs.get("timeout", DEFAULT_TIMEOUT), "timeout")):
                return func(source, *args, **kwargs)
        return func(source, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


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
    if Path(source).is_dir():
        return local_release(Path(source))
    if is_repo_id(source):
        hub = {"endpoint": endpoint, "token": token, "cache_dir": cache_dir, "timeout": timeout}
        return HubRelease(str(source), revision, **hub).open()
    msg = f"release source {source!r} is neither an existing folder nor a Hub repo id ORG/NAME"
    raise UsageError(msg)


# ----------------------------------------------------------------------------- features


def _read_feature_matrix(
    src: ReleaseSource, config: str, shards: list[tuple[Path, dict[str, Any]]]
) -> np.ndarray:
    """Verify and read the shards of a feature config into one (N, d) float32 matrix."""
    ids_parts, emb_parts, dim = [], [], None
    for path, entry in shards:
        rel = f"{config}/{path.name}"
        verify_shard(path, entry, src.label, rel)
        table = read_shard(path, src.label, rel, ["item_id", "embedding"])
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
    return np.require(matrix, np.float32, ["C_CONTIGUOUS", "WRITEABLE"])


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
    cached = cache_file(cache_dir, shards, variant) if cache else None
    matrix = None if cached is None else read_cached(cached)
    if matrix is not None:
        log.debug("cached load of %s from %s", config, cached)
    else:
        matrix = _read_feature_matrix(src, config, shards)
        if cached is not None:
            write_cache(cached, matrix)
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
    keys = np.empty(matrix.shape[0], dtype=object)  # row i of the matrix is item_id i
    for path, _ in shards:
        rel = f"{config}/{path.name}"
        table = read_shard(path, src.label, rel, ["item_id", "item_key"])
        keys[table.column("item_id").to_numpy()] = table.column("item_key").to_pylist()
    return result, keys.tolist()


# ----------------------------------------------------------------------------- tables


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
    wanted = names if split is None else ["validation" if split == "valid" else split]
    if any(s not in names for s in wanted):
        have = ", ".join(names)
        msg = f"release {src.label}: interactions have no split {split!r}; splits: {have}"
        raise UsageError(msg)
    parts = []
    for s in wanted:
        t = src.read("interactions", s)
        if split is None:
            t = t.append_column(
                "x_label", pa.array(np.full(t.num_rows, X_LABELS.get(s, -1), np.int8))
            )
        parts.append(t)
    table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    if return_type == "pandas":
        return table.to_pandas()
    # numpy / torch arrays: ratings float32 (NaN unknown), unknown timestamps -1
    out = {}
    for c in ["user_id", "item_id", "rating", "timestamp"] + (["x_label"] if split is None else []):
        col = table.column(c)
        if c == "rating":
            arr = col.to_numpy(zero_copy_only=False).astype(np.float32)  # nulls -> NaN
        elif c == "timestamp" and col.null_count:
            arr = col.fill_null(-1).to_numpy()
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
    table = src.read("items", "train").sort_by("item_id")
    ids = table.column("item_id").to_numpy()
    if not np.array_equal(ids, np.arange(len(ids))):
        msg = f"release {src.label}: items item_id values are not 0..{len(ids) - 1}"
        raise DataFormatError(msg)
    return table.to_pandas()


# ----------------------------------------------------------------------------- MMRec


def _modality(src: ReleaseSource, variant: str) -> str:
    """``image``, ``text`` or ``fused``: what the manifest records for a feature variant."""
    from alignrec_data.export_features import release_modality

    config = src.manifest["configs"].get(FEATURES_PREFIX + variant, {})
    return release_modality(variant, config.get("modality"))


def _feature_inputs(
    src: ReleaseSource, source: str | Path, variants: list[str], hub: dict[str, Any]
) -> list[Any]:
    """The feature sets ``variants`` of the release, uncached, as export inputs."""
    from alignrec_data.export_features import FeatureInput

    again = src.folder if src.fetch is None else source  # the features from the same place
    return [
        FeatureInput(v, _modality(src, v), load_features(again, v, cache=False, **hub))
        for v in variants
    ]


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
    from alignrec_data.export_features import assign_files, check_specs, parse_feature_specs
    from alignrec_data.interop.export import check_export_dir, mmrec_frames, write_export
    from alignrec_data.paths import check_name

    out = Path(out)
    name = check_name(name or out.name, "MMRec dataset name")
    check_export_dir(out, overwrite=overwrite, option="out")
    src = open_release(source, revision=revision, endpoint=endpoint, token=token, timeout=timeout)
    modalities = {}
    for v in parse_feature_specs(features):
        src.require(FEATURES_PREFIX + v)
        modalities[v] = _modality(src, v)
    # the layout can hold them: checked before reading
    specs = check_specs(features, layout, modalities=modalities)
    inter, items, users = prepared_tables(src)
    hub = {"revision": revision, "endpoint": endpoint, "token": token, "timeout": timeout}
    inputs = _feature_inputs(src, source, specs, hub)
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


__all__ = ["load_features", "load_interactions", "load_items", "open_release", "to_mmrec"]
