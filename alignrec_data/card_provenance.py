"""The card's provenance sections: how each feature was made, and the raw files.

Code version, params hash, seeds, encoder checkpoint sha256, model and extraction config,
and per variant its description, dimension, missing count and producer metadata.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

from alignrec_data.feature_info import FEATURE_META_KEY, LEGACY_VARIANTS
from alignrec_data.markdown import markdown_table

if TYPE_CHECKING:
    from alignrec_data.card import CardContext

# What each built-in feature variant is; other variants (and a built-in name written by another
# kind) are described from their file metadata (:func:`feature_description`).
VARIANT_DESCRIPTIONS = {
    "alignrec": (
        "AlignRec item feature: the MMEnc (BEiT-3-style multiway Transformer, stage 1, ICA) "
        "output at the first CLS position of the joint image+text input (title and brand "
        "prepended to the text); with one modality missing the encoder is run on the other alone."
    ),
    "mmenc-image": "MMEnc run on the item image alone (CLS output).",
    "mmenc-text": "MMEnc run on the item text alone (CLS output).",
    "minilm-text": (
        "all-MiniLM-L6-v2 sentence embedding (384-d, mean pooling, normalised) of the item text "
        "(MMRec's default text feature)."
    ),
    "effnet-image": (
        "EfficientNet-Lite0 (ImageNet weights) image feature: the last feature map mean-pooled "
        "to 1280-d."
    ),
}
# How each kind turns its model's outputs into one vector, per pooling.
_POOLING_TEXT = {
    "mean": "attention-masked mean of the last hidden states",
    "cls": "first-token (CLS) output",
    "pooler": "the model's pooler output",
    "projection": "projected embedding of its tower",
    "model": "the model's own pooling",
}
_KIND_TEXT = {
    "hf-text": "transformers text encoder",
    "hf-image": "transformers image encoder",
    "hf-clip": "dual-tower (CLIP-style) model",
    "sentence-transformers": "sentence-transformers model",
    "mmenc": "MMEnc checkpoint",
    "effnet": "EfficientNet-Lite0",
    "mmrec-import": "MMRec folder import",
}
_MISSING_TEXT = {
    "image": "Items without image: zero row, `missing = true`.",
    "text": "Items with empty text: zero row, `missing = true`.",
    "joint": (
        "Items lacking one input get the other tower alone and `missing = true` (zero row when "
        "both are absent)."
    ),
}


def feature_description(feat: dict[str, Any]) -> str:
    """One paragraph about a feature file from its ``alignrec.feature`` metadata."""
    model = feat.get("model") or {}
    name = model.get("id") or model.get("path")
    if name and model.get("revision"):
        name = f"{name}@{model['revision']}"
    kind = feat.get("kind") or "unknown producer"
    modality = feat.get("modality") or "unknown"
    what = "joint image+text" if modality == "joint" else modality
    parts = [f"{what.capitalize()} feature ({feat.get('dim', '?')}-d) of the "]
    parts.append(_KIND_TEXT.get(kind, f"`{kind}` producer") + (f" `{name}`" if name else ""))
    if modality == "joint" and feat.get("joint"):
        how = "sum" if feat["joint"] == "sum" else "concatenation"
        parts.append(f": the L2-normalised {how} of its L2-normalised image and text embeddings")
    elif feat.get("pooling"):
        parts.append(": " + _POOLING_TEXT.get(feat["pooling"], f"{feat['pooling']} pooling"))
    if feat.get("normalize"):
        parts.append(", L2-normalised")
    text = "".join(parts) + ". " + _MISSING_TEXT.get(modality, "")
    if without := feat.get("without"):
        text += (
            f" Mask-modality replacements: without image `{without.get('image')}`, without "
            f"text `{without.get('text')}`."
        )
    return text.strip()


def variant_description(variant: str, meta: dict[str, Any] | None) -> str:
    """The card text of a variant: the built-in text, else built from the file metadata."""
    feat = (meta or {}).get(FEATURE_META_KEY)
    legacy = LEGACY_VARIANTS.get(variant, {})
    if variant in VARIANT_DESCRIPTIONS and (not feat or feat.get("kind") == legacy.get("kind")):
        return VARIANT_DESCRIPTIONS[variant]
    if isinstance(feat, dict):
        return feature_description(feat)
    if variant.startswith("mmrec-"):
        return (
            "Imported from an MMRec folder by `alignrec-data import mmrec` (source file and "
            "sha256 in the metadata below)."
        )
    return "Feature set produced by the pipeline (see metadata)."


def yaml_block(obj: Any) -> str:
    """A fenced YAML block (sorted keys)."""
    return "```yaml\n" + yaml.safe_dump(obj, sort_keys=True, allow_unicode=True).rstrip() + "\n```"


def param_seeds(sections: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every ``*seed*`` key of the params sections, as ``{"section.key": value}``."""
    out: dict[str, Any] = {}
    for k, v in sections.items():
        if "seed" in str(k).lower() and not isinstance(v, dict | list):
            out[f"{prefix}{k}"] = v
        if isinstance(v, dict):
            out |= param_seeds(v, f"{prefix}{k}.")
    return out


def features_section(ctx: CardContext) -> str:
    """How the features were made: code, params hash, seeds, checkpoint, each variant."""
    feats = [c for c in ctx.configs if c.kind == "features"]
    commit = ctx.code.get("git_commit") or "unknown (not built from a git checkout)"
    seeds = sorted(param_seeds(ctx.params_sections).items())
    lines = [
        f"- Code: alignrec {ctx.code.get('version')}, git commit `{commit}`.",
        f"- Params hash: `{ctx.params_hash}` (sha256 of the canonical JSON of the params "
        f"sections {', '.join(ctx.params_sections) or '(none: packaged defaults)'}).",
        f"- Seeds: {', '.join(f'`{k}` = {v}' for k, v in seeds) or '—'}.",
    ]
    if ctx.checkpoint_sha256:
        lines.append(f"- Encoder checkpoint `models/mmenc.pt`: sha256 `{ctx.checkpoint_sha256}`.")
    if not feats:  # the template says why
        return "\n".join(lines)
    model_cfg = {
        k: ctx.params_sections[k] for k in ("pretrain", "extract") if k in ctx.params_sections
    }
    if model_cfg:
        lines += [
            "",
            "Model and extraction configuration (params.yaml):",
            "",
            yaml_block(model_cfg),
        ]
    for c in feats:
        v, meta = c.variant, c.extra.get("file_meta")
        lines += ["", f"### `features-{v}`", "", variant_description(v, meta), ""]
        lines.append(
            f"- Dimension {c.dim}, {c.rows():,} items, {c.extra.get('missing', 0):,} with "
            "`missing = true` (input absent)."
        )
        encoder = v == "alignrec" or v.startswith("mmenc-")  # computed with the MMEnc checkpoint
        if encoder and ctx.checkpoint_sha256:
            lines.append(f"- Encoder checkpoint sha256: `{ctx.checkpoint_sha256}`.")
        elif encoder:
            lines.append("- Encoder checkpoint: not found when the release was built.")
        if meta:
            lines += ["- Producer metadata (from the feature file):", "", yaml_block(meta)]
    return "\n".join(lines)


def raw_files_table(ctx: CardContext) -> str:
    """The raw files (``raw/alignrec.lock.json``) with their sha256 and source URL ("" if none)."""
    rows = [
        [f"`{name}`", e.get("role"), e.get("size"), f"`{e.get('sha256')}`", e.get("url")]
        for name, e in ctx.raw_files.items()
    ]
    return markdown_table(["file", "role", "bytes", "sha256", "source URL"], rows) if rows else ""
