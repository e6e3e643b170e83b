"""What a feature file is: its modality, producer and provenance, read from the file itself.

A producer records ``alignrec.feature`` in the parquet schema metadata of
``features/<variant>.parquet`` (:func:`feature_metadata` builds the value)::

    {"variant": "clip-joint", "kind": "hf-clip", "modality": "joint", "dim": 512,
     "model": {"id": "openai/clip-vit-base-patch32", "revision": "...", "sha256": "..."},
     "pooling": "pooler", "without": {"image": "clip-text", "text": "clip-image"}}

``modality`` is ``image``, ``text`` or ``joint``; ``without`` (joint features only) names, per
masked modality, the variant that holds the item features computed without it (what the
mask-modality evaluation substitutes). The card, the MMRec export, the intermediate evaluations
and the leaderboard read :func:`feature_info`; files written before the metadata existed (and
MMRec imports) fall back to :data:`LEGACY_VARIANTS` and to the name suffix (``-image``,
``-text``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from alignrec_data.errors import DataFormatError
from alignrec_data.features import open_feature_file

#: Schema metadata key of the feature description.
FEATURE_META_KEY = "alignrec.feature"
#: What a feature can describe.
MODALITIES: tuple[str, ...] = ("image", "text", "joint")

#: Variants named before the metadata existed: modality and, for joint ones, their replacements.
LEGACY_VARIANTS: dict[str, dict[str, Any]] = {
    "alignrec": {
        "kind": "mmenc",
        "modality": "joint",
        "without": {"image": "mmenc-text", "text": "mmenc-image"},
    },
    "mmenc-image": {"kind": "mmenc", "modality": "image"},
    "mmenc-text": {"kind": "mmenc", "modality": "text"},
    "minilm-text": {"kind": "sentence-transformers", "modality": "text"},
    "effnet-image": {"kind": "effnet", "modality": "image"},
    "mmrec-image": {"kind": "mmrec-import", "modality": "image"},
    "mmrec-text": {"kind": "mmrec-import", "modality": "text"},
}


@dataclass(frozen=True)
class FeatureInfo:
    """The description of one feature file.

    Attributes:
        variant: The variant (file stem).
        modality: ``image``, ``text``, ``joint``, or None when nothing says (treated as joint
            without replacements by the consumers that need one).
        kind: The producer kind (``hf-text``, ``mmenc``, ...), or None.
        dim: Embedding width (0 when only the name was known).
        model: ``{"id", "revision", "sha256"}`` of the encoder weights, or {}.
        pooling: How token outputs became one vector, or None.
        without: Joint features: masked modality -> variant computed without it.
        extra: Every other key the producer recorded.
    """

    variant: str
    modality: str | None
    kind: str | None = None
    dim: int = 0
    model: dict[str, Any] = field(default_factory=dict)
    pooling: str | None = None
    without: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (what :func:`feature_metadata` stores)."""
        out: dict[str, Any] = {"variant": self.variant, "modality": self.modality}
        named = {"kind": self.kind, "pooling": self.pooling}  # left out when None
        sized = {"dim": self.dim, "model": dict(self.model), "without": dict(self.without)}
        out |= {k: v for k, v in named.items() if v is not None}
        out |= {k: v for k, v in sized.items() if v}  # left out when 0 or empty
        return out | self.extra


def feature_metadata(
    variant: str,
    modality: str,
    kind: str,
    dim: int,
    *,
    model: dict[str, Any] | None = None,
    pooling: str | None = None,
    without: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The ``metadata`` argument of :func:`alignrec_data.features.write_features`.

    Raises:
        ValueError: ``modality`` is not one of :data:`MODALITIES`.
    """
    if modality not in MODALITIES:
        msg = f"feature modality {modality!r} is not one of {', '.join(MODALITIES)}"
        raise ValueError(msg)
    info = FeatureInfo(
        variant, modality, kind, int(dim), model or {}, pooling, without or {}, extra
    )
    return {FEATURE_META_KEY: info.as_dict()}


def legacy_info(variant: str, dim: int = 0) -> FeatureInfo:
    """The description of a variant from its name alone (files without metadata)."""
    known = LEGACY_VARIANTS.get(variant)
    if known is not None:
        without = dict(known.get("without", {}))
        return FeatureInfo(variant, known["modality"], known.get("kind"), dim, without=without)
    modality = next((m for m in MODALITIES if variant.endswith(f"-{m}")), None)
    return FeatureInfo(variant, modality, dim=dim)


def feature_info(path: str | Path) -> FeatureInfo:
    """Describe ``features/<variant>.parquet`` (reads the schema only, not the rows).

    The description stored in the schema metadata, else :func:`legacy_info`.

    Raises:
        UsageError: The file does not exist.
        DataFormatError: Not a parquet file, or the metadata is present but not a JSON object
            with a valid modality.
    """
    path = Path(path)
    schema = open_feature_file(path, pq.read_schema)
    emb = schema.field("embedding").type if "embedding" in schema.names else None
    dim = emb.list_size if emb is not None and pa.types.is_fixed_size_list(emb) else 0
    raw = (schema.metadata or {}).get(FEATURE_META_KEY.encode())
    if raw is None:
        return legacy_info(path.stem, dim)
    try:
        meta = json.loads(raw)
    except ValueError as err:
        msg = f"feature file {path}: {FEATURE_META_KEY} metadata is not JSON ({err})"
        raise DataFormatError(msg) from err
    found = meta.get("modality") if isinstance(meta, dict) else meta
    if not isinstance(meta, dict) or found not in MODALITIES:
        msg = (
            f"feature file {path}: {FEATURE_META_KEY} metadata needs a modality, one of "
            f"{', '.join(MODALITIES)}; found {found!r}"
        )
        raise DataFormatError(msg)
    known = {"variant", "modality", "kind", "dim", "model", "pooling", "without"}
    return FeatureInfo(
        path.stem,
        meta["modality"],
        meta.get("kind"),
        int(meta.get("dim") or dim),
        dict(meta.get("model") or {}),
        meta.get("pooling"),
        {str(k): str(v) for k, v in (meta.get("without") or {}).items()},
        {k: v for k, v in meta.items() if k not in known},
    )
