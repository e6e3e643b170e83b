"""Datasets declared in ``params.yaml``: your own interactions and items, from files or URLs.

A top-level ``declared:`` section maps dataset ids to a declaration (docs/declared.md)::

    declared:
      hm-sample:
        interactions: {path: data-src/transactions.parquet, user: customer_id,
                       item: article_id, timestamp: t_dat}
        items: {path: data-src/articles.parquet, item: article_id, title: prod_name,
                text: "{prod_name} {product_type_name} {detail_desc}",
                image: "images/{article_id:010d}.jpg"}

Each part is a frozen dataclass loaded by :func:`alignrec_data.config.from_dict` (unknown
keys are errors). Paths are relative to the params file's folder; ``http(s)://`` and
``file://`` URLs work too. A declaration becomes a :class:`~alignrec_data.registry.DatasetSpec`
of release ``declared`` (:func:`declared_specs`), so ``download`` (the same verified copy, sha256
in the lock file), ``prepare`` (:mod:`alignrec_data.declared_prepare`: the same dedupe, k-core,
ids and seeded split as the Amazon sets) and every later stage treat it like a registry id.

Local images: the ``image`` template gives, per item, a path or URL. URLs are kept. A local
path becomes the stable URL ``https://declared.invalid/<id>/<path below the image root>``
(:data:`IMAGE_HOST`; the same on every machine, and no local path is ever written to a
release); :func:`image_mirror` is the ``PREFIX=FOLDER`` rule that maps it back to the folder,
given to ``alignrec-data images --mirror`` (or ``$ALIGNREC_IMAGE_MIRROR``).
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit
from urllib.request import url2pathname

from alignrec_data.config import check_mapping, from_dict, load_params
from alignrec_data.errors import UsageError
from alignrec_data.paths import check_name
from alignrec_data.registry import SHA256, DatasetSpec, FileSpec, load_registry
from alignrec_data.text import template_fields

if TYPE_CHECKING:
    from alignrec_data.download_result import Expected
    from alignrec_data.lockfile import LockEntry

log = logging.getLogger(__name__)

SECTION = "declared"
RELEASE = "declared"
FORMATS = ("csv", "tsv", "parquet", "jsonl")
# File name suffix -> format, when ``format`` is not given (a trailing .gz is ignored).
SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".inter": "tsv",  # MMRec's interaction files
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
URL_SCHEMES = ("http", "https", "file")
# The registry role of each part of a declaration -> its key (also its file's name in raw/).
PARTS = {"reviews": "interactions", "meta": "items"}
# Local images are written to items.parquet under this prefix (+ "<id>/"): see image_mirror.
IMAGE_HOST = "https://declared.invalid/"


# --- the declaration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InteractionsDecl:
    """``declared.<id>.interactions``: one row per interaction.

    Attributes:
        path: Local file (relative to the params file's folder) or http(s)/file URL.
        format: ``csv``, ``tsv``, ``parquet`` or ``jsonl``; None: from the file suffix.
        user: Column of the user key.
        item: Column of the item key.
        rating: Column of the rating (numbers), or None (ratings left null).
        timestamp: Column of the time: numbers are Unix seconds, strings are dates
            (``2020-06-12``, ISO 8601; UTC unless they say otherwise); None: no time (the
            ``random`` split only; duplicate pairs keep the first row).
        sha256: Expected sha256 of the file, or None (recorded on the first download).
    """

    path: str = ""
    format: str | None = None
    user: str = ""
    item: str = ""
    rating: str | None = None
    timestamp: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class ItemsDecl:
    """``declared.<id>.items``: one row per item (repeated rows are merged, first wins).

    Attributes:
        path: Local file or URL, as for the interactions.
        format: As for the interactions.
        item: Column of the item key (matched to the interactions' item key).
        item_offset: Added to an integer item key before matching (MovieLens ``items.csv``
            counts from 1, MMRec's ``.inter`` from 0: -1).
        title: Column of the title, or None.
        brand: Column of the brand, or None.
        description: Column of the description, or None.
        categories: Columns of the category path, most general first.
        text: Item text template over any columns (``"{prod_name} {detail_desc}"``; a name
            with spaces works: ``"{movie title}"``); each value is cleaned like Amazon text.
            None: ``prepare.text_template`` over title, brand, categories, description.
        image: Image template over any columns, giving a local path (relative to the params
            file's folder) or a URL; Python format specs work (``"{article_id:010d}.jpg"``),
            ``"{path_column}"`` takes a column as it is. None: no images.
        image_root: Folder that local images must lie in (relative to the params file's
            folder); None: the template's folder part before its first ``{`` (the params
            folder when it starts with one).
        sha256: Expected sha256 of the file, or None.
    """

    path: str = ""
    format: str | None = None
    item: str = ""
    item_offset: int = 0
    title: str | None = None
    brand: str | None = None
    description: str | None = None
    categories: tuple[str, ...] = ()
    text: str | None = None
    image: str | None = None
    image_root: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class DeclaredDataset:
    """``declared.<id>``: a dataset of your own.

    Attributes:
        interactions: The interactions file.
        items: The items file, or None (items without text or image).
        description: One line for ``alignrec-data datasets``.
        license: Terms of use of the data.
        citation: What to cite.
        homepage: Where the data is described.
    """

    interactions: InteractionsDecl = field(default_factory=InteractionsDecl)
    items: ItemsDecl | None = None
    description: str = ""
    license: str = ""
    citation: str = ""
    homepage: str = ""


@dataclass(frozen=True)
class Declared:
    """A checked declaration with everything resolved (what a DatasetSpec carries).

    Attributes:
        id: The dataset id.
        decl: The declaration as written.
        where: Its place, ``<params file>:declared.<id>``, for messages.
        base_dir: The params file's folder: relative paths start here.
        urls: Source URL per role (``reviews``: interactions, ``meta``: items).
        formats: Format per role.
        image_root: Folder of local images (absolute), or None without an image template.
    """

    id: str
    decl: DeclaredDataset
    where: str
    base_dir: Path
    urls: dict[str, str]
    formats: dict[str, str]
    image_root: Path | None

    def part(self, role: str) -> InteractionsDecl | ItemsDecl:
        """The declaration of a role's file."""
        return getattr(self.decl, PARTS[role])

    def key(self, role: str) -> str:
        """The params key of a role's file, for messages (``...declared.x.items``)."""
        return f"{self.where}.{PARTS[role]}"


def _template_fields(template: str, where: str, allow_spec: bool) -> list[str]:
    """The column names a template uses (checked: no conversions, attribute or index access)."""
    names = []
    for name, spec, conv, shown in template_fields(template, where, "e.g. '{title} {text}'"):
        bad = not name or conv or (spec and not allow_spec) or "{" in (spec or "")
        if bad or any(c in name for c in ".["):
            use = "{column} or {column:format}" if allow_spec else "{column}"
            msg = f"{where} {template!r}: field {shown} is not allowed; use {use} (a column name)"
            raise UsageError(msg)
        names.append(name)
    return names


def _source_url(value: str, base_dir: Path, where: str) -> str:
    """A declared path or URL (checked non-empty) as an absolute URL (http, https or file)."""
    scheme = urlsplit(value).scheme.lower()
    if scheme in URL_SCHEMES:
        return value
    if scheme and len(scheme) > 1:
        msg = f"{where}: {value!r} has unsupported scheme {scheme!r}; use http(s), file or a path"
        raise UsageError(msg)
    return (base_dir / Path(value).expanduser()).resolve().as_uri()


def local_path(url: str) -> Path | None:
    """The local file of a ``file://`` URL, or None for http(s)."""
    parts = urlsplit(url)
    return Path(url2pathname(unquote(parts.path))) if parts.scheme.lower() == "file" else None


def _format(part: InteractionsDecl | ItemsDecl, url: str, where: str) -> str:
    if part.format is not None:
        if part.format not in FORMATS:
            msg = f"{where}.format = {part.format!r} is not one of {', '.join(FORMATS)}"
            raise UsageError(msg)
        return part.format
    name = PurePosixPath(urlsplit(url).path).name.lower().removesuffix(".gz")
    fmt = SUFFIX_FORMATS.get(PurePosixPath(name).suffix)
    if fmt is None:
        msg = (
            f"{where}.format is not given and {name!r} does not tell it; "
            f"set format: to one of {', '.join(FORMATS)}"
        )
        raise UsageError(msg)
    return fmt


def _image_root(items: ItemsDecl, base_dir: Path, where: str) -> Path | None:
    if items.image is None:
        return None
    _template_fields(items.image, f"{where}.image", allow_spec=True)
    if items.image_root is not None:
        return Path(_lexical(base_dir / Path(items.image_root).expanduser()))
    head = items.image.split("{", 1)[0]
    if urlsplit(head).scheme.lower() in ("http", "https"):
        return base_dir  # URL images: the root only serves paths a column may hold
    folder = head.rsplit("/", 1)[0] if "/" in head else ""
    if folder.startswith("file://"):
        return local_path(folder + "/")
    return Path(_lexical(base_dir / folder)) if folder else base_dir


def check_declaration(
    dataset_id: str, decl: DeclaredDataset, where: str, base_dir: Path
) -> Declared:
    """Check a declaration and resolve its paths (nothing is read: files may be absent).

    Raises:
        UsageError: A missing or empty required key, a bad format, template, URL or sha256;
            the message names ``<params>:declared.<id>.<key>``.
    """
    parts: dict[str, InteractionsDecl | ItemsDecl] = {"reviews": decl.interactions}
    if decl.items is not None:
        parts["meta"] = decl.items
    urls, formats = {}, {}
    for role, part in parts.items():
        key = f"{where}.{PARTS[role]}"
        required = ("path", "user", "item") if role == "reviews" else ("path", "item")
        for name in required:
            value = getattr(part, name)
            if not isinstance(value, str) or not value.strip():
                what = "file" if name == "path" else "column"
                msg = f"{key}.{name} is required (the {name} {what})"
                raise UsageError(msg)
        if part.sha256 is not None and not SHA256.match(part.sha256):
            msg = f"{key}.sha256 must be 64 lower-case hex digits, found {part.sha256!r}"
            raise UsageError(msg)
        urls[role] = _source_url(part.path, base_dir, f"{key}.path")
        formats[role] = _format(part, urls[role], key)
    image_root = None
    if decl.items is not None:
        if decl.items.text is not None:
            _template_fields(decl.items.text, f"{where}.items.text", allow_spec=False)
        image_root = _image_root(decl.items, base_dir, f"{where}.items")
    return Declared(dataset_id, decl, where, base_dir, urls, formats, image_root)


def _raw_name(role: str, fmt: str, url: str) -> str:
    """The file's name in raw/: ``interactions.<format>`` / ``items.<format>`` (+ ``.gz``)."""
    gz = ".gz" if urlsplit(url).path.lower().endswith(".gz") else ""
    return f"{PARTS[role]}.{fmt}{gz}"


def _spec(d: Declared) -> DatasetSpec:
    files = tuple(
        FileSpec(role, _raw_name(role, d.formats[role], url), None, d.part(role).sha256, url=url)
        for role, url in d.urls.items()
    )
    decl = d.decl
    return DatasetSpec(
        id=d.id,
        release=RELEASE,
        category=d.id,
        description=decl.description or f"Declared in {d.where.rsplit(':', 1)[0]}.",
        license=decl.license,
        citation=decl.citation,
        homepage=decl.homepage,
        base_url=d.base_dir.as_uri() + "/",
        files=files,
        declared=d,
    )


def declared_specs(params: str | Path | None) -> dict[str, DatasetSpec]:
    """The datasets declared in a params file, ``{id: DatasetSpec}`` (empty without one).

    Raises:
        UsageError: ``declared`` is not a mapping, an id is not a valid name or is a registry
            id (or alias), or a declaration is malformed (the message names the key).
    """
    if params is None:
        return {}
    path = Path(params)
    stat = path.stat() if path.is_file() else None
    key = (str(path.resolve()), stat.st_mtime_ns if stat else None, stat.st_size if stat else None)
    return dict(_cached_specs(*key, shown=str(path)))


@functools.lru_cache(maxsize=16)
def _cached_specs(
    resolved: str, mtime_ns: int | None, size: int | None, *, shown: str
) -> dict[str, DatasetSpec]:
    section = load_params(shown).get(SECTION)
    if section is None:
        return {}
    check_mapping(section, f"{shown}:{SECTION}", "a mapping of dataset id to declaration")
    known = load_registry()
    base_dir = Path(resolved).parent
    out = {}
    for dataset_id, values in section.items():
        where = f"{shown}:{SECTION}.{dataset_id}"
        check_name(dataset_id, f"{shown}:{SECTION}: dataset id")
        if dataset_id in known:
            msg = (
                f"{where}: {dataset_id} is a registry id (Amazon {known[dataset_id].release}); "
                "a declared dataset must have its own id, e.g. my-" + dataset_id
            )
            raise UsageError(msg)
        decl = from_dict(DeclaredDataset, values if values is not None else {}, where)
        out[dataset_id] = _spec(check_declaration(dataset_id, decl, where, base_dir))
    return out


# --- download -----------------------------------------------------------------------------------


def check_sources(spec: DatasetSpec, files: tuple[FileSpec, ...]) -> None:
    """Name a local source file that does not exist before anything is fetched.

    Raises:
        UsageError: ``<params>:declared.<id>.<part>.path: file ... does not exist``.
    """
    d: Declared = spec.declared
    for f in files:
        path = local_path(f.url or "")
        if path is not None and not path.is_file():
            what = "is not a file" if path.exists() else "does not exist"
            msg = (
                f"{d.key(f.role)}.path: {path} {what}; fix the path in {d.where.rsplit(':', 1)[0]}"
            )
            raise UsageError(msg)


def expected(f: FileSpec, entry: LockEntry | None, final: Path, url: str) -> Expected:
    """What a declared file must hash to: the declared sha256, else the local source's.

    A local source is hashed on every download, so a copy in raw/ that no longer matches its
    source (the source was edited) is set aside and copied again, and the lock file records
    the new hash. A URL source uses the lock entry, unless the entry came from another URL
    (the declaration changed): then the old copy is set aside and the file fetched again.
    """
    from alignrec_data.download_job import set_aside
    from alignrec_data.download_result import Expected, expected_for
    from alignrec_data.integrity import sha256_file

    if f.sha256 is not None:
        return expected_for(f, entry, final.name)
    source = local_path(url)
    if source is not None:
        return Expected(source.stat().st_size, sha256_file(source), "first-use")
    if entry is not None and entry.url != url:
        if final.is_file():
            aside = set_aside(final, final, sha256_file(final))
            log.warning(
                "%s came from %s, now declared %s: set aside as %s",
                final.name,
                entry.url,
                url,
                aside.name,
            )
        entry = None
    return expected_for(f, entry, final.name)


# --- images -------------------------------------------------------------------------------------


def image_mirror(spec: DatasetSpec) -> str | None:
    """``PREFIX=FOLDER``: the ``images --mirror`` rule that reads the local images, or None."""
    d: Declared | None = spec.declared
    if d is None or d.image_root is None:
        return None
    return f"{IMAGE_HOST}{d.id}/={d.image_root}/"


def image_url(value: str, d: Declared) -> str | None:
    """The items.parquet URL of one image value: URLs kept, local paths under the root mapped.

    Returns:
        The URL, or None for an empty value or a local path outside the image root.
    """
    value = value.strip()
    if not value:
        return None
    scheme = urlsplit(value).scheme.lower()
    if scheme in ("http", "https"):
        return value
    if scheme == "file":
        path = local_path(value)
    elif scheme and len(scheme) > 1:
        return None
    else:
        path = d.base_dir / Path(value).expanduser()
    root = d.image_root or d.base_dir
    resolved = Path(_lexical(path))
    if not resolved.is_relative_to(root) or resolved == root:
        return None
    rel = resolved.relative_to(root).as_posix()
    return f"{IMAGE_HOST}{d.id}/{quote(rel, safe='/')}"


class ImageCounts:
    """Maps a declared items file's image values to URLs (:func:`image_url`), counting them.

    ``counts``: ``local`` (a path under the image root), ``url`` (kept as given) and
    ``unusable`` (empty, or outside the root) values; ``prepare`` records them.
    """

    def __init__(self, d: Declared) -> None:
        self.d = d
        self.counts = {"local": 0, "url": 0, "unusable": 0}

    def url(self, value: str) -> str | None:
        """The URL of ``value`` (:func:`image_url`), counted."""
        url = image_url(value, self.d)
        kind = "unusable" if url is None else ("local" if url.startswith(IMAGE_HOST) else "url")
        self.counts[kind] += 1
        return url


def _lexical(path: Path) -> str:
    """``path`` made absolute with ``..`` removed, links not followed.

    The file may not exist; the images stage checks the real path against its mirror folder.
    """
    return os.path.normpath(os.path.abspath(path))
