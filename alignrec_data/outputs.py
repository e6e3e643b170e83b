"""The output-folder contract: what a command may replace, checked before it writes a byte.

Commands that fill a whole folder (``release``, ``export mmrec``, ``import``) write a marker
file into it. A later run may replace a folder that holds its marker (its own previous output)
or is empty; any other existing folder is refused unless the user passes ``--overwrite``.
Folders that hold a dataset (the data dir, a dataset's root and its stage folders) are never
a target, whatever the flags, so ``--out data/amazon-mini`` cannot replace ``raw/`` or the
encoder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from alignrec_data.errors import UsageError

# Folders of a dataset that hold the tool's inputs and results (DatasetPaths' children).
DATASET_FOLDERS = (
    "raw",
    "prepared",
    "images",
    "features",
    "models",
    "metrics",
    "report",
    "release",
)


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError) as err:  # a symlink loop
        msg = f"cannot resolve {path}: {err}; choose another output folder"
        raise UsageError(msg) from err


def protected_folders(data_dir: str | Path, *, allow: Iterable[str | Path] = ()) -> list[Path]:
    """The folders no output may be or contain: the data dir, its datasets and their stages.

    Args:
        data_dir: The data dir.
        allow: Folders to leave out (a command's own default output, e.g.
            ``<data-dir>/<dataset>/release`` for ``release``).

    Returns:
        The data dir, every folder directly under it (one per dataset) and their stage
        folders (:data:`DATASET_FOLDERS`), less ``allow``.
    """
    data_dir = Path(data_dir)
    folders = [data_dir]
    if data_dir.is_dir():
        for root in sorted(p for p in data_dir.iterdir() if p.is_dir()):
            folders += [root, *(root / f for f in DATASET_FOLDERS)]
    allowed = {_resolved(Path(a)) for a in allow}
    return [f for f in folders if _resolved(f) not in allowed]


def check_output_dir(
    out: str | Path,
    *,
    marker: str,
    what: str,
    overwrite: bool = False,
    protected: Iterable[str | Path] = (),
    option: str = "--out",
    overwrite_means: str = "replace what it holds",
    overwrite_flag: str = "--overwrite",
) -> Path:
    """Check that a command may write the folder ``out`` as a whole, before anything is written.

    Args:
        out: The target folder (it need not exist).
        marker: The file the command writes into every folder it makes.
        what: What the command makes, for messages (``"release folder"``).
        overwrite: The user passed ``--overwrite``: a non-empty folder without the marker may
            be replaced.
        protected: Folders ``out`` may neither be nor contain (see :func:`protected_folders`).
            Folders inside ``out`` that are the command's own previous output are fine.
        option: The option that named ``out``, for messages.
        overwrite_means: What ``--overwrite`` does to such a folder, for messages.
        overwrite_flag: How the caller spells the overwrite switch (``overwrite=True`` for
            library calls), for messages.

    Returns:
        ``out`` as a Path.

    Raises:
        UsageError: ``out`` is a file, would replace a protected folder, is a non-empty folder
            that is not the command's output (and no ``--overwrite``), or cannot be written.
    """
    out = Path(out)
    target = _resolved(out)
    for folder in map(Path, protected):
        if _resolved(folder).is_relative_to(target):  # the target itself or inside it
            msg = (
                f"{option} {out} would replace {folder}, which holds a dataset's files; "
                f"choose a folder outside it for the {what}"
            )
            raise UsageError(msg)
    if out.exists() and not out.is_dir():
        msg = f"{option} {out} exists and is not a folder; choose a new or empty folder"
        raise UsageError(msg)
    if out.is_dir():
        try:
            non_empty = any(out.iterdir())
        except OSError as err:
            msg = f"{option} {out} cannot be read ({err.strerror}); choose another folder"
            raise UsageError(msg) from err
        if non_empty and not (out / marker).is_file() and not overwrite:
            msg = (
                f"{option} {out} is not empty and is not a previous {what} (it has no {marker}); "
                f"choose a new or empty folder, or pass {overwrite_flag} to {overwrite_means}"
            )
            raise UsageError(msg)
    # Making out needs its nearest existing ancestor writable; replacing it renames it inside
    # its parent, so then the parent must be writable.
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        msg = f"{option} {out}: {parent} is a file, not a folder; choose another folder"
        raise UsageError(msg)
    if not os.access(parent, os.W_OK | os.X_OK):
        msg = f"{option} {out}: cannot write to {parent} (permission denied); choose another folder"
        raise UsageError(msg)
    return out
