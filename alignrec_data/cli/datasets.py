"""``alignrec-data datasets``: list the registered datasets and whether each is present locally."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from alignrec_data.cli._common import common_options, emit
from alignrec_data.links import broken_link
from alignrec_data.paths import DatasetPaths
from alignrec_data.registry import (
    GROUPS,
    DatasetSpec,
    FileSpec,
    list_datasets,
    raw_path,
)


def _human(n: int | None) -> str:
    if n is None:
        return "size unknown"
    size = float(n)
    for unit in ("B", "KB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


# What the JSON output shows of each file; every field of the spec is shown but these (the
# files are shown by _FILE_KEYS, the declaration by _declared).
_FILE_KEYS = ("role", "name", "size", "sha256", "optional")
_NOT_SHOWN = ("files", "image_base_url", "declared")


def _size(files: tuple[FileSpec, ...]) -> int | None:
    """Sum of the sizes, or None when any is unknown."""
    sizes = [f.size for f in files]
    return None if any(n is None for n in sizes) else sum(sizes)  # type: ignore[misc]


def local_state(spec: DatasetSpec, data_dir: Path) -> str:
    """Which raw files exist under data_dir: ``"complete"``, ``"partial"`` or ``"absent"``.

    ``"complete"`` when every file prepare reads exists (optional files, such as the
    all-ratings CSV, may be absent). ``"broken"`` when a raw file (or a folder on its way) is
    a symbolic link that loops or points to nothing; `download` and `prepare` then name the
    link to remove.
    """
    raw = DatasetPaths.of(data_dir, spec.id).raw
    paths = {f: raw_path(raw, spec, f.role) for f in spec.files}
    if any(broken_link(p) is not None for p in paths.values()):
        return "broken"
    present = {f: p.is_file() for f, p in paths.items()}
    if all(present[f] for f in spec.files_for(all_files=False)):
        return "complete"
    return "partial" if any(present.values()) else "absent"


def describe(spec: DatasetSpec, data_dir: Path) -> dict[str, Any]:
    """JSON-ready description of one dataset, with its local state."""
    return {
        **{f.name: getattr(spec, f.name) for f in fields(spec) if f.name not in _NOT_SHOWN},
        "aliases": list(spec.aliases),
        "total_size": _size(spec.files),
        "download_size": _size(spec.files_for(all_files=False)),
        "files": [{k: getattr(f, k) for k in _FILE_KEYS} for f in spec.files],
        "local": local_state(spec, data_dir),
        "raw_dir": str(DatasetPaths.of(data_dir, spec.id).raw),
        **(_declared(spec) if spec.declared is not None else {}),
    }


def _declared(spec: DatasetSpec) -> dict[str, Any]:
    """What a declared dataset adds: where it is declared, its sources, the images rule."""
    from alignrec_data.declared import image_mirror

    return {
        "declared_in": spec.declared.where.rsplit(":", 1)[0],
        "sources": {f.role: f.url for f in spec.files},
        "image_mirror": image_mirror(spec),
    }


@click.command("datasets")
@click.option(
    "--release",
    type=click.Choice(GROUPS),
    default=None,
    help=(
        "Only this release (synthetic: the generated sets shipped in the package; declared: "
        "the datasets declared in the params file)."
    ),
)
@common_options
def command(release: str | None, data_dir: Path, params: Path | None, fmt: str) -> None:
    """List the dataset ids: release, category, size and whether present under DATA_DIR.

    Every category of the Amazon 2014, 2018 and 2023 releases has an id
    amazon<release>-<category> (amazon2018-gift-cards); older ids (amazon-baby ...) are
    listed as aliases: same files, their own data folder. FILES counts the files `download`
    fetches, "+N" the optional ones `--all-files` adds. SIZE is that of the files `download`
    fetches, from the registry ("size unknown" until a release publishes them; the first
    download records them in raw/alignrec.lock.json). LOCAL is "complete" when every file
    `prepare` reads exists, "partial" or "absent"; "broken" when a raw file is a symbolic
    link that loops or points to nothing (`download` names it). `download` verifies the
    files. Datasets declared under `declared:` in the params file (docs/declared.md) follow,
    release "declared".

    \b
    Examples:
      alignrec-data datasets
      alignrec-data datasets --release 2018
      alignrec-data datasets --format json
      alignrec-data datasets --data-dir /big/disk/alignrec
    """  # noqa: D301 (click needs a real \b)
    specs = list_datasets(release, aliases=True, params=params)
    rows = [describe(s, data_dir) for s in specs]
    width = max(len(r["id"]) for r in rows)
    lines = [f"{'ID':<{width}}  RELEASE    FILES  SIZE          LOCAL     DESCRIPTION"]
    for r in rows:
        rel = r["release"] + (" (syn)" if r["synthetic"] else "")
        optional = sum(f["optional"] for f in r["files"])
        files = f"{len(r['files']) - optional}" + (f"+{optional}" if optional else "")
        text = f"alias of {r['alias_of']} (same files)" if r["alias_of"] else r["description"]
        lines.append(
            f"{r['id']:<{width}}  {rel:<9}  {files:>5}  "
            f"{_human(r['download_size']):<12}  {r['local']:<8}  {text}"
        )
    emit(fmt, {"data_dir": str(data_dir), "release": release, "datasets": rows}, lines)
