"""One ``extract.variants`` entry: a built-in name or a mapping that describes an encoder.

An entry is either a string naming a built-in (:data:`BUILTINS`: ``alignrec``, ``mmenc-image``,
``mmenc-text``, ``minilm-text``, ``effnet-image``) or a mapping with the keys of
:class:`VariantEntry` (docs/features.md, "Adding a feature variant")::

    - {name: bert-cls, kind: hf-text, model: /models/bert, pooling: cls, normalize: true}
    - {name: clip, kind: hf-clip, model: openai/clip-vit-base-patch32, revision: 3d74acf9a28c}

Single-output kinds (``hf-text``, ``hf-image``, ``sentence-transformers``, ``effnet``) write
``features/<name>.parquet``; dual-tower kinds (``hf-clip``, ``mmenc``) write the joint feature
as ``<name>`` and the towers as ``<image_name>`` / ``<text_name>`` (default ``<name>-image`` /
``<name>-text``), restricted to ``outputs``.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any

from alignrec_data.config import check_ranges, from_dict
from alignrec_data.errors import UsageError
from alignrec_data.paths import check_name

#: Per kind: the outputs it can write (``image``, ``text``, ``joint``), its pooling choices (the
#: first being the default, "" in an entry) and its encoder class (``module.Class`` of this
#: package, imported when an entry of the kind is built).
_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "hf-text": (("text",), ("mean", "cls"), "hf.HFText"),
    "hf-image": (("image",), ("pooler", "mean", "cls"), "hf.HFImage"),
    "hf-clip": (("image", "text", "joint"), ("projection",), "hf.HFClip"),
    "sentence-transformers": (("text",), ("model",), "offline.SentenceTransformerEncoder"),
    "mmenc": (("image", "text", "joint"), ("cls",), "mmenc.MMEncEncoder"),
    "effnet": (("image",), ("mean",), "offline.EffNetEncoder"),
}
KIND_OUTPUTS = {kind: outputs for kind, (outputs, _, _) in _KINDS.items()}
POOLINGS = {kind: poolings for kind, (_, poolings, _) in _KINDS.items()}
KINDS: tuple[str, ...] = tuple(_KINDS)
JOINTS: tuple[str, ...] = ("sum", "concat")
#: Kinds whose model must be given (the others default to an offline model: see ``model``).
NEEDS_MODEL: tuple[str, ...] = ("hf-text", "hf-image", "hf-clip")


@dataclass(frozen=True)
class VariantEntry:
    """One encoder of ``extract.variants`` and the feature files it writes.

    Attributes:
        name: Feature variant (file stem); the joint output of dual-tower kinds.
        kind: One of :data:`KINDS`.
        model: A local folder (absolute, ``./``-relative or with two or more ``/``), or a Hub id
            ``org/name`` read from the huggingface_hub cache only (needs ``revision``). Empty:
            ``mmenc`` -> ``<dataset>/models/mmenc.pt``, ``sentence-transformers`` -> the
            offline all-MiniLM-L6-v2, ``effnet`` -> the offline EfficientNet-Lite0 weights.
        revision: Hub revision (commit hash or tag) of a Hub ``model``; required with one.
        pooling: Token outputs -> one vector (:data:`POOLINGS`; "" = the kind's default).
        normalize: L2-normalise every written row (hf-text, hf-image, hf-clip towers).
        outputs: Dual-tower kinds: which of ``image``, ``text``, ``joint`` to write (() = all).
        joint: hf-clip joint vector: ``sum`` (L2-normalised sum of the L2-normalised towers) or
            ``concat`` ([image, text] of the L2-normalised towers).
        image_name: File stem of the image tower ("" = ``<name>-image``).
        text_name: File stem of the text tower ("" = ``<name>-text``).
        batch_size: Items per forward pass (0 = ``extract.batch_size``).
        max_length: Text tokens kept (0 = the model's limit).
        image_size: Side the stored images are decoded at before the model's processor
            (0 = the processor's input size; effnet: ``extract.effnet_image_size``; mmenc:
            the checkpoint's).
    """

    name: str
    kind: str
    model: str = ""
    revision: str = ""
    pooling: str = ""
    normalize: bool = False
    outputs: tuple[str, ...] = ()
    joint: str = "sum"
    image_name: str = ""
    text_name: str = ""
    batch_size: int = 0
    max_length: int = 0
    image_size: int = 0

    def __post_init__(self) -> None:
        """Reject entries extraction cannot run."""
        check_name(self.name, "feature variant")
        possible = KIND_OUTPUTS.get(self.kind, ())
        check_ranges(
            self,
            f"extract.variants[{self.name}]",
            {
                "kind": (self.kind in KINDS, f"one of {', '.join(KINDS)}"),
                "model": (
                    bool(self.model) or self.kind not in NEEDS_MODEL,
                    "a local folder or a Hub id (with revision)",
                ),
                "pooling": (
                    not self.pooling or self.pooling in POOLINGS.get(self.kind, ()),
                    f"one of {', '.join(POOLINGS.get(self.kind, ()))} for kind {self.kind}",
                ),
                "outputs": (
                    set(self.outputs) <= set(possible)
                    and len(set(self.outputs)) == len(self.outputs),
                    f"distinct values among {', '.join(possible)}",
                ),
                "joint": (self.joint in JOINTS, f"one of {', '.join(JOINTS)}"),
                "batch_size": (self.batch_size >= 0, ">= 0 (0: extract.batch_size)"),
                "max_length": (self.max_length >= 0, ">= 0 (0: the model's limit)"),
                "image_size": (self.image_size == 0 or self.image_size >= 16, "0 or >= 16 pixels"),
            },
        )
        for stem in (self.image_name, self.text_name):
            if stem:
                check_name(stem, "feature variant")

    @property
    def pooling_used(self) -> str:
        """The pooling actually applied (the kind's default when ``pooling`` is empty)."""
        return self.pooling or POOLINGS[self.kind][0]

    @property
    def wanted(self) -> tuple[str, ...]:
        """The outputs this entry writes (``image`` / ``text`` / ``joint``)."""
        return self.outputs or KIND_OUTPUTS[self.kind]

    @property
    def encoder_class(self) -> type:
        """The encoder class of the kind (from the kind table; its module is imported here)."""
        module, name = _KINDS[self.kind][2].split(".")
        return getattr(importlib.import_module(f"alignrec_model.extractors.{module}"), name)

    def variant(self, output: str) -> str:
        """The file stem of ``output``."""
        if len(KIND_OUTPUTS[self.kind]) == 1 or output == "joint":
            return self.name
        stem = self.image_name if output == "image" else self.text_name
        return stem or f"{self.name}-{output}"

    def variants(self) -> dict[str, str]:
        """``{output: variant}`` of every written output."""
        return {o: self.variant(o) for o in self.wanted}


_MMENC = {
    "name": "alignrec",
    "kind": "mmenc",
    "image_name": "mmenc-image",
    "text_name": "mmenc-text",
}
#: Built-in entries by name (the names ``extract.variants`` accepted before entries existed).
BUILTINS: dict[str, VariantEntry] = {
    "alignrec": VariantEntry(**_MMENC, outputs=("joint",)),
    "mmenc-image": VariantEntry(**_MMENC, outputs=("image",)),
    "mmenc-text": VariantEntry(**_MMENC, outputs=("text",)),
    "minilm-text": VariantEntry(name="minilm-text", kind="sentence-transformers"),
    "effnet-image": VariantEntry(name="effnet-image", kind="effnet"),
}


def parse_entry(value: Any) -> VariantEntry:
    """A built-in name or a mapping -> :class:`VariantEntry`.

    Raises:
        UsageError: An unknown built-in name, unknown keys or values out of range.
    """
    if isinstance(value, VariantEntry):
        return value
    if isinstance(value, str):
        if value not in BUILTINS:
            msg = (
                f"extract.variants: unknown built-in variant {value!r}; built-ins are "
                f"{', '.join(BUILTINS)}, or write a mapping {{name, kind, model, ...}} "
                "(docs/features.md)"
            )
            raise UsageError(msg)
        return BUILTINS[value]
    if not isinstance(value, dict) or "name" not in value or "kind" not in value:
        msg = (
            f"extract.variants: an entry must be a built-in name or a mapping with at least "
            f"name and kind; found {value!r}"
        )
        raise UsageError(msg)
    return from_dict(VariantEntry, value, f"extract.variants[{value.get('name')}]")


def resolve_entries(values: tuple[Any, ...]) -> list[VariantEntry]:
    """Parse entries and merge those that differ only in ``outputs`` (one model run each).

    Raises:
        UsageError: A bad entry, or two entries writing the same feature file.
    """
    merged: dict[tuple, VariantEntry] = {}
    for entry in (parse_entry(v) for v in values):
        key = dataclasses.astuple(dataclasses.replace(entry, outputs=()))  # all but outputs
        if key in merged:
            both = set(merged[key].wanted) | set(entry.wanted)
            order = KIND_OUTPUTS[entry.kind]
            entry = dataclasses.replace(entry, outputs=tuple(o for o in order if o in both))
        merged[key] = entry
    seen: dict[str, str] = {}
    for entry in merged.values():
        for variant in entry.variants().values():
            if variant in seen:
                msg = (
                    f"extract.variants: two entries write features/{variant}.parquet "
                    f"({seen[variant]} and {entry.name}); give them different names"
                )
                raise UsageError(msg)
            seen[variant] = entry.name
    return list(merged.values())
