"""Image URLs: the candidate order of an item and the mirror rewrite.

Candidate order (DATA_FORMATS.md, "Image URLs"): Amazon image URLs carry size modifiers
(``41pBVBfmxaL._SY300_.jpg``, ``._SS40_``, ``._SX300_``, ``._AC_UL320_``...). Stripping the
modifier (``41pBVBfmxaL.jpg``) reaches the full image. :func:`image_candidates` turns an item's
``image_urls`` (as ``prepare`` writes them: metadata order, hi_res / large first, then the
thumb-like ones) into the list the images stage tries, in order:

1. the URLs that are already full size (no modifier, or a modifier whose largest number is at
   least :data:`FULL_SIZE_MIN`, e.g. ``._SL1500_``), in the given order;
2. the modifier-stripped variant of every URL that has a modifier, in the given order;
3. the remaining thumb-like URLs (modifier with a small size, e.g. ``._SS40_``), in order;

then duplicates are dropped, keeping the first occurrence. ``[hi_res, large, thumb]`` thus
becomes ``[hi_res, large, <thumb stripped>, thumb]`` (hi_res, large, the base URL without
modifier, thumb).

Mirrors: a rule ``PREFIX=REPLACEMENT`` rewrites every candidate URL that starts with
``PREFIX``; the longest matching prefix wins. Rules come from ``--mirror`` (repeatable), else
``$ALIGNREC_IMAGE_MIRROR`` (rules separated by whitespace), plus, for a registry dataset with an
``image_base_url``, the default rule ``image_base_url=<resolve_base_url(spec)>images/`` (so the
packaged ``amazon-mini`` images are read from the package as ``file://`` URLs). A replacement
may be an ``http(s)://`` or ``file://`` URL or a local folder path.

Metadata is untrusted: only ``http(s)://`` URLs are accepted from it (a ``file://`` URL can
only come from a mirror rule), and a rewritten ``file://`` URL must stay inside its mirror
folder (no ``..`` escapes).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit
from urllib.request import url2pathname

from alignrec_data.errors import UsageError

IMAGE_MIRROR_ENV = "ALIGNREC_IMAGE_MIRROR"

# A modifier whose largest number is at least this many pixels counts as full size.
FULL_SIZE_MIN = 500

# Schemes accepted from (untrusted) metadata, and after a mirror rewrite.
METADATA_SCHEMES = ("http", "https")
FETCH_SCHEMES = ("http", "https", "file")

# "<stem>.<modifier>.<ext>" where the modifier is "_..._" (Amazon: "_SS40_", "_AC_UL320_").
_MODIFIED_NAME = re.compile(
    r"^(?P<stem>[^./]+)\.(?P<mod>_[A-Za-z0-9_,-]*_)\.(?P<ext>[A-Za-z0-9]{2,5})$"
)
_NUMBER = re.compile(r"\d+")


def _modifier(url: str) -> re.Match[str] | None:
    """The size-modifier match of the last component of the URL's path (None: no modifier)."""
    return _MODIFIED_NAME.match(urlsplit(url).path.rpartition("/")[2])


def strip_size_modifier(url: str) -> str:
    """Return ``url`` with its size modifier removed (``x._SS40_.jpg`` -> ``x.jpg``).

    URLs without a modifier are returned unchanged. Query and fragment are kept.
    """
    parts = urlsplit(url)
    head, sep, name = parts.path.rpartition("/")
    m = _MODIFIED_NAME.match(name)
    if m is None:
        return url
    return urlunsplit(parts._replace(path=f"{head}{sep}{m.group('stem')}.{m.group('ext')}"))


def _is_thumb_like(url: str) -> bool:
    """True when ``url`` has a size modifier whose largest number is below FULL_SIZE_MIN."""
    m = _modifier(url)
    numbers = [int(n) for n in _NUMBER.findall(m.group("mod"))] if m else []
    return bool(numbers) and max(numbers) < FULL_SIZE_MIN


def image_candidates(urls: Iterable[str | None] | None) -> list[str]:
    """Expand an item's ``image_urls`` into the ordered, de-duplicated candidates to try.

    Order: full-size URLs as given, then the modifier-stripped variant of each URL with a size
    modifier, then the thumb-like URLs as given; the first occurrence of a duplicate is kept.
    Empty and blank entries are dropped. See the module docstring for the rule.

    Args:
        urls: The item's ``image_urls`` in metadata order (hi_res, large, ..., thumb).

    Returns:
        The candidate URLs in the order to try them.

    Examples:
        >>> image_candidates(["https://h/I/a.jpg", "https://h/I/a._SS40_.jpg"])
        ['https://h/I/a.jpg', 'https://h/I/a._SS40_.jpg']
        >>> image_candidates(["http://h/I/b._SY300_.jpg"])
        ['http://h/I/b.jpg', 'http://h/I/b._SY300_.jpg']
    """
    given = [u.strip() for u in (urls or []) if isinstance(u, str) and u.strip()]
    full = [u for u in given if not _is_thumb_like(u)]
    stripped = [strip_size_modifier(u) for u in given if _modifier(u)]
    thumbs = [u for u in given if _is_thumb_like(u)]
    return list(dict.fromkeys(full + stripped + thumbs))


def _as_url(value: str, where: str) -> str:
    """Normalise a mirror replacement (URL or local folder) to a URL."""
    scheme = urlsplit(value).scheme.lower()
    if scheme in FETCH_SCHEMES:
        return value
    if scheme and len(scheme) > 1:
        msg = (
            f"{where}: replacement {value!r} has unsupported scheme {scheme!r}; "
            "expected http://, https://, file:// or a local folder path"
        )
        raise UsageError(msg)
    url = Path(value).expanduser().resolve().as_uri()
    return url + "/" if value.endswith(("/", os.sep)) else url


