"""The Hugging Face dataset release: ``<data-dir>/<dataset>/release/`` (no loading script).

:func:`build_release` turns one dataset's prepared tables, feature files, metrics and (with
``images: true``) packed images into a folder that *is* a Hugging Face dataset repository:

- ``items/train-00000-of-00001.parquet``: ``item_id``, ``item_key`` (raw asin / parent_asin),
  ``title``, ``text``, ``image_url`` and ``has_image``.
- ``interactions/{train,validation,test}-0000i-of-0000n.parquet``: ``user_id``, ``item_id``,
  ``user_key``, ``item_key``, ``rating``, ``timestamp`` (the ``valid`` split of the prepared
  table is published as ``validation``, the Hugging Face name).
- ``features-<variant>/train-...parquet`` for every feature set: ``item_id``, ``item_key``,
  ``embedding`` (``List(Value("float32"), length=d)``), ``missing``; row i = item i.
- ``images/train-...parquet`` (optional): ``item_id``, ``item_key``, ``image`` (a
  ``datasets.Image`` struct with the encoded bytes), ``width``, ``height``, ``sha256``, ``url``.
- ``README.md``: the dataset card (:mod:`alignrec_data.card`) whose YAML front matter lists
  every config and its shards, so ``datasets.load_dataset(folder_or_repo, "<config>")`` works.
- ``alignrec_release.json``: the manifest (rows, bytes and sha256 of every shard, feature
  dimensions), which :mod:`alignrec_data.loaders` and :mod:`alignrec_data.publish` use to
  detect missing or corrupt shards. It is also the release's marker: a folder without it is
  not a release (the loaders and ``publish`` refuse it, ``release --out`` will not replace it
  without ``overwrite``).
- ``figures/``: the PNGs the pipeline report references, when ``report/report.md`` exists.

The build reads and checks every input first (:mod:`alignrec_data.release_inputs`), makes one
writer per config (:mod:`alignrec_data.release_configs`), then, in a staging folder, has each
writer write its shards through the one :class:`~alignrec_data.release_configs.ShardWriter`,
renders the card and writes the manifest (:mod:`alignrec_data.release_layout`) last.

Shards hold at most ``shard_size_mb`` MB of (uncompressed) Arrow data and are named
``<config>/<split>-<i:05d>-of-<n:05d>.parquet``. The output is deterministic: rebuilding
from the same inputs gives byte-identical files, so a second ``publish`` commits nothing.

Safety: ``out`` is checked first (:func:`alignrec_data.outputs.check_output_dir`): never the
data dir, a dataset's folder or a stage folder; a non-empty folder without the manifest only
with ``overwrite``. Every input (prepared tables, feature files: ids, keys, finite values) is
read and checked before the first byte is written. The folder is then built next to ``out``
(``.<out>.tmp-<pid>-*``, :func:`alignrec_data.atomic.atomic_dir`) and swapped in at the end,
so a failed build leaves the old release untouched, and a build killed mid-way leaves a
temporary that the next build removes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignrec_data import card
from alignrec_data.atomic import atomic_dir
from alignrec_data.config import check_ranges, load_params, to_dict
from alignrec_data.errors import UsageError
from alignrec_data.integrity import sha256_file
from alignrec_data.outputs import check_output_dir, protected_folders
from alignrec_data.paths import DatasetPaths
from alignrec_data.release_configs import ShardWriter, config_writers, write_config
from alignrec_data.release_inputs import read_json_or_none, read_prepared, select_variants
from alignrec_data.release_layout import (
    CARD_NAME,
    MANIFEST_NAME,
    manifest_text,
    read_manifest,
)

# The release API; MANIFEST_NAME and read_manifest are re-exported (tests, release_source docs).
__all__ = ["MANIFEST_NAME", "ReleaseConfig", "ReleaseResult", "build_release", "read_manifest"]

log = logging.getLogger(__name__)
# The card's provenance readers log under their former module name (users' logs keep it).
_prov_log = logging.getLogger("alignrec_data.release_provenance")

CHECKPOINT_NAME = "mmenc.pt"
# Params sections that describe how the released data and features were made (hashed for the card).
PROVENANCE_SECTIONS = ("download", "prepare", "images", "pretrain", "extract", "train", "evaluate")

_VARIANT = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
# Parquet codecs of the shards.
COMPRESSIONS = ("zstd", "snappy", "gzip", "none")


@dataclass(frozen=True)
class ReleaseConfig:
    """The ``release:`` section of ``params.yaml``.

    Attributes:
        shard_size_mb: Largest shard, in MB of uncompressed Arrow data (Hub guidance: a few
            hundred MB at most).
        features: Feature variants to release; empty = every ``features/<variant>.parquet``.
        images: Also release the ``images`` config (packed image bytes; large).
        compression: Parquet codec of the shards (``zstd``, ``snappy``, ``gzip`` or ``none``).
        repo_id: Hub repo id used in the card's loading examples; empty = ``ORG/NAME``.
    """

    shard_size_mb: float = 500  # largest shard, MB of uncompressed Arrow data
    features: tuple[str, ...] = ()  # variants to release; () = all found in features/
    images: bool = False  # add the large `images` config (packed bytes)
    compression: str = "zstd"  # parquet codec of the shards
    repo_id: str = ""  # repo id in the card's load_dataset lines ("" = ORG/NAME)

    def __post_init__(self) -> None:
        """Reject values the release writer cannot run with."""
        bad = [v for v in self.features if not _VARIANT.match(v)]
        names = "variant names of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
        if bad:
            names += f" (not valid: {', '.join(map(repr, bad))})"
        ranges = {
            "shard_size_mb": (self.shard_size_mb > 0, "> 0"),
            "compression": (self.compression in COMPRESSIONS, f"one of {', '.join(COMPRESSIONS)}"),
            "features": (not bad, names),
        }
        check_ranges(self, "release", ranges)


@dataclass(frozen=True)
class ReleaseResult:
    """What :func:`build_release` wrote.

    Attributes:
        out: The release folder.
        configs: Config name -> {split: rows}.
        variants: Released feature variants.
        files: Number of files in the folder.
        total_bytes: Size of the folder in bytes.
        notes: Things the card says are missing (no features, no metrics...).
    """

    out: Path
    configs: dict[str, dict[str, int]]
    variants: list[str]
    files: int
    total_bytes: int
    notes: list[str]


# ----------------------------------------------------------------------------- build


def build_release(
    data_dir: str | Path,
    dataset: str,
    out: str | Path | None = None,
    config: ReleaseConfig | None = None,
    *,
    params_path: str | Path | None = None,
    overwrite: bool = False,
) -> ReleaseResult:
    """Build the Hugging Face dataset folder of one dataset (see module docstring).

    Args:
        data_dir: The data directory (``<data-dir>/<dataset>/...``).
        dataset: Dataset id (the folder name; need not be in the registry).
        out: The release folder; default ``<data-dir>/<dataset>/release``. Replaced as a whole
            when it is a previous release (holds :data:`MANIFEST_NAME`) or empty.
        config: The ``release:`` params; default :class:`ReleaseConfig()`.
        params_path: The params file, read for the card's provenance (model config, seeds,
            params hash of the sections in :data:`PROVENANCE_SECTIONS`).
        overwrite: Replace ``out`` even when it is a non-empty folder that is not a release.
            The data dir, dataset folders and their stage folders are refused regardless.

    Returns:
        What was written.

    Raises:
        UsageError: ``out`` may not be written (see above), prepared tables or requested
            feature variants are missing.
        DataFormatError: An input does not have the documented layout, feature rows do not
            match the prepared items, or an embedding holds NaN / infinite values.
    """
    config = config or ReleaseConfig()
    paths = DatasetPaths.of(data_dir, dataset)
    out = check_output_dir(
        out if out is not None else paths.release,
        marker=MANIFEST_NAME,
        what="release folder",
        overwrite=overwrite,
        protected=protected_folders(data_dir, allow=[paths.release]),
    )
    # Every input is read and checked (one writer per config) before the first byte is written.
    prepared = read_prepared(paths)
    variants = select_variants(paths.features, config.features)
    ckpt = paths.models / CHECKPOINT_NAME
    ckpt_sha = sha256_file(ckpt) if ckpt.is_file() else None
    writers, notes = config_writers(paths, config.images, prepared, variants)
    sections = _params_sections(params_path, dataset)
    max_bytes = max(1, int(config.shard_size_mb * 1024 * 1024))
    with atomic_dir(out) as staging:
        shards = ShardWriter(staging, max_bytes, config.compression)
        configs = [write_config(w, shards) for w in writers]
        context = card.CardContext(
            dataset=dataset,
            spec=dataset_spec(dataset),
            configs=configs,
            n_users=prepared.n_users,
            n_items=prepared.items.num_rows,
            stats=prepared.stats,
            raw_files=read_lock(paths.raw),
            metrics=read_metrics(paths.metrics),
            report=copy_report(paths.root / "report", staging),  # figures copied into staging
            params_sections=sections,
            params_hash=params_hash(sections),
            release_config=to_dict(config),
            code=code_version(),
            checkpoint_sha256=ckpt_sha,
            notes=notes,
        )
        (staging / CARD_NAME).write_text(card.render_card(context), encoding="utf-8")
        # The manifest is written last: a folder holding it is a complete release.
        text = manifest_text(dataset, context.code, context.params_hash, configs)
        (staging / MANIFEST_NAME).write_text(text, encoding="utf-8")
    files = [p for p in out.rglob("*") if p.is_file()]
    for note in notes:
        log.warning("%s", note)
    total = sum(p.stat().st_size for p in files)
    log.info("release of %s written to %s (%d files, %d bytes)", dataset, out, len(files), total)
    rows = {c.name: {sp: c.rows(sp) for sp in c.splits} for c in configs}
    return ReleaseResult(out, rows, variants, len(files), total, notes)


def _params_sections(params_path: str | Path | None, dataset: str) -> dict[str, Any]:
    """The :data:`PROVENANCE_SECTIONS` of the params, with this dataset's overrides."""
    params = load_params(params_path)
    sections = {s: params[s] for s in PROVENANCE_SECTIONS if s in params}
    own = {  # this dataset's per-dataset settings (overrides.SECTION.DATASET), if any
        s: per[dataset]
        for s, per in (params.get("overrides") or {}).items()
        if s in PROVENANCE_SECTIONS and isinstance(per, dict) and per.get(dataset)
    }
    if own:
        sections["overrides"] = own
    return sections


