"""Broken symbolic links in data paths: found and reported in one line instead of failing later.

A raw file, a prepared folder or an images folder may be a symbolic link (to a shared disk,
say). A link to nothing, or into a loop of links, makes ``is_file()`` quietly false and
``resolve()`` raise; the stages check their paths with :func:`check_links` first.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alignrec_data.errors import UsageError


def broken_link(path: str | Path) -> Path | None:
    """The first of ``path``'s folders, or ``path`` itself, that is a broken symbolic link.

    Broken: a link to itself or into a cycle of links (a loop), or to nothing. Such a path
    makes ``is_file()`` quietly false and ``resolve()`` raise; callers report it instead.

    Args:
        path: The path to check (need not exist).

    Returns:
        The broken link, or None.
    """
    path = Path(path)
    for p in (*reversed(path.parents), path):
        if p.is_symlink() and not p.exists():
            return p
    return None


def link_problem(link: Path) -> str:
    """What is wrong with a broken symbolic link, in words (for messages)."""
    try:
        target = os.readlink(link)
    except OSError:
        target = "?"
    try:
        link.resolve(strict=True)
    except FileNotFoundError:
        return f"is a symbolic link to {target}, which does not exist"
    except (OSError, RuntimeError):  # RuntimeError: Python < 3.13 reports a loop so
        pass
    return f"is a symbolic link that loops (to {target})"


def check_links(paths: Any, what: str = "raw file") -> None:
    """Raise a one-line error when any of ``paths`` goes through a broken symbolic link.

    Args:
        paths: The paths to check.
        what: What they are, for the message.

    Raises:
        UsageError: Names the broken link and the fix (remove or repair the link).
    """
    for path in paths:
        link = broken_link(path)
        if link is not None:
            where = f"{what} {path}" if link == Path(path) else f"{what} {path}: {link}"
            msg = (
                f"{where} {link_problem(link)}; remove the link (or point it at the real "
                "file or folder) and rerun"
            )
            raise UsageError(msg)
