"""Markdown tables, shared by the dataset card and the pipeline report."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any


def format_cell(v: Any) -> str:
    """A table cell: ``true``/``false``, ``1,234``, 4 decimals, ``—`` for None, ``|`` escaped."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1e4 else f"{v:,.1f}"
    if v is None:
        return "—"
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    fmt: Callable[[Any], str] = format_cell,
) -> str:
    """A Markdown table (no trailing newline); ``fmt`` turns each row cell into text.

    Args:
        header: Column titles, written as given.
        rows: One sequence of cells per row.
        fmt: Cell formatter (default :func:`format_cell`).
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
