"""The dataset card (``README.md``) of a release folder.

:func:`render_card` renders ``alignrec_data/templates/dataset_card.md`` (a Jinja template
holding the fixed text, the summary, loading lines and licence; one variable per computed
section) with :meth:`huggingface_hub.DatasetCard.from_template`, from a
:class:`CardContext` that :mod:`alignrec_data.release` collects. The YAML front matter
(:func:`card_metadata`) holds ``configs:`` (one entry per config with its parquet shards),
``license``, ``pretty_name``, ``task_categories``, ``tags`` and ``size_categories``.
The body says what the dataset is, how each feature was made (model config, encoder
checkpoint sha256, code version, params hash, seeds) and the raw files' sha256 and source
URLs (:mod:`alignrec_data.card_provenance`), statistics and the evaluation tables from
``metrics/*.json`` (:mod:`alignrec_data.card_metrics`), which features to use (the feature
leaderboard, ``metrics/leaderboard.json``), the pipeline report, how to load it
and its licence and citation. The card never contains a Hub token: the rendered text is
scrubbed of any token huggingface_hub would use, as a last line of defence.

Nothing in the card depends on the time of the build, so rebuilding from the same inputs gives
the same bytes.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from alignrec_data.card_metrics import evaluation_section, statistics_section
from alignrec_data.card_provenance import features_section, raw_files_table
from alignrec_data.markdown import markdown_table

TEMPLATE = ("templates", "dataset_card.md")
PLACEHOLDER_REPO = "ORG/NAME"


@dataclass
class CardContext:
    """Everything the card shows (collected by :func:`alignrec_data.release.build_release`).

    Attributes:
        dataset: Dataset id.
        spec: Registry entry (``DatasetSpec``) or None for an imported dataset.
        configs: The release configs (``release.ConfigInfo``).
        n_users: Users (max user_id + 1).
        n_items: Items.
        stats: ``prepared/stats.json`` or None.
        raw_files: Raw file name -> lock entry (url, size, sha256...).
        metrics: ``metrics/*.json`` by file stem.
        report: The pipeline report (Markdown, figure links rewritten) or None.
        params_sections: Params sections that made the data (hashed).
        params_hash: sha256 of their canonical JSON.
        release_config: The ``release:`` params.
        code: ``{"version": ..., "git_commit": ...}``.
        checkpoint_sha256: sha256 of ``models/mmenc.pt`` or None.
        notes: Things missing from the release.
    """

    dataset: str
    spec: Any
    configs: list[Any]
    n_users: int
    n_items: int
    stats: dict[str, Any] | None
    raw_files: dict[str, dict[str, Any]]
    metrics: dict[str, Any]
    report: str | None
    params_sections: dict[str, Any]
    params_hash: str
    release_config: dict[str, Any]
    code: dict[str, Any]
    checkpoint_sha256: str | None
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- sections


def card_metadata(ctx: CardContext) -> dict[str, Any]:
    """The card's YAML metadata (Hub ``DatasetCardData`` fields, in the order written)."""
    spec = ctx.spec
    if spec is not None and getattr(spec, "synthetic", False):
        licence: dict[str, Any] = {"license": "apache-2.0"}
    elif spec is not None:
        licence = {
            "license": "other",
            "license_name": f"amazon-reviews-{spec.release}-research-use",
            "license_link": spec.homepage or None,
        }
    else:
        licence = {"license": "unknown"}
    n = sum(c.rows() for c in ctx.configs if c.kind == "interactions")
    sizes = ("n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M")  # below 10**3, 10**4...
    size = next((label for e, label in enumerate(sizes, 3) if n < 10**e), "10M<n<100M")
    default = next((c.name for c in ctx.configs if c.name == "features-alignrec"), "interactions")
    configs = []
    for c in ctx.configs:
        entry: dict[str, Any] = {"config_name": c.name}
        if c.name == default:
            entry["default"] = True
        entry["data_files"] = [{"split": sp, "path": f"{c.name}/{sp}-*.parquet"} for sp in c.splits]
        configs.append(entry)
    return {
        "pretty_name": f"alignrec {ctx.dataset}: items, interactions and multimodal item features",
        **{k: v for k, v in licence.items() if v is not None},
        "task_categories": ["feature-extraction"],
        "tags": ["recommendation", "multimodal", "embeddings", "alignrec", "mmrec", "amazon"],
        "size_categories": [size],
        "configs": configs,
    }


def _source(spec: Any) -> str:
    """What the data is, for the card's first sentence."""
    if spec is None:
        return (
            "imported data whose source is unknown to alignrec (the dataset id is not in the "
            "registry)"
        )
    source = spec.description.strip().rstrip(".")
    if not getattr(spec, "synthetic", False):
        source += f" (Amazon {spec.release} release, category {spec.category})"
    return source


def _imported_from(stats: dict[str, Any] | None) -> str | None:
    for key in ("imported_from", "import_source", "source"):
        v = (stats or {}).get(key)
        if isinstance(v, str) and v and v != "raw":  # "raw": prepared from the raw files
            files = stats.get("source_files")
            if isinstance(files, list) and files:
                return f"{v} layout ({', '.join(str(f) for f in files)})"
            return v
        if isinstance(v, dict):
            return ", ".join(f"{k}: {x}" for k, x in sorted(v.items()) if isinstance(x, str))
    return None


def _configs_table(ctx: CardContext) -> str:
    rows = []
    for c in ctx.configs:
        for sp, shards in c.splits.items():
            cols = ", ".join(
                f"{col} (float32 × {c.dim})" if col == "embedding" else col for col in c.columns
            )
            rows.append([f"`{c.name}`", sp, sum(s.rows for s in shards), len(shards), cols])
    return markdown_table(["config", "split", "rows", "shards", "columns"], rows)


def _loading(ctx: CardContext) -> dict[str, Any]:
    """The released variants and what the loading lines name: repo id, main variant, exports."""
    variants = [c.variant for c in ctx.configs if c.kind == "features"]
    image = next((v for v in variants if v.endswith("-image")), None)
    text = next((v for v in variants if v.endswith("-text")), None)
    exports = [f"--features {image},{text}"] if image and text else []
    if "alignrec" in variants:
        exports.append("--layout alignrec --features alignrec")
    return {
        "repo": ctx.release_config.get("repo_id") or PLACEHOLDER_REPO,
        "main": "alignrec" if "alignrec" in variants else (variants[0] if variants else None),
        "exports": exports,
        "variants": variants,
    }


def _report(ctx: CardContext) -> str:
    if not ctx.report:
        return ""
    body = re.sub(r"^(#{1,4}) ", r"##\1 ", ctx.report, flags=re.M)  # headings two levels down
    return "\n## Pipeline report\n\n" + body.strip() + "\n"


def _which_features(ctx: CardContext) -> str:
    """The feature leaderboard table (``metrics/leaderboard.json``, `alignrec-data leaderboard`)."""
    doc = ctx.metrics.get("leaderboard")
    if not isinstance(doc, dict) or not doc.get("markdown"):
        return ""
    intro = (
        f"Every feature variant of this dataset x each protocol that applies to it, seeds "
        f"{doc.get('seeds')}, sorted by mean test Recall@20 (best epoch by valid). **Bold**: "
        "LightGCN on ids only, the line to beat; pop is the floor. The 'use for' column names "
        "the best variant per modality and per consumer."
    )
    return f"\n## Which features to use\n\n{intro}\n\n{doc['markdown'].strip()}\n"


def _secrets() -> list[str]:
    """Hub tokens huggingface_hub could use here (never to appear in a card)."""
    found = [os.environ.get(k) for k in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")]
    with contextlib.suppress(Exception):  # the scrub must never break a build
        from huggingface_hub import get_token

        found.append(get_token())
    return [t for t in found if t and len(t) >= 8]


def scrub(text: str, secrets: list[str] | None = None) -> str:
    """Replace any Hub token in ``text`` by ``***``."""
    for s in secrets if secrets is not None else _secrets():
        text = text.replace(s, "***")
    return text


def render_card(ctx: CardContext) -> str:
    """Render the dataset card (front matter + body) for ``ctx``.

    ``DatasetCard.from_template`` renders the Jinja template and parses the result back
    (metadata the Hub could not read fails here). The front matter is written as dumped here
    (one line per value): ``DatasetCard.content`` would re-dump it folded at 80 columns,
    which changes the card of datasets with long ids.
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    metadata = card_metadata(ctx)
    interactions = sum(c.rows() for c in ctx.configs if c.kind == "interactions")
    front = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True, width=1000).rstrip()
    template = resources.files("alignrec_data").joinpath(*TEMPLATE).read_text("utf-8")
    card = DatasetCard.from_template(
        DatasetCardData(**metadata),
        template_str=template,
        front_matter=front,
        dataset=ctx.dataset,
        spec=ctx.spec,
        source=_source(ctx.spec),
        counts=(ctx.n_users, ctx.n_items, interactions),
        imported=_imported_from(ctx.stats),
        notes=[note for note in ctx.notes if "no feature files" not in note],
        configs_table=_configs_table(ctx),
        shard_mb=ctx.release_config.get("shard_size_mb"),
        **_loading(ctx),
        statistics=statistics_section(ctx),
        features=features_section(ctx),
        raw_files=raw_files_table(ctx),
        evaluation=evaluation_section(ctx.metrics),
        which_features=_which_features(ctx),
        report=_report(ctx),
    )
    return scrub(f"---\n{front}\n---\n{card.text}")


def front_matter(text: str) -> dict[str, Any]:
    """Parse the YAML front matter of a card (``{}`` when there is none)."""
    m = re.match(r"^---\s*\n(.*?)\n---\s*\n", text, flags=re.S)
    if not m:
        return {}
    doc = yaml.safe_load(m.group(1))
    return doc if isinstance(doc, dict) else {}
