"""The card's numeric sections: statistics and the evaluation tables from ``metrics/*.json``.

``train-<model>[-<variant>].json``: best epoch and @20 metrics of valid and test, every test
metric and the settings each run used (its ``settings``); ``eval-<protocol>-<variant>.json``:
zero-shot, item-CF and mask-modality;
``pretrain.json``: the encoder pretraining summary.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from alignrec_data.markdown import markdown_table

if TYPE_CHECKING:
    from alignrec_data.card import CardContext

HEADLINE_METRICS = ("recall", "ndcg", "precision", "map")
# The train settings shown per run (from ``settings`` of train-<run>.json); the full
# settings follow in a details block. ``alignrec.*`` only when an AlignRec run is present.
SETTINGS_SHOWN = ("lr", "epochs", "patience", "batch_size", "seed", "valid_metric")
SETTINGS_SHOWN_ALIGNREC = ("alignrec.cl_weight", "alignrec.sim_weight")
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
EVAL_TITLES = {
    "zero-shot": "Zero-shot (user = mean of its train items' features; cosine ranking)",
    "item-cf": "Item-CF (ItemKNN on the features, cosine with shrink 10, top-10 neighbours)",
    "mask-modality": "Mask modality (50% of items lose one modality; drop vs no masking)",
}
EVAL_TITLES |= {"zeroshot": EVAL_TITLES["zero-shot"], "itemcf": EVAL_TITLES["item-cf"]}


def flatten(doc: Any, prefix: str = "") -> dict[str, float | int]:
    """Numeric leaves of a JSON document as ``{"a.b": value}`` (lists are skipped)."""
    out: dict[str, float | int] = {}
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(doc, int | float) and not isinstance(doc, bool):
        out[prefix[:-1]] = doc
    return out


def _metric_order(key: str) -> tuple[int, int, str]:
    name, _, k = key.rpartition("@")
    base = name.rsplit(".", 1)[-1].lower()
    rank = HEADLINE_METRICS.index(base) if base in HEADLINE_METRICS else len(HEADLINE_METRICS)
    return (int(k) if k.isdigit() else 10**6, rank, key)


def statistics_section(ctx: CardContext) -> str:
    """Counts per split, density and ``prepared/stats.json``."""
    interactions = next((c for c in ctx.configs if c.kind == "interactions"), None)
    n = interactions.rows() if interactions else 0
    density = n / (ctx.n_users * ctx.n_items) if ctx.n_users and ctx.n_items else 0.0
    rows: list[list[Any]] = [["users", ctx.n_users], ["items", ctx.n_items], ["interactions", n]]
    if interactions:
        rows += [[f"interactions ({sp})", interactions.rows(sp)] for sp in interactions.splits]
    rows.append(["density", f"{density:.6f}"])
    out = markdown_table(["", "value"], rows)
    table = _leaves_table(ctx.stats, 60)
    if table:
        out += "\n\nFrom `prepared/stats.json` (counts before and after each step):\n\n" + table
    return out


def _leaves_table(doc: Any, limit: int) -> str | None:
    """The first ``limit`` numeric leaves of a JSON object, sorted by key (None without any)."""
    leaves = sorted(flatten(doc).items())[:limit] if isinstance(doc, dict) else []
    rows = [[f"`{k}`", v] for k, v in leaves]
    return markdown_table(["key", "value"], rows) if rows else None


def evaluation_section(metrics: dict[str, Any]) -> str:
    """The recommender, feature-evaluation and pretraining tables (``metrics/*.json``), or ""."""
    out = _train_tables(metrics) + _eval_tables(metrics)
    table = _leaves_table(metrics.get("pretrain"), 30)
    if table:
        out += ["", "### Encoder pretraining (MMEnc)", "", table]
    return "\n".join(out).lstrip("\n")


def _train_runs(metrics: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(model, variant, doc) of every ``train-*`` metrics file."""
    runs = []
    for stem, doc in sorted(metrics.items()):
        if not stem.startswith("train-") or not isinstance(doc, dict):
            continue
        rest = stem.removeprefix("train-")
        model = str(doc.get("model") or rest.split("-")[0])
        variant = doc.get("variant") or doc.get("features")
        if variant is None:
            variant = rest[len(model) + 1 :] if rest.startswith(model + "-") else "—"
        runs.append((model, str(variant), doc))
    return runs


def _train_tables(metrics: dict[str, Any]) -> list[str]:
    runs = _train_runs(metrics)
    if not runs:
        return []
    flat = [{sp: flatten(d.get(sp, {})) for sp in ("valid", "test")} for _, _, d in runs]
    head_keys = [
        (sp, k)
        for sp in ("valid", "test")
        for k in sorted({k for f in flat for k in f[sp] if k.endswith("@20")}, key=_metric_order)
    ]
    rows = [
        [model, f"`{variant}`", d.get("best_epoch")] + [f[sp].get(k) for sp, k in head_keys]
        for (model, variant, d), f in zip(runs, flat, strict=True)
    ]
    header = ["model", "features", "best epoch"] + [f"{sp} {k}" for sp, k in head_keys]
    out = [
        "### Recommenders (full ranking, train items excluded; epoch chosen by valid Recall@20)",
        "",
        markdown_table(header, rows),
    ]
    test_keys = sorted({k for f in flat for k in f["test"]}, key=_metric_order)
    if len(test_keys) > len(head_keys) // 2:
        rows = [
            [model, f"`{variant}`"] + [f["test"].get(k) for k in test_keys]
            for (model, variant, _), f in zip(runs, flat, strict=True)
        ]
        table = markdown_table(["model", "features", *test_keys], rows)
        out += ["", "All test metrics:", "", table]
    return out + _settings_table(runs)


def _settings_table(runs: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    """The settings each run used (``settings`` of its metrics file), short table + details."""
    used = [(m, v, d["settings"]) for m, v, d in runs if isinstance(d.get("settings"), dict)]
    if not used:
        return []
    keys = list(SETTINGS_SHOWN)
    if any(m == "alignrec" for m, _, _ in used):
        keys += SETTINGS_SHOWN_ALIGNREC
    rows = [
        [m, f"`{v}`"] + [_setting(s, k) if m == "alignrec" or "." not in k else "—" for k in keys]
        for m, v, s in used
    ]
    header = ["model", "features", *[("max epochs" if k == "epochs" else k) for k in keys]]
    out = [
        "",
        "Settings each run used (`settings` in `metrics/train-RUN.json`; the params section with "
        "the dataset's overrides and command-line options applied):",
        "",
        markdown_table(header, rows),
        "",
        "<details><summary>All train settings per run</summary>",
        "",
    ]
    for m, v, s in used:
        name = m if v == "—" else f"{m} `{v}`"
        out += [f"{name}:", "", "```json", json.dumps(s, sort_keys=True), "```", ""]
    return [*out, "</details>"]


def _setting(settings: dict[str, Any], key: str) -> str | None:
    """``settings["a"]["b"]`` for ``"a.b"`` as written in params (None when absent)."""
    value: Any = settings
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None or isinstance(value, bool):
        return None if value is None else str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)  # 1e-05, not 0.0000


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
        test = doc.get("test") if isinstance(doc, dict) else None
        flat = flatten(test if isinstance(test, dict) else doc)
        if flat:
            by_proto.setdefault(proto, []).append((variant, flat))
    out = []
    order = {p: i for i, p in enumerate(EVAL_PROTOCOLS)}
    for proto, runs in sorted(by_proto.items(), key=lambda kv: (order.get(kv[0], 99), kv[0])):
        keys = sorted({k for _, f in runs for k in f}, key=_metric_order)
        if len(keys) > 10:
            keys = [k for k in keys if "@20" in k] or keys[:10]
        rows = [[f"`{v}`"] + [f.get(k) for k in keys] for v, f in runs]
        title = EVAL_TITLES.get(proto, proto)
        out += ["", f"### {title}", "", markdown_table(["features", *keys], rows)]
    return out