# ----------------------------------------------------------------------------- provenance
# What the card says about where a release came from: raw files, metrics, report, code, params.
# Read defensively: a missing or unreadable provenance file leaves its card section empty (with
# a warning), it never stops a build.

_FIGURE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)")


def params_hash(sections: dict[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces) of some params sections."""
    text = json.dumps(sections, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def code_version() -> dict[str, str | None]:
    """The package version and, when the package lives in a git checkout, its commit."""
    from alignrec_data import __version__

    commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if res.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", res.stdout.strip()):
            commit = res.stdout.strip()
    return {"version": __version__, "git_commit": commit}


def dataset_spec(dataset: str) -> Any:
    """The registry entry, or None for imported datasets the registry does not know."""
    from alignrec_data.registry import get_dataset

    with contextlib.suppress(UsageError):
        return get_dataset(dataset)
    return None


def read_lock(raw_dir: Path) -> dict[str, dict[str, Any]]:
    """Raw files pinned by ``raw/alignrec.lock.json`` ({} when absent or unreadable)."""
    from alignrec_data.lockfile import LOCK_NAME

    doc = read_json_or_none(raw_dir / LOCK_NAME) if (raw_dir / LOCK_NAME).is_file() else None
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict):
        return {}
    keep = ("role", "url", "size", "sha256", "trust")
    return {
        str(name): {k: entry[k] for k in keep if k in entry}
        for name, entry in sorted(files.items())
        if isinstance(entry, dict)
    }


def read_metrics(metrics_dir: Path) -> dict[str, Any]:
    """All readable ``metrics/*.json`` files by stem."""
    docs = {p.stem: read_json_or_none(p) for p in sorted(metrics_dir.glob("*.json"))}
    return {stem: doc for stem, doc in docs.items() if doc is not None}


def copy_report(report_dir: Path, out: Path) -> str | None:
    """The pipeline report with its local figures copied to ``out/figures`` (links rewritten).

    Figures outside ``report_dir``, missing or not images are replaced by a note. Returns
    None when there is no ``report.md``.
    """
    path = report_dir / "report.md"
    if not path.is_file():
        return None
    root = report_dir.resolve()

    def copy(m: re.Match[str]) -> str:
        src = m.group("src")
        if re.match(r"^[a-z]+://", src) or src.startswith("/"):
            return m.group(0)
        fig = (report_dir / src).resolve()
        if root not in fig.parents or fig.suffix.lower() not in (".png", ".jpg", ".jpeg", ".svg"):
            _prov_log.warning(
                "report figure %s is outside %s or not an image: not copied", src, root
            )
            return f"*(figure `{src}` not included)*"
        if not fig.is_file():
            _prov_log.warning("report figure %s does not exist: not copied", fig)
            return f"*(figure `{src}` not included)*"
        rel = fig.relative_to(root).as_posix().replace("/", "_")
        (out / "figures").mkdir(exist_ok=True)
        shutil.copyfile(fig, out / "figures" / rel)
        return f"![{m.group('alt')}](figures/{rel})"

    return _FIGURE.sub(copy, path.read_text(encoding="utf-8"))
