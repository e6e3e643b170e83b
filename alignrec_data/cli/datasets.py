"""``alignrec-data datasets``: list the registered datasets and whether each is present locally."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from alignrec_data.cli._common import common_options, emit
from alignrec_data.paths import DatasetPaths
from alignrec_data.registry import DatasetSpec, broken_link, list_datasets, raw_path


def _human(n: int | None) -> str:
    if n is None:
        return "size unknown"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def local_state(spec: DatasetSpec, data_dir: Path) -> str:
    """Which raw files exist under data_dir: ``"complete"``, ``"partial"`` or ``"absent"``.

    ``"broken"`` when a raw file (or a folder on its way) is a symbolic link that loops or
    points to nothing; `download` and `prepare` then name the link to remove.
    """
    raw = DatasetPaths.of(data_dir, spec.id).raw
    paths = [raw_path(raw, spec, f.role) for f in spec.files]
    if any(broken_link(p) is not None for p in paths):
        return "broken"
    present = [p.is_file() for p in paths]
    return "complete" if all(present) else ("partial" if any(present) else "absent")


def describe(spec: DatasetSpec, data_dir: Path) -> dict[str, Any]:
    """JSON-ready description of one dataset, with its local state."""
    return {
        "id": spec.id,
        "release": spec.release,
        "category": spec.category,
        "description": spec.description,
        "synthetic": spec.synthetic,
        "base_url": spec.base_url,
        "license": spec.license,
        "citation": spec.citation,
        "homepage": spec.homepage,
        "total_size": spec.total_size,
        "files": [
            {"role": f.role, "name": f.name, "size": f.size, "sha256": f.sha256} for f in spec.files
        ],
        "local": local_state(spec, data_dir),
        "raw_dir": str(DatasetPaths.of(data_dir, spec.id).raw),
    }


@click.command("datasets")
@common_options
def command(data_dir: Path, params: Path | None, fmt: str) -> None:
    """List the dataset ids: release, category, size and whether present under DATA_DIR.

    Sizes are those in the registry ("size unknown" until a release publishes them; the
    first download records them in raw/alignrec.lock.json). LOCAL is "complete" when every
    raw file exists, "partial" or "absent"; "broken" when a raw file is a symbolic link that
    loops or points to nothing (`download` names it). `download` verifies the files.

    \b
    Examples:
      alignrec-data datasets
      alignrec-data datasets --format json
      alignrec-data datasets --data-dir /big/disk/alignrec
    """  # noqa: D301 (click needs a real \b)
    rows = [describe(s, data_dir) for s in list_datasets()]
    width = max(len(r["id"]) for r in rows)
    lines = [f"{'ID':<{width}}  RELEASE    FILES  SIZE          LOCAL     DESCRIPTION"]
    for r in rows:
        release = r["release"] + (" (syn)" if r["synthetic"] else "")
        lines.append(
            f"{r['id']:<{width}}  {release:<9}  {len(r['files']):>5}  "
            f"{_human(r['total_size']):<12}  {r['local']:<8}  {r['description']}"
        )
    emit(fmt, {"data_dir": str(data_dir), "datasets": rows}, lines)
