"""The feature files of the MMRec / AlignRec layouts (``export mmrec --features``).

MMRec reads ``image_feat.npy`` (N_items x d_img) and ``text_feat.npy`` (N_items x d_txt),
float32, row i = itemID i (the order of ``i_id_mapping.csv``). The official AlignRec code
(a fork of MMRec) puts its single fused feature in ``image_feat.npy`` and ships no text file.
This module reads and checks the features and decides which file each goes to;
:func:`alignrec_data.interop.write_export` writes them next to the ``.inter`` file and the id
maps:

- ``layout="mmrec"``: at most one image and one text feature set, e.g.
  ``effnet-image,minilm-text``. The fused ``alignrec`` feature has no place in this layout.
- ``layout="alignrec"``: exactly one feature set (default ``alignrec``) written as
  ``image_feat.npy``; a ``text_feat.npy`` a previous export wrote is removed so that the
  AlignRec code cannot pick it up, and one no export wrote is refused.

A feature spec is a variant name (``<data-dir>/<dataset>/features/<variant>.parquet``; its
``item_key`` order must equal the prepared items') or ``MODALITY=PATH.npy`` for a matrix from
elsewhere (``image=``, ``text=`` or ``fused=``; row i must be item i). A ``.npy`` header is
checked against the file size before any data is read (a forged header asking for terabytes
is an error, not an allocation); files are read with ``allow_pickle=False``: a pickled file is
refused, never unpickled (unpickling runs code). Matrices with NaN or infinite values are
refused.
"""

from __future__ import annotations

import io
import logging
import math
import pickletools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.feature_info import feature_info, legacy_info
from alignrec_data.paths import check_name

log = logging.getLogger(__name__)

LAYOUTS = ("mmrec", "alignrec")
MODALITIES = ("image", "text", "fused")
FEATURE_FILES = {"image": "image_feat.npy", "text": "text_feat.npy"}
# What a variant's features describe comes from the feature file's metadata
# (:func:`alignrec_data.feature_info.feature_info`: ``joint`` is exported as ``fused``); files
# without metadata fall back to the name (``alignrec_data.feature_info.LEGACY_VARIANTS``, then
# the suffix ``-image`` / ``-text``). The ``mmrec-*`` variants come from ``import mmrec``
# (image_feat.npy, text_feat.npy); another ``<stem>.npy`` of an MMRec folder becomes
# ``mmrec-<stem>``, of unknown modality: fused.
EXPORT_MODALITY = {"image": "image", "text": "text", "joint": "fused"}


@dataclass(frozen=True)
class FeatureInput:
    """One feature matrix to export.

    Attributes:
        source: The variant name or the ``.npy`` path it came from.
        modality: ``image``, ``text`` or ``fused``.
        matrix: (N_items, d) float32, row i = item i.
    """

    source: str
    modality: str
    matrix: np.ndarray


def variant_modality(variant: str, features_dir: str | Path | None = None) -> str:
    """``image``, ``text`` or ``fused`` for a variant.

    Args:
        variant: The feature variant.
        features_dir: ``<data-dir>/<dataset>/features``: the modality is read from
            ``<variant>.parquet``'s metadata when the file exists; otherwise from the name.
    """
    path = Path(features_dir) / f"{variant}.parquet" if features_dir is not None else None
    info = feature_info(path) if path is not None and path.is_file() else legacy_info(variant)
    return EXPORT_MODALITY.get(info.modality or "joint", "fused")


def release_modality(variant: str, modality: str | None) -> str:
    """``image``, ``text`` or ``fused`` for a released variant.

    ``modality``: what the release manifest records for ``features-<variant>`` (image, text,
    joint); releases written before it was recorded fall back to the name.
    """
    return EXPORT_MODALITY.get(modality or legacy_info(variant).modality or "joint", "fused")


def spec_modality(spec: str, features_dir: str | Path | None = None) -> str:
    """The modality of a feature spec: ``MODALITY`` of ``MODALITY=PATH``, else of the variant.

    ``features_dir``: where the variant's file (and its metadata) is, if known.

    Raises:
        UsageError: ``MODALITY`` is not one of :data:`MODALITIES`.
    """
    modality = (
        spec.partition("=")[0].strip() if "=" in spec else variant_modality(spec, features_dir)
    )
    if modality not in MODALITIES:
        msg = (
            f"feature spec {spec!r}: modality {modality!r} is not one of "
            f"{', '.join(MODALITIES)} (write e.g. image=/path/feat.npy)"
        )
        raise UsageError(msg)
    return modality


def parse_feature_specs(value: str | Sequence[str] | None) -> list[str]:
    """Split ``"a,b"`` (or a list of such strings) into specs, dropping blanks."""
    parts = [value] if isinstance(value, str) else list(value or [])
    return [s.strip() for p in parts for s in str(p).split(",") if s.strip()]


