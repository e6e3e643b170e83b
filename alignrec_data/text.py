"""Item text: HTML stripping, entity and whitespace normalisation, template assembly.

The item text fed to text encoders is assembled from a template over four cleaned fields,
by default ``"{title} {brand} {categories} {description}"`` (MMRec's "title + brand +
categories + description"); ``categories`` is the category path joined with a separator.
Every field is cleaned first (:func:`clean_text`): ``<script>``/``<style>`` blocks and tags
removed, HTML entities decoded once, all whitespace runs collapsed to one space.
"""

from __future__ import annotations

import html
import re
import string
from collections.abc import Sequence

from alignrec_data.errors import UsageError

TEMPLATE_FIELDS = ("title", "brand", "categories", "description")
DEFAULT_TEMPLATE = "{title} {brand} {categories} {description}"

_BLOCK = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^<>]*>")


def clean_text(value: str) -> str:
    """Strip HTML tags, decode entities, collapse whitespace.

    Example: ``"Baby &amp; Kids<br/> <b>Toys</b>"`` -> ``"Baby & Kids Toys"``.
    """
    if "<" in value:
        value = _TAG.sub(" ", _BLOCK.sub(" ", value))
    if "&" in value:
        value = html.unescape(value)
        if "<" in value:  # "&lt;b&gt;" decodes to a tag: remove it too, but decode only once
            value = _TAG.sub(" ", value)
    return " ".join(value.split())  # collapses every whitespace run (faster than a regex)


def clean_list(values: Sequence[str]) -> list[str]:
    """Clean each string; drop empty results and repeats, keep order."""
    out: list[str] = []
    for v in values:
        c = clean_text(v)
        if c and c not in out:
            out.append(c)
    return out


def validate_template(template: str) -> str:
    """Check that ``template`` uses only the fields of :data:`TEMPLATE_FIELDS`.

    Returns:
        The template.

    Raises:
        UsageError: Unknown field, attribute/index access, conversion or format spec, or bad braces.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        msg = (
            f"prepare.text_template {template!r} is not a valid template: {err}; use e.g. "
            f"{DEFAULT_TEMPLATE!r}"
        )
        raise UsageError(msg) from err
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS or spec or conv:
            msg = (
                f"prepare.text_template {template!r}: field {{{name}{'!' + conv if conv else ''}"
                f"{':' + spec if spec else ''}}} is not allowed; use only "
                f"{', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
            )
            raise UsageError(msg)
    return template


def assemble_text(
    template: str,
    *,
    title: str = "",
    brand: str = "",
    categories: Sequence[str] = (),
    description: str = "",
    category_separator: str = " ",
    clean: bool = True,
) -> str:
    """Fill the template with cleaned fields and normalise the whitespace of the result.

    Args:
        template: A template checked by :func:`validate_template`.
        title: Title (raw or cleaned).
        brand: Brand.
        categories: Category path, most general first.
        description: Description.
        category_separator: Joins the categories.
        clean: Clean the fields first (False when they already went through
            :func:`clean_text` / :func:`clean_list`).

    Returns:
        The item text; empty fields leave no double spaces.
    """
    if clean:
        title, brand, description = clean_text(title), clean_text(brand), clean_text(description)
        categories = clean_list(categories)
    text = template.format(
        title=title,
        brand=brand,
        categories=category_separator.join(categories),
        description=description,
    )
    return " ".join(text.split())
