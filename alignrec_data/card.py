"""The dataset card (``README.md``) of a release folder.

:func:`render_card` fills ``alignrec_data/templates/dataset_card.md`` (``string.Template``
placeholders, one per section) from a :class:`CardContext` that :mod:`alignrec_data.release`
collects. The YAML front matter holds ``configs:`` (one entry per config with its parquet
shards), ``license``, ``pretty_name``, ``task_categories``, ``tags`` and ``size_categories``.
The body says what the dataset is, how each feature was made (model config, encoder
checkpoint sha256, code version, params hash, seeds), the raw files' sha256 and source URLs,
statistics, the evaluation tables from ``metrics/*.json``, the pipeline report, how to load it
and its licence and citation. The card never contains a Hub token: the rendered text is
scrubbed of any token huggingface_hub would use, as a last line of defence.

Nothing in the card depends on the time of the build, so rebuilding from the same inputs gives
the same bytes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import resources
from string import Template
from typing import Any

import yaml

TEMPLATE = ("templates", "dataset_card.md")
PLACEHOLDER_REPO = "ORG/NAME"

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

ALIGNREC_BIBTEX = """@inproceedings{liu2024alignrec,
  title     = {AlignRec: Aligning and Training in Multimodal Recommendations},
  author    = {Liu, Yifan and Zhang, Kangning and Ren, Xiangyuan and Huang, Yanhua and
               Jin, Jiarui and Qin, Yingjie and Su, Ruilong and Xu, Ruiwen and Yu, Yong and
               Zhang, Weinan},
  booktitle = {Proceedings of the 33rd ACM International Conference on Information and
               Knowledge Management (CIKM)},
  year      = {2024},
  note      = {arXiv:2403.12384}
}"""

HEADLINE_METRICS = ("recall", "ndcg", "precision", "map")
EVAL_PROTOCOLS = (
    "zero-shot",
    "zeroshot",
    "item-cf",
    "itemcf",
    "mask-modality",
    "mask-image",
    "mask-text",
    "maskmodality",
)


def uses_encoder(variant: str) -> bool:
    """True for variants computed with the MMEnc checkpoint (``alignrec``, ``mmenc-*``)."""
    return variant == "alignrec" or variant.startswith("mmenc-")


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

    @property
    def repo_id(self) -> str:
        """The repo id shown in the loading lines."""
        return self.release_config.get("repo_id") or PLACEHOLDER_REPO


# ----------------------------------------------------------------------------- formatting


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1e4 else f"{v:,.1f}"
    if v is None:
        return "—"
    return str(v).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _flatten(doc: Any, prefix: str = "") -> dict[str, float | int]:
    """Numeric leaves of a JSON document as ``{"a.b": value}`` (lists are skipped)."""
    out: dict[str, float | int] = {}
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    elif isinstance(doc, int | float) and not isinstance(doc, bool):
        out[prefix[:-1]] = doc
    return out


def _metric_order(key: str) -> tuple[int, int, str]:
    name, _, k = key.rpartition("@")
    base = name.rsplit(".", 1)[-1].lower()
    rank = HEADLINE_METRICS.index(base) if base in HEADLINE_METRICS else len(HEADLINE_METRICS)
    return (int(k) if k.isdigit() else 10**6, rank, key)


def _yaml_block(obj: Any) -> str:
    return "```yaml\n" + yaml.safe_dump(obj, sort_keys=True, allow_unicode=True).rstrip() + "\n```"


# ----------------------------------------------------------------------------- sections


def _front_matter(ctx: CardContext) -> str:
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
    sizes = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")]
    sizes += [(1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")]
    size = next((label for limit, label in sizes if n < limit), "10M<n<100M")
    default = next((c.name for c in ctx.configs if c.name == "features-alignrec"), "interactions")
    configs = []
    for c in ctx.configs:
        entry: dict[str, Any] = {"config_name": c.name}
        if c.name == default:
            entry["default"] = True
        entry["data_files"] = [{"split": sp, "path": f"{c.name}/{sp}-*.parquet"} for sp in c.splits]
        configs.append(entry)
    doc = {
        "pretty_name": f"alignrec {ctx.dataset}: items, interactions and multimodal item features",
        **{k: v for k, v in licence.items() if v is not None},
        "task_categories": ["feature-extraction"],
        "tags": ["recommendation", "multimodal", "embeddings", "alignrec", "mmrec", "amazon"],
        "size_categories": [size],
        "configs": configs,
    }
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1000).rstrip()


def _summary(ctx: CardContext) -> str:
    spec = ctx.spec
    if spec is not None:
        desc = spec.description.strip().rstrip(".")
        source = f"{desc} (Amazon {spec.release} release, category {spec.category})"
        if getattr(spec, "synthetic", False):
            source = desc
    else:
        source = (
            "imported data whose source is unknown to alignrec (the dataset id is not in the "
            "registry)"
        )
    variants = [c.variant for c in ctx.configs if c.kind == "features"]
    lines = [
        f"Items, user-item interactions and multimodal item features of **{ctx.dataset}**: "
        f"{source}. Built by alignrec following AlignRec "
        "(Liu et al., CIKM 2024) so that the features drop unchanged into MMRec-style "
        "recommenders.",
        "",
        f"- {ctx.n_users:,} users, {ctx.n_items:,} items, "
        f"{sum(c.rows() for c in ctx.configs if c.kind == 'interactions'):,} interactions.",
        "- Feature sets: " + (", ".join(f"`{v}`" for v in variants) if variants else "none") + ".",
    ]
    imported = _imported_from(ctx.stats)
    if imported:
        lines.append(f"- Imported from: {imported}.")
    if not variants:
        lines.append(
            "- **No item features are included**: this release holds the items and "
            "interactions only (no feature files existed when it was built)."
        )
    for note in ctx.notes:
        if "no feature files" not in note:
            lines.append(f"- Note: {note}.")
    return "\n".join(lines) + "\n"


def _imported_from(stats: dict[str, Any] | None) -> str | None:
    if not stats:
        return None
    for key in ("imported_from", "import_source", "source"):
        v = stats.get(key)
        if isinstance(v, str) and v and v != "raw":  # "raw": prepared from the raw files
            files = stats.get("source_files")
            if isinstance(files, list) and files:
                return f"{v} layout ({', '.join(str(f) for f in files)})"
            return v
        if isinstance(v, dict):
            return ", ".join(f"{k}: {x}" for k, x in sorted(v.items()) if isinstance(x, str))
    return None


def _synthetic_note(ctx: CardContext) -> str:
    if ctx.spec is not None and getattr(ctx.spec, "synthetic", False):
        return (
            "\n> **Synthetic data.** This is alignrec's default dataset (`amazon-mini`), "
            "generated by the package to exercise the pipeline end to end. It contains no real "
            "users or products, and its metrics say nothing about real recommenders.\n"
        )
    return ""


def _configs_table(ctx: CardContext) -> str:
    rows = []
    for c in ctx.configs:
        for sp, shards in c.splits.items():
            cols = ", ".join(
                f"{col} (float32 × {c.dim})" if col == "embedding" else col for col in c.columns
            )
            rows.append([f"`{c.name}`", sp, sum(s.rows for s in shards), len(shards), cols])
    shard_mb = ctx.release_config.get("shard_size_mb")
    return (
        _table(["config", "split", "rows", "shards", "columns"], rows)
        + f"\n\nShards are parquet files `<config>/<split>-0000i-of-0000n.parquet` of at most "
        f"{shard_mb} MB of Arrow data each; `alignrec_release.json` lists every shard with its "
        "rows, size and sha256. Row i of every `features-*` config is `item_id` i; "
        "`missing` marks items that lacked the input the feature needs."
    )


def _how_to_load(ctx: CardContext) -> str:
    repo = ctx.repo_id
    variants = [c.variant for c in ctx.configs if c.kind == "features"]
    main = "alignrec" if "alignrec" in variants else (variants[0] if variants else None)
    lines = [
        "With 🤗 `datasets` (no loading script; pin a revision — a commit sha — to reproduce "
        "exactly):",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        f'REPO, REVISION = "{repo}", "main"  # pin a commit sha for exact reproducibility',
        'items = load_dataset(REPO, "items", revision=REVISION, split="train")',
        'interactions = load_dataset(REPO, "interactions", revision=REVISION)'
        "  # train / validation / test",
    ]
    if main:
        lines += [
            f'feats = load_dataset(REPO, "features-{main}", revision=REVISION, split="train")',
            'X = feats.with_format("torch")[:]["embedding"]  # (n_items, d), row i = item i',
        ]
    lines += [
        "```",
        "",
        "A local copy of this folder loads the same way: "
        '`load_dataset("path/to/release", "items", split="train")`.',
        "",
        "With alignrec's loaders (local folder or Hub id; the id order is checked and cached "
        "loads are memory-mapped):",
        "",
        "```python",
        "from alignrec_data import load_features, load_interactions, load_items, to_mmrec",
        "",
    ]
    if main:
        lines.append(f'X = load_features("{repo}", "{main}", revision="main", return_type="torch")')
    lines += [
        f'train = load_interactions("{repo}", split="train", revision="main")'
        "  # dict of numpy arrays",
        f'items = load_items("{repo}", revision="main")  # pandas DataFrame, row i = item i',
        "```",
        "",
        "Into the MMRec layout (`<name>.inter`, `image_feat.npy`, `text_feat.npy`, id maps) or "
        "the official AlignRec layout (the fused feature as `image_feat.npy`, no text file):",
        "",
        "```bash",
    ]
    image = next((v for v in variants if v.endswith("-image")), None)
    text = next((v for v in variants if v.endswith("-text")), None)
    ds = ctx.dataset
    if image and text:
        lines.append(f"alignrec-data export mmrec {ds} --features {image},{text} --out data/{ds}")
    if "alignrec" in variants:
        lines.append(
            f"alignrec-data export mmrec {ds} --layout alignrec --features alignrec --out data/{ds}"
        )
    if not (image and text) and "alignrec" not in variants:
        lines.append(f"alignrec-data export mmrec {ds} --out data/{ds}  # interactions only")
    lines += ["```", ""]
    pyline = (
        f'to_mmrec("{repo}", "data/{ds}", features=["alignrec"], layout="alignrec")'
        if "alignrec" in variants
        else f'to_mmrec("{repo}", "data/{ds}")'
    )
    lines.append(f"or, from this repository directly, `{pyline}`.")
    return "\n".join(lines)


def _statistics(ctx: CardContext) -> str:
    inter = next((c for c in ctx.configs if c.kind == "interactions"), None)
    n = inter.rows() if inter else 0
    density = n / (ctx.n_users * ctx.n_items) if ctx.n_users and ctx.n_items else 0.0
    rows: list[list[Any]] = [
        ["users", ctx.n_users],
        ["items", ctx.n_items],
        ["interactions", n],
    ]
    if inter:
        rows += [[f"interactions ({sp})", inter.rows(sp)] for sp in inter.splits]
    rows.append(["density", f"{density:.6f}"])
    out = _table(["", "value"], rows)
    if ctx.stats:
        flat = _flatten(ctx.stats)
        if flat:
            items = sorted(flat.items())[:60]
            out += "\n\nFrom `prepared/stats.json` (counts before and after each step):\n\n"
            out += _table(["key", "value"], [[f"`{k}`", v] for k, v in items])
    return out


def _seeds(sections: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def walk(obj: Any, prefix: str) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                if "seed" in str(k).lower() and not isinstance(v, dict | list):
                    out[f"{prefix}{k}"] = v
                walk(v, f"{prefix}{k}.")

    walk(sections, "")
    return out


def _features(ctx: CardContext) -> str:
    feats = [c for c in ctx.configs if c.kind == "features"]
    code = ctx.code
    commit = code.get("git_commit") or "unknown (not built from a git checkout)"
    lines = [
        f"- Code: alignrec {code.get('version')}, git commit `{commit}`.",
        f"- Params hash: `{ctx.params_hash}` (sha256 of the canonical JSON of the params "
        f"sections {', '.join(ctx.params_sections) or '(none: packaged defaults)'}).",
    ]
    seeds = _seeds(ctx.params_sections)
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
            _yaml_block(model_cfg),
        ]
    for c in feats:
        v = c.variant
        desc = VARIANT_DESCRIPTIONS.get(v, "Feature set produced by the pipeline (see metadata).")
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
            lines += ["- Producer metadata (from the feature file):", "", _yaml_block(meta)]
    return "\n".join(lines)


def _raw_files(ctx: CardContext) -> str:
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
        _table(["file", "role", "bytes", "sha256", "source URL"], rows)
        + "\n\nThe raw files are not redistributed here; `alignrec-data download` fetches and "
        "verifies them against these hashes."
    )


def _train_tables(metrics: dict[str, Any]) -> list[str]:
    runs = []
    for stem, doc in sorted(metrics.items()):
        if not stem.startswith("train-") or not isinstance(doc, dict):
            continue
        model = str(doc.get("model") or stem[len("train-") :].split("-")[0])
        variant = doc.get("variant") or doc.get("features")
        if variant is None:
            rest = stem[len("train-") :]
            variant = rest[len(model) + 1 :] if rest.startswith(model + "-") else "—"
        runs.append((model, str(variant), doc))
    if not runs:
        return []
    head_keys: list[tuple[str, str]] = []
    for split in ("valid", "test"):
        keys = {k for _, _, d in runs for k in _flatten(d.get(split, {}))}
        at20 = sorted((k for k in keys if k.endswith("@20")), key=_metric_order)
        head_keys += [(split, k) for k in at20]
    rows = [
        [model, f"`{variant}`", d.get("best_epoch")]
        + [_flatten(d.get(sp, {})).get(k) for sp, k in head_keys]
        for model, variant, d in runs
    ]
    header = ["model", "features", "best epoch"] + [f"{sp} {k}" for sp, k in head_keys]
    out = [
        "### Recommenders (full ranking, train items excluded; epoch chosen by valid Recall@20)",
        "",
        _table(header, rows),
    ]
    test_keys = sorted(
        {k for _, _, d in runs for k in _flatten(d.get("test", {}))}, key=_metric_order
    )
    if len(test_keys) > len(head_keys) // 2:
        rows = [
            [model, f"`{variant}`"] + [_flatten(d.get("test", {})).get(k) for k in test_keys]
            for model, variant, d in runs
        ]
        out += ["", "All test metrics:", "", _table(["model", "features", *test_keys], rows)]
    return out


def _eval_name(stem: str, doc: Any) -> tuple[str, str]:
    rest = stem[len("eval-") :]
    if isinstance(doc, dict) and isinstance(doc.get("protocol"), str):
        proto = doc["protocol"]
        variant = doc.get("variant") or rest[len(proto) + 1 :] or "—"
        return proto, str(variant)
    for proto in EVAL_PROTOCOLS:
        if rest.startswith(proto + "-"):
            return proto, rest[len(proto) + 1 :]
    proto, _, variant = rest.partition("-")
    return proto, variant or "—"


def _eval_tables(metrics: dict[str, Any]) -> list[str]:
    by_proto: dict[str, list[tuple[str, dict[str, float | int]]]] = {}
    for stem, doc in sorted(metrics.items()):
        if not stem.startswith("eval-"):
            continue
        proto, variant = _eval_name(stem, doc)
        body = (
            doc.get("test") if isinstance(doc, dict) and isinstance(doc.get("test"), dict) else doc
        )
        flat = _flatten(body)
        if flat:
            by_proto.setdefault(proto, []).append((variant, flat))
    out = []
    titles = {
        "zero-shot": "Zero-shot (user = mean of its train items' features; cosine ranking)",
        "zeroshot": "Zero-shot (user = mean of its train items' features; cosine ranking)",
        "item-cf": "Item-CF (ItemKNN on the features, cosine with shrink 10, top-10 neighbours)",
        "itemcf": "Item-CF (ItemKNN on the features, cosine with shrink 10, top-10 neighbours)",
        "mask-modality": "Mask modality (50% of items lose one modality; drop vs no masking)",
    }
    order = {p: i for i, p in enumerate(EVAL_PROTOCOLS)}
    for proto, runs in sorted(by_proto.items(), key=lambda kv: (order.get(kv[0], 99), kv[0])):
        keys = sorted({k for _, f in runs for k in f}, key=_metric_order)
        if len(keys) > 10:
            keys = [k for k in keys if "@20" in k] or keys[:10]
        rows = [[f"`{v}`"] + [f.get(k) for k in keys] for v, f in runs]
        out += ["", f"### {titles.get(proto, proto)}", "", _table(["features", *keys], rows)]
    return out


def _evaluation(ctx: CardContext) -> str:
    out = _train_tables(ctx.metrics) + _eval_tables(ctx.metrics)
    pre = ctx.metrics.get("pretrain")
    if isinstance(pre, dict):
        flat = _flatten(pre)
        if flat:
            out += ["", "### Encoder pretraining (MMEnc)", ""]
            out.append(
                _table(["key", "value"], [[f"`{k}`", v] for k, v in sorted(flat.items())[:30]])
            )
    if not out:
        return "No metrics were available when this release was built (`metrics/*.json` absent)."
    return "\n".join(out).lstrip("\n")


def _report(ctx: CardContext) -> str:
    if not ctx.report:
        return ""
    body = re.sub(
        r"^(#{1,4}) ", lambda m: "#" * min(len(m.group(1)) + 2, 6) + " ", ctx.report, flags=re.M
    )
    return "\n## Pipeline report\n\n" + body.strip() + "\n"


def _licence(ctx: CardContext) -> str:
    spec = ctx.spec
    lines = []
    if spec is None:
        lines.append(
            f"**Source unknown / imported.** `{ctx.dataset}` is not in alignrec's registry, so "
            "the terms of the original data are not known to alignrec: check them before "
            "using or redistributing this dataset."
        )
    else:
        lines += [f"**Data:** {spec.license}", ""]
        if spec.homepage:
            lines += [f"Homepage: {spec.homepage}", ""]
        if spec.citation:
            lines += ["Cite the data as:", "", "```text", spec.citation.strip(), "```", ""]
    lines += [
        "",
        "**Method:** the features follow AlignRec; cite it as:",
        "",
        "```bibtex",
        ALIGNREC_BIBTEX,
        "```",
        "",
        "The alignrec code that built this release is Apache-2.0.",
    ]
    return "\n".join(lines).strip()


def _secrets() -> list[str]:
    """Hub tokens huggingface_hub could use here (never to appear in a card)."""
    found = [os.environ.get(k) for k in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")]
    try:
        from huggingface_hub import get_token

        found.append(get_token())
    except Exception:  # noqa: BLE001 - the scrub must never break a build
        pass
    return [t for t in found if t and len(t) >= 8]


def scrub(text: str, secrets: list[str] | None = None) -> str:
    """Replace any Hub token in ``text`` by ``***``."""
    for s in secrets if secrets is not None else _secrets():
        text = text.replace(s, "***")
    return text


def render_card(ctx: CardContext) -> str:
    """Render the dataset card (front matter + body) for ``ctx``."""
    template = Template(resources.files("alignrec_data").joinpath(*TEMPLATE).read_text("utf-8"))
    text = template.substitute(
        front_matter=_front_matter(ctx),
        title=f"alignrec {ctx.dataset}",
        summary=_summary(ctx),
        synthetic_note=_synthetic_note(ctx),
        configs_table=_configs_table(ctx),
        how_to_load=_how_to_load(ctx),
        statistics=_statistics(ctx),
        features=_features(ctx),
        raw_files=_raw_files(ctx),
        evaluation=_evaluation(ctx),
        report=_report(ctx),
        licence=_licence(ctx),
    )
    return scrub(text)


def front_matter(text: str) -> dict[str, Any]:
    """Parse the YAML front matter of a card (``{}`` when there is none)."""
    m = re.match(r"^---\s*\n(.*?)\n---\s*\n", text, flags=re.S)
    if not m:
        return {}
    doc = yaml.safe_load(m.group(1))
    return doc if isinstance(doc, dict) else {}