_NPY_MAGIC = b"\x93NUMPY"
_NPY_MAX_HEADER = 10_000  # bytes; numpy's own limit for a header it reads safely
_SNIFF_BYTES = 64 * 1024
_NPY_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _looks_like_pickle(head: bytes) -> bool:
    """Whether the first bytes of a file are a pickle stream (decoded, never run).

    Protocols 2-5 start with PROTO (0x80) and the protocol number; older, text protocols are
    recognised when the bytes decode as opcodes up to a STOP.
    """
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    try:
        return any(op.name == "STOP" for op, _arg, _pos in pickletools.genops(io.BytesIO(head)))
    except Exception:  # noqa: BLE001 (any decoding failure means: not a pickle)
        return False


def _pickle_error(path: Path) -> DataFormatError:
    msg = (
        f"{path} holds pickled Python objects (an object array or a pickle file); "
        "alignrec never unpickles (allow_pickle=False), because unpickling runs "
        "arbitrary code. Save a numeric array instead: "
        "np.save(path, np.asarray(x, dtype=np.float32))"
    )
    return DataFormatError(msg)


def npy_header(path: str | Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """Read and check the header of a ``.npy`` file against the file size, loading no data.

    Returns:
        ``(shape, dtype, data_offset)`` of a 2-D integer or float matrix whose data fills the
        rest of the file exactly.

    Raises:
        DataFormatError: Not a ``.npy`` file (random bytes, a ``.npz`` archive), a pickle or an
            object array, a malformed header, not a 2-D numeric matrix, or a header that asks
            for more (or fewer) bytes than the file holds (truncated or forged).
    """
    path = Path(path)
    size = path.stat().st_size
    save_hint = "save it with np.save(path, np.asarray(x, dtype=np.float32))"
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
        if not head.startswith(_NPY_MAGIC):
            if head.startswith(b"PK\x03\x04"):
                msg = f"{path} is a .npz archive, not a .npy file; {save_hint}"
                raise DataFormatError(msg)
            if _looks_like_pickle(head):
                raise _pickle_error(path)
            found = "it is empty" if not head else "it does not start with the .npy magic bytes"
            msg = f"{path} is not a .npy file ({found}); {save_hint}"
            raise DataFormatError(msg)
        f.seek(0)
        try:
            version = np.lib.format.read_magic(f)
            read_header = _NPY_HEADER_READERS.get(version)
            if read_header is None:
                msg = f"unsupported .npy format version {version[0]}.{version[1]}"
                raise ValueError(msg)
            # The memory order is not needed: np.load handles either.
            shape, _fortran, dtype = read_header(f, max_header_size=_NPY_MAX_HEADER)
        except (ValueError, SyntaxError, TypeError, OverflowError, EOFError) as err:
            msg = f"{path} has a malformed .npy header ({err}); {save_hint}"
            raise DataFormatError(msg) from err
        offset = f.tell()
    if dtype.hasobject:
        raise _pickle_error(path)
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        msg = f"{path}: expected an integer or float matrix, found dtype {dtype}; {save_hint}"
        raise DataFormatError(msg)
    if len(shape) != 2:
        msg = f"{path}: expected a 2-D numeric matrix (items x dim), found shape {shape}"
        raise DataFormatError(msg)
    want = math.prod(shape) * dtype.itemsize  # Python ints: a forged shape cannot overflow
    have = size - offset
    if want != have:
        msg = (
            f"{path}: its header describes a {shape[0]:,} x {shape[1]:,} {dtype} matrix "
            f"({want:,} bytes) but the file holds {have:,} bytes of data: it is truncated or "
            f"not a valid .npy file; {save_hint}"
        )
        raise DataFormatError(msg)
    return tuple(shape), dtype, offset


def load_npy(path: str | Path) -> np.ndarray:
    """Read a 2-D numeric ``.npy`` matrix safely, as float32.

    The header is checked against the file size first (:func:`npy_header`), so a forged
    header asking for terabytes fails before anything is allocated; the data is read with
    ``allow_pickle=False``.

    Raises:
        UsageError: The file does not exist.
        DataFormatError: The file holds pickled objects, is not a ``.npy`` file, is not 2-D
            numeric, does not match its header, holds NaN / infinite values, or values beyond
            the float32 range.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"feature file {path} does not exist"
        raise UsageError(msg)
    shape, _dtype, _offset = npy_header(path)
    if shape[1] == 0:
        msg = f"{path}: the matrix has no columns (shape {shape})"
        raise DataFormatError(msg)
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        msg = f"{path} is not a readable .npy file ({err})"
        raise DataFormatError(msg) from err
    check_finite(arr, str(path))
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        row = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
        msg = (
            f"{path}: values beyond the float32 range (first in row {row}, dtype "
            f"{arr.dtype}); features are stored as float32: rescale them"
        )
        raise DataFormatError(msg)
    return out


def check_finite(matrix: np.ndarray, source: str) -> None:
    """Refuse an (items, dim) matrix holding NaN or infinite values (row named in the message).

    Raises:
        DataFormatError: A value is not finite.
    """
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        msg = (
            f"{source}: the matrix holds NaN or infinite values ({len(bad)} row(s), first row "
            f"{int(bad[0])}); recompute the features"
        )
        raise DataFormatError(msg)


def _read_variant(features_dir: Path, variant: str, item_keys: Sequence[str]) -> np.ndarray:
    from alignrec_data.features import read_features

    path = features_dir / f"{check_name(variant, 'feature variant')}.parquet"
    if not path.is_file():
        have = sorted(p.stem for p in features_dir.glob("*.parquet"))
        msg = (
            f"feature variant {variant!r} has no file {path} (variants there: "
            f"{', '.join(have) or 'none'}); run `alignrec-data extract` or pick one of those"
        )
        raise UsageError(msg)
    keys, matrix, _missing = read_features(path)
    if len(keys) != len(item_keys) or list(keys) != list(item_keys):
        msg = (
            f"feature file {path} ({len(keys)} items) does not list the items of "
            f"prepared/items.parquet ({len(item_keys)} items) in the same order; the features "
            "come from another prepare run: re-run `alignrec-data extract`"
        )
        raise DataFormatError(msg)
    check_finite(matrix, f"feature file {path}")
    return matrix


def resolve_features(
    specs: Sequence[str], features_dir: str | Path, item_keys: Sequence[str]
) -> list[FeatureInput]:
    """Read every feature spec (variant name or ``MODALITY=PATH.npy``).

    Args:
        specs: The specs (see module docstring).
        features_dir: ``<data-dir>/<dataset>/features``.
        item_keys: Raw item keys in item_id order (row i must be item i).

    Raises:
        UsageError: Unknown variant, bad spec.
        DataFormatError: A matrix with the wrong number of rows, pickled, non-finite.
    """
    out = []
    for spec in specs:
        if "=" in spec:
            modality = spec_modality(spec)
            path = spec.partition("=")[2].strip()
            rows = npy_header(path)[0][0] if Path(path).is_file() else len(item_keys)
            if rows != len(item_keys):  # checked on the header: a wrong matrix is not read
                msg = (
                    f"{path}: {rows} rows, but the dataset has {len(item_keys)} items "
                    "(row i must be itemID i)"
                )
                raise DataFormatError(msg)
            out.append(FeatureInput(path, modality, load_npy(path)))
        else:
            matrix = _read_variant(Path(features_dir), spec, item_keys)
            out.append(FeatureInput(spec, variant_modality(spec, features_dir), matrix))
    return out


def assign_files(inputs: Sequence[FeatureInput], layout: str) -> dict[str, FeatureInput]:
    """Decide which file each feature goes to: ``{"image_feat.npy": input, ...}``.

    Raises:
        UsageError: Unknown layout or a combination that layout cannot hold.
    """
    if layout not in LAYOUTS:
        msg = f"layout {layout!r} is not one of {', '.join(LAYOUTS)}"
        raise UsageError(msg)
    if layout == "alignrec":
        if len(inputs) != 1:
            found = ", ".join(i.source for i in inputs) or "none"
            msg = (
                "the AlignRec layout holds exactly one (fused) feature set in image_feat.npy; "
                f"found {found}: pass --features alignrec"
            )
            raise UsageError(msg)
        only = inputs[0]
        if only.modality != "fused":
            warning = "%s is a %s feature, written as image_feat.npy of the AlignRec layout"
            log.warning(warning, only.source, only.modality)
        return {FEATURE_FILES["image"]: only}
    files: dict[str, FeatureInput] = {}
    for inp in inputs:
        if inp.modality == "fused":
            msg = (
                f"{inp.source} is a fused image+text feature: the MMRec layout has one image and "
                "one text file; use --layout alignrec to write it as image_feat.npy"
            )
            raise UsageError(msg)
        name = FEATURE_FILES[inp.modality]
        if name in files:
            msg = (
                f"two {inp.modality} features given ({files[name].source}, {inp.source}); "
                f"the MMRec layout has one {name}"
            )
            raise UsageError(msg)
        files[name] = inp
    return files


def check_specs(
    features: str | Sequence[str] | None,
    layout: str = "mmrec",
    features_dir: str | Path | None = None,
    modalities: dict[str, str] | None = None,
) -> list[str]:
    """Parse feature specs and check that ``layout`` can hold them, reading no feature rows.

    A variant's modality is ``modalities[variant]`` (image, text or fused) when given (a
    release's manifest), else with ``features_dir`` from its file's metadata (the schema only),
    else from its name.

    Call it before writing anything else of the export, so a bad combination fails early.

    Returns:
        The specs (``["alignrec"]`` for the AlignRec layout when none are given).

    Raises:
        UsageError: Unknown layout, bad spec, or a combination the layout cannot hold.
    """
    specs = parse_feature_specs(features) or (["alignrec"] if layout == "alignrec" else [])
    known = modalities or {}
    empty = np.empty((0, 0), np.float32)
    stubs = [FeatureInput(s, known.get(s) or spec_modality(s, features_dir), empty) for s in specs]
    assign_files(stubs, layout)
    return specs


def write_npy_to(path: str | Path, matrix: np.ndarray) -> None:
    """Write a C-contiguous float32 ``.npy`` to ``path`` as it is (never pickled)."""
    arr = np.ascontiguousarray(matrix, dtype=np.float32)
    with open(path, "wb") as f:
        np.save(f, arr, allow_pickle=False)
