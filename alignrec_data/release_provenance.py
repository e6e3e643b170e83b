"""What the card says about where a release came from: raw files, metrics, report, code, params.

Read defensively: a missing or unreadable provenance file leaves its card section empty (with
a warning), it never stops a build.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from alignrec_data.errors import UsageError
from alignrec_data.release_inputs import read_json_or_none

log = logging.getLogger(__name__)

_FIGURE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)")


def params_hash(sections: dict[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces) of some params sections."""
    text = json.dumps(sections, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def code_version() -> dict[str, str | None]:
    """The package version and, when the package lives in a git checkout, its commit."""
    from alignrec_data import __version__

    commit = None
    try:
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
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"version": __version__, "git_commit": commit}


def dataset_spec(dataset: str) -> Any:
    """The registry entry, or None for imported datasets the registry does not know."""
    from alignrec_data.registry import get_dataset

    try:
        return get_dataset(dataset)
    except UsageError:
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
    text = path.read_text(encoding="utf-8")
    root = report_dir.resolve()

    def copy(m: re.Match[str]) -> str:
        src = m.group("src")
        if re.match(r"^[a-z]+://", src) or src.startswith("/"):
            return m.group(0)
        fig = (report_dir / src).resolve()
        if root not in fig.parents or fig.suffix.lower() not in (".png", ".jpg", ".jpeg", ".svg"):
            log.warning("report figure %s is outside %s or not an image: not copied", src, root)
            return f"*(figure `{src}` not included)*"
        if not fig.is_file():
            log.warning("report figure %s does not exist: not copied", fig)
            return f"*(figure `{src}` not included)*"
        rel = fig.relative_to(root).as_posix().replace("/", "_")
        (out / "figures").mkdir(exist_ok=True)
        shutil.copyfile(fig, out / "figures" / rel)
        return f"![{m.group('alt')}](figures/{rel})"

    return _FIGURE.sub(copy, text)
