"""Item text: markup removal, entity and whitespace normalisation, template assembly.

The item text fed to text encoders is assembled from a template over four cleaned fields,
by default ``"{title} {brand} {categories} {description}"`` (MMRec's "title + brand +
categories + description"); ``categories`` is the category path joined with a separator.

Every field is cleaned first (:func:`clean_text`), written for the markup real Amazon
metadata holds (e.g. 2018 titles cut inside a tag: ``<span class="a-size-medium a-color-"``):

1. Markup removed (:func:`strip_markup`), each piece replaced by one space: comments,
   ``<script>``/``<style>`` blocks with their content, and tags. A tag starts where HTML
   starts one, ``<`` followed by a letter, ``/``, ``!`` or ``?``, and ends at the next ``>``
   outside a quoted attribute value, or at the end of the string when it is never closed
   (``<span class="x"`` and ``<br`` go entirely). A string cut inside a tag at its start
   (``Magazines" />``, ``class="x">Title``: text up to a ``>`` that follows a quote or ``/``,
   with no ``<`` before it) loses that tail. Any other ``<`` or ``>`` is text and kept
   (``a < b``, ``I <3 it``, ``Books > Kids``), as a browser shows it.
2. HTML entities decoded once (``&amp;lt;`` -> ``&lt;``), then markup removed again (an
   escaped tag ``&lt;b&gt;`` decodes to a tag, which goes too).
3. Whitespace runs (including ``&nbsp;``) collapsed to one space, ends stripped.
4. A leftover without one letter or digit (``"/>``, ``-``, ``( )``) becomes empty.

An item whose title is empty after cleaning (it was only markup) is shown with a title taken
from its next non-empty field (:func:`fallback_title`: the description's first sentence, else
the brand, else the most specific category).
"""

from __future__ import annotations

import html
import re
import string
from collections.abc import Sequence

from alignrec_data.errors import UsageError

TEMPLATE_FIELDS = ("title", "brand", "categories", "description")
DEFAULT_TEMPLATE = "{title} {brand} {categories} {description}"
# Where a title that is empty after cleaning (only markup) is taken from, in this order.
TITLE_FALLBACK = ("description", "brand", "categories")
MAX_FALLBACK_TITLE_CHARS = 120

_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
_BLOCK = re.compile(r"<(script|style)\b[^>]*>.*?(?:</\1\s*>|\Z)", re.IGNORECASE | re.DOTALL)
# A tag: "<" + letter, "/", "!" or "?", then up to ">" outside quoted attribute values (a
# quote opens a value only after "="), or to the end of the string when never closed. A match
# that has started cannot fail, so there is no backtracking: the scan is linear.
_TAG = re.compile(
    r"""<[A-Za-z/!?](?:[^>"'=]|=\s*"[^"]*(?:"|\Z)|=\s*'[^']*(?:'|\Z)|[="'])*(?:>|\Z)"""
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def _remove_tags(value: str) -> str:
    """Comments, script/style blocks and tags, each replaced by one space."""
    return _TAG.sub(" ", _BLOCK.sub(" ", _COMMENT.sub(" ", value)))


def strip_markup(value: str) -> str:
    """Remove comments, script/style blocks, complete and unclosed tags, a cut tag tail.

    Entities are left as they are (:func:`clean_text` decodes them); each removed piece
    becomes one space. Example: ``'x" /> <b>Bold</b> <span class="a'`` -> ``'  Bold  '``
    (whitespace not yet collapsed).
    """
    end = value.find(">")
    if end >= 0 and "<" not in value[:end]:  # the tail of a tag cut off at the start?
        head = value[:end].rstrip()
        if head.endswith(("/", '"', "'")):  # `x" />`, `class="x">`: an attribute's end
            value = " " + value[end + 1 :]
    return _remove_tags(value) if "<" in value else value


def clean_text(value: str) -> str:
    """Remove markup, decode entities once, collapse whitespace; '' for a markup-only value.

    Examples: ``"Baby &amp; Kids<br/> <b>Toys</b>"`` -> ``"Baby & Kids Toys"``;
    ``'<span class="a-size-medium a-color-secondary"'`` -> ``""``; ``"a < b"`` -> ``"a < b"``.
    """
    value = strip_markup(value)
    if "&" in value:
        value = html.unescape(value)
        if "<" in value:  # "&lt;b&gt;" decodes to a tag: remove it too, but decode only once
            value = _remove_tags(value)
    value = " ".join(value.split())  # collapses every whitespace run (faster than a regex)
    if value and not any(ch.isalnum() for ch in value):
        return ""
    return value


def clean_list(values: Sequence[str]) -> list[str]:
    """Clean each string; drop empty results and repeats, keep order."""
    return list(dict.fromkeys(c for c in map(clean_text, values) if c))


def first_sentence(text: str) -> str:
    """The first sentence of a cleaned text, cut at a word boundary to a short title.

    A sentence ends at ``.``, ``!`` or ``?`` followed by whitespace; a longer one is cut to at
    most :data:`MAX_FALLBACK_TITLE_CHARS`. Example:
    ``"Elle is a magazine. Features include..."`` -> ``"Elle is a magazine."``.
    """
    limit = MAX_FALLBACK_TITLE_CHARS
    sentence = _SENTENCE_END.split(text, maxsplit=1)[0]
    if len(sentence) <= limit:
        return sentence
    cut = sentence[: limit + 1].rsplit(" ", 1)[0]
    return cut if cut and len(cut) <= limit else sentence[:limit]


def fallback_title(
    title: str, brand: str, categories: Sequence[str], description: str
) -> tuple[str, str]:
    """The title to show for an item, and the field it came from, given its cleaned fields.

    The cleaned title when it is non-empty; else, in the order of :data:`TITLE_FALLBACK`,
    the first sentence of the description (:func:`first_sentence`), the brand, the most
    specific category; else ``""``.

    Returns:
        ``(title, source)``, source one of ``"title"``, ``"description"``, ``"brand"``,
        ``"categories"`` or ``"none"``.
    """
    if title:
        return title, "title"
    candidates = {
        "description": first_sentence(description) if description else "",
        "brand": brand,
        "categories": categories[-1] if categories else "",
    }
    return next(((candidates[s], s) for s in TITLE_FALLBACK if candidates[s]), ("", "none"))


def template_fields(template: str, where: str, example: str) -> list[tuple[str, str, str, str]]:
    """The fields of a template: ``(name, format spec, conversion, the field as written)``.

    Raises:
        UsageError: Bad braces; the message names ``where`` and ends with ``example``.
    """
    try:
        parsed = [(n, s, c) for _, n, s, c in string.Formatter().parse(template) if n is not None]
    except ValueError as err:
        msg = f"{where} {template!r} is not a valid template: {err}; {example}"
        raise UsageError(msg) from err
    return [(n, s, c, f"{{{n}{'!' + c if c else ''}{':' + s if s else ''}}}") for n, s, c in parsed]


def validate_template(template: str) -> None:
    """Check that ``template`` uses only the fields of :data:`TEMPLATE_FIELDS`.

    Raises:
        UsageError: Unknown field, attribute/index access, conversion or format spec, or bad braces.
    """
    example = f"use e.g. {DEFAULT_TEMPLATE!r}"
    for name, spec, conv, shown in template_fields(template, "prepare.text_template", example):
        if name not in TEMPLATE_FIELDS or spec or conv:
            msg = (
                f"prepare.text_template {template!r}: field {shown} is not allowed; use only "
                f"{', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
            )
            raise UsageError(msg)


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