def file_url_path(url: str) -> Path:
    """The local path of a ``file://`` URL (percent-escapes decoded)."""
    return Path(url2pathname(unquote(urlsplit(url).path)))


@dataclass(frozen=True)
class MirrorRule:
    """Rewrite URLs starting with ``prefix`` to start with ``replacement`` instead.

    Attributes:
        prefix: The URL prefix to replace (e.g. ``https://images.amazon-mini.invalid/images/``).
        replacement: What replaces it: an ``http(s)://`` or ``file://`` URL.
    """

    prefix: str
    replacement: str

    @classmethod
    def parse(cls, text: str, where: str = "--mirror") -> MirrorRule:
        """Parse ``PREFIX=REPLACEMENT`` (split at the first ``=``).

        Raises:
            UsageError: No ``=``, an empty side, or an unsupported replacement scheme.
        """
        prefix, sep, replacement = text.partition("=")
        prefix, replacement = prefix.strip(), replacement.strip()
        if not sep or not prefix or not replacement:
            msg = (
                f"{where}: expected PREFIX=REPLACEMENT, found {text!r}; e.g. "
                "--mirror https://m.media-amazon.com/images/I/=https://my.mirror/I/"
            )
            raise UsageError(msg)
        return cls(prefix, _as_url(replacement, where))


@dataclass(frozen=True)
class Candidate:
    """One URL to try for an item, after the mirror rewrite.

    Attributes:
        source: The URL as the metadata gives it (or its modifier-stripped variant): what the
            index and shards record, the same on every machine.
        url: The URL to fetch (``source`` rewritten when a mirror rule matched).
        error: Why it must not be fetched (``"unsupported-url"``, ``"unsafe-url"``), or None.
    """

    source: str
    url: str
    error: str | None = None


class MirrorRules:
    """An ordered set of :class:`MirrorRule`; the longest matching prefix wins."""

    def __init__(self, rules: Sequence[MirrorRule] = ()) -> None:
        by_prefix = {rule.prefix: rule for rule in rules}  # a later rule overrides an earlier one
        self.rules = tuple(sorted(by_prefix.values(), key=lambda r: -len(r.prefix)))

    def __repr__(self) -> str:
        return f"MirrorRules({list(self.rules)!r})"

    def resolve(self, url: str) -> Candidate:
        """Rewrite a metadata URL and check that it may be fetched.

        Args:
            url: A candidate URL from the metadata (untrusted).

        Returns:
            The candidate; ``error`` is set for a non-http(s) metadata URL or for a rewritten
            ``file://`` URL that would leave its mirror folder.
        """
        if urlsplit(url).scheme.lower() not in METADATA_SCHEMES:
            return Candidate(url, url, "unsupported-url")
        for rule in self.rules:
            if url.startswith(rule.prefix):
                new = rule.replacement + url[len(rule.prefix) :]
                if urlsplit(new).scheme.lower() == "file" and not _inside(rule.replacement, new):
                    return Candidate(url, new, "unsafe-url")
                return Candidate(url, new)
        return Candidate(url, url)


def _inside(root_url: str, url: str) -> bool:
    """True when the file path of ``url`` resolves inside the folder of ``root_url``."""
    parts = urlsplit(url)
    if parts.query or parts.fragment or parts.netloc not in ("", "localhost"):
        return False
    root = file_url_path(root_url).resolve()
    path = file_url_path(url).resolve()
    base = root if root_url.endswith("/") else root.parent
    return path.is_relative_to(base) and path != base


def mirror_rules(
    dataset: str, mirrors: Sequence[str] | None = None, params: str | Path | None = None
) -> MirrorRules:
    """The mirror rules for ``dataset``: registry or declared default plus explicit rules.

    Explicit rules are ``mirrors`` if given (non-empty), else ``$ALIGNREC_IMAGE_MIRROR``
    (whitespace-separated). For a registry dataset with ``image_base_url`` the default rule maps
    that prefix to ``<resolve_base_url(spec)>images/``; an explicit rule with the same prefix
    replaces it. Datasets not in the registry (imported ones) get no default rule.

    Args:
        dataset: The dataset id.
        mirrors: ``PREFIX=REPLACEMENT`` strings (``--mirror``), or None.
        params: The params file: a dataset declared there (``declared:``) with local images
            gets the rule that maps its image URLs back to its image folder.

    Raises:
        UsageError: A malformed rule (the message names it and shows the expected form).
    """
    from alignrec_data import registry  # lazy: the registry JSON is parsed on first use

    rules: list[MirrorRule] = []
    spec = {s.id: s for s in registry.list_datasets(params=params)}.get(dataset)
    if spec is not None and spec.declared is not None:
        from alignrec_data.declared import image_mirror

        rule = image_mirror(spec)
        if rule is not None:
            rules.append(MirrorRule.parse(rule, "declared:"))
    elif spec is not None and spec.image_base_url:
        base = registry.resolve_base_url(spec)
        rules.append(MirrorRule(spec.image_base_url, base.rstrip("/") + "/images/"))
    if mirrors:
        rules += [MirrorRule.parse(m) for m in mirrors]
    else:
        env = os.environ.get(IMAGE_MIRROR_ENV, "")
        rules += [MirrorRule.parse(m, f"${IMAGE_MIRROR_ENV}") for m in env.split()]
    return MirrorRules(rules)
