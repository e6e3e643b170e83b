"""The card's provenance sections: how each feature was made, and the raw files.

Code version, params hash, seeds, encoder checkpoint sha256, model and extraction config,
and per variant its description, dimension, missing count and producer metadata.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

from alignrec_data.markdown import markdown_table

if TYPE_CHECKING:
    from alignrec_data.card import CardContext

# What each known feature variant is (variants not listed are described by their file metadata).
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
ENCODER_VARIANTS = ("alignrec", "mmenc-")


def uses_encoder(variant: str) -> bool:
    """True for variants computed with the MMEnc checkpoint (``alignrec``, ``mmenc-*``)."""
    return variant == "alignrec" or variant.startswith("mmenc-")


def yaml_block(obj: Any) -> str:
    """A fenced YAML block (sorted keys)."""
    return "```yaml\n" + yaml.safe_dump(obj, sort_keys=True, allow_unicode=True).rstrip() + "\n```"


def param_seeds(sections: dict[str, Any]) -> dict[str, Any]:
    """Every ``*seed*`` key of the params sections, as ``{"section.key": value}``."""
    out: dict[str, Any] = {}

    def walk(obj: Any, prefix: str) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                if "seed" in str(k).lower() and not isinstance(v, dict | list):
                    out[f"{prefix}{k}"] = v
                walk(v, f"{prefix}{k}.")

    walk(sections, "")
    return out


def features_section(ctx: CardContext) -> str:
    """How the features were made: code, params hash, seeds, checkpoint, each variant."""
    feats = [c for c in ctx.configs if c.kind == "features"]
    code = ctx.code
    commit = code.get("git_commit") or "unknown (not built from a git checkout)"
    lines = [
        f"- Code: alignrec {code.get('version')}, git commit `{commit}`.",
        f"- Params hash: `{ctx.params_hash}` (sha256 of the canonical JSON of the params "
        f"sections {', '.join(ctx.params_sections) or '(none: packaged defaults)'}).",
    ]
    seeds = param_seeds(ctx.params_sections)
    lines.append(
        "- Seeds: " + (", ".join(f"`{k}` = {v}" for k, v in sorted(seeds.items())) or "—") + "."
    )
    if ctx.checkpoint_sha256:
        lines.append(f"- Encoder checkpoint `models/mmenc.pt`: sha256 `{ctx.checkpoint_sha256}`.")
    if not feats:
        lines += [
            "",
            "This release has no feature configs: no feature files existed when it was built "
            "(run `alignrec-data extract` and rebuild the release to add them).",
        ]
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
        v = c.variant
        desc = VARIANT_DESCRIPTIONS.get(v) or (
            "Imported from an MMRec folder by `alignrec-data import mmrec` (source file and "
            "sha256 in the metadata below)."
            if v.startswith("mmrec-")
            else "Feature set produced by the pipeline (see metadata)."
        )
        lines += [
            "",
            f"### `features-{v}`",
            "",
            desc,
            "",
            f"- Dimension {c.dim}, {c.rows():,} items, {c.extra.get('missing', 0):,} with "
            "`missing = true` (input absent).",
        ]
        if c.extra.get("checkpoint_sha256"):
            lines.append(f"- Encoder checkpoint sha256: `{c.extra['checkpoint_sha256']}`.")
        elif uses_encoder(v):
            lines.append("- Encoder checkpoint: not found when the release was built.")
        meta = c.extra.get("file_meta")
        if meta:
            lines += ["- Producer metadata (from the feature file):", "", yaml_block(meta)]
    return "\n".join(lines)


def raw_files_section(ctx: CardContext) -> str:
    """The raw files (``raw/alignrec.lock.json``) with their sha256 and source URL."""
    if not ctx.raw_files:
        return (
            "No raw files are recorded for this dataset (no `raw/alignrec.lock.json`: the "
            "interactions were imported, not downloaded by alignrec)."
        )
    rows = [
        [f"`{name}`", e.get("role"), e.get("size"), f"`{e.get('sha256')}`", e.get("url")]
        for name, e in ctx.raw_files.items()
    ]
    return (
        markdown_table(["file", "role", "bytes", "sha256", "source URL"], rows)
        + "\n\nThe raw files are not redistributed here; `alignrec-data download` fetches and "
        "verifies them against these hashes."
    )
