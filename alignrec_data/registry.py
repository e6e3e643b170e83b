"""The dataset registry: which files make up each dataset id, where they live, how to verify them.

The registry is data, not code: ``alignrec_data/registry_data/datasets.json`` inside the package.
Every category of the three Amazon releases (2014: 24, 2018: 29, 2023: 33 + ``Unknown``) is
generated from one table, ``registry_data/amazon_categories.json``: one row per file (release,
category, role, name, size, sha256, base URL). A category becomes the id
``amazon<release>-<category in lower case, _ as ->`` (:func:`dataset_id`), e.g.
``amazon2018-gift-cards``; it takes licence, citation, homepage and its description template
from the release. Entries written out in full (``amazon-mini``) sit in ``datasets.json`` beside
``aliases``: older ids (``amazon-baby`` ...) that name the same files as a generated id but keep
their own data folder. Size and sha256 are ``null`` where unknown: the first download records
them in the lock file (trust on first use, see :mod:`alignrec_data.lockfile`).

Every file has a role: ``reviews`` and ``meta`` are what ``prepare`` reads
(:data:`PREPARE_ROLES`, fetched by default); the others (``ratings``, the all-ratings CSV) are
optional: fetched only when asked for, and never an error when a mirror lacks them.

File names are paths relative to the base URL (the 2018 host keeps reviews and metadata in two
folders: ``categoryFilesSmall/...`` and ``metaFiles2/...``). A mirror replaces the base URL and
must keep that relative layout. On disk every file lies flat in the raw folder under its last
path component (:func:`raw_path`). Registry entries and mirrors are untrusted: every name is
validated so that it can never point outside the raw folder.

Datasets declared in a params file (``declared:``, :mod:`alignrec_data.declared`) join the
registry when the params file is given (``get_dataset(id, params=...)``,
``list_datasets(params=...)``): release ``declared``, each file with its own source ``url``.
A declared id must not be a registry id.

Nothing is read at import time; the JSON is parsed once, on first use.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import re
from dataclasses import dataclass, replace
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from alignrec_data.errors import UsageError
from alignrec_data.paths import check_name
from alignrec_data.registry_tables import dataset_id, table_entries

# The generated ids live in their own module; importers of the registry find them here too.
__all__ = [
    "GROUPS",
    "MIRROR_ENV",
    "PACKAGE_SCHEME",
    "PREPARE_ROLES",
    "REGISTRY_RESOURCE",
    "RELEASES",
    "ROLES",
    "SHA256",
    "DatasetSpec",
    "FileSpec",
    "closest_ids",
    "dataset_id",
    "file_url",
    "get_dataset",
    "list_datasets",
    "load_registry",
    "raw_path",
    "resolve_base_url",
    "validate_name",
]

MIRROR_ENV = "ALIGNREC_MIRROR"
PACKAGE_SCHEME = "package:"
REGISTRY_RESOURCE = ("registry_data", "datasets.json")
ROLES = ("reviews", "meta", "ratings")
PREPARE_ROLES = ("reviews", "meta")  # read by prepare, fetched by default; the rest is optional
RELEASES = ("2014", "2018", "2023", "synthetic")
GROUPS = (*RELEASES, "declared")  # what `datasets --release` filters: + datasets of params.yaml

_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")  # also checks the sha256 of declared files


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset.

    Attributes:
        role: ``"reviews"``, ``"meta"`` or ``"ratings"``.
        name: Path relative to the dataset's base URL (``/``-separated, never ``..``).
        size: Size in bytes, or None when unknown.
        sha256: Lower-case hex sha256, or None when unknown (trust on first use).
        url: The file's own source URL (declared datasets), or None: base URL + name.
    """

    role: str
    name: str
    size: int | None
    sha256: str | None
    url: str | None = None

    @property
    def filename(self) -> str:
        """The file's name on disk: the last component of :attr:`name`."""
        return PurePosixPath(self.name).name

    @property
    def optional(self) -> bool:
        """True when ``prepare`` does not read it (fetched only with ``--all-files``)."""
        return self.role not in PREPARE_ROLES


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset id of the registry.

    Attributes:
        id: Dataset id used on the command line and as the data folder name.
        release: ``"2014"``, ``"2018"``, ``"2023"`` (or ``"synthetic"``), the raw format.
        category: Amazon category name as used in the file names (e.g. ``Sports_and_Outdoors``).
        description: One line for ``alignrec-data datasets``.
        license: Terms of use of the raw data.
        citation: What to cite when using it.
        homepage: Where the release is described.
        base_url: Official base URL of the files (``package:<folder>`` for data shipped in the
            package); a mirror replaces it.
        files: The files, one per role.
        image_base_url: Prefix of the image URLs in the metadata that the images stage may
            rewrite to a mirror (used by ``amazon-mini``), or None.
        synthetic: True for generated data shipped with the package.
        alias_of: For an alias (an older id such as ``amazon-baby``), the generated id it names
            the same files as; None otherwise. An alias keeps its own data folder.
        aliases: The aliases of this id.
        declared: For a dataset declared in a params file, its checked declaration
            (:class:`alignrec_data.declared.Declared`); None for registry ids.
    """

    id: str
    release: str
    category: str
    description: str
    license: str
    citation: str
    homepage: str
    base_url: str
    files: tuple[FileSpec, ...]
    image_base_url: str | None = None
    synthetic: bool = False
    alias_of: str | None = None
    aliases: tuple[str, ...] = ()
    declared: Any = None

    @property
    def group(self) -> str:
        """The release as ``datasets --release`` filters it (``synthetic``: generated data).

        Datasets declared in a params file have release ``declared``.
        """
        return "synthetic" if self.synthetic else self.release

    def files_for(self, all_files: bool = False) -> tuple[FileSpec, ...]:
        """The files ``prepare`` reads (:data:`PREPARE_ROLES`), or every file with ``all_files``."""
        return self.files if all_files else tuple(f for f in self.files if not f.optional)

    def file(self, role: str) -> FileSpec:
        """Return the file with ``role``.

        Raises:
            UsageError: The dataset has no file with that role (the message names those it has).
        """
        for f in self.files:
            if f.role == role:
                return f
        have = ", ".join(f.role for f in self.files)
        msg = f"dataset {self.id} has no {role!r} file; it has: {have}"
        raise UsageError(msg)


def validate_name(name: str, where: str = "file name") -> PurePosixPath:
    """Check that a relative file name from a registry or mirror stays inside its folder.

    Allowed: ``/``-separated components of letters, digits, ``._+-`` that do not start with a
    dot (so no ``..``, no hidden files), no absolute paths, no backslashes, no empty parts.

    Args:
        name: The untrusted name.
        where: What the name belongs to, for the error message.

    Returns:
        The name as a PurePosixPath.

    Raises:
        UsageError: The name could escape the data folder or is otherwise unsafe.
    """
    parts = name.split("/") if isinstance(name, str) else []
    if not parts or not all(_SAFE_PART.match(p) for p in parts):
        msg = (
            f"{where} {name!r} is not a safe relative file name: expected '/'-separated parts "
            "of letters, digits and ._+- that do not start with '.' (no '..', no absolute "
            "path); fix the registry entry or the mirror"
        )
        raise UsageError(msg)
    return PurePosixPath(*parts)


def raw_path(raw_dir: Path, spec: DatasetSpec, role: str) -> Path:
    """Return ``<raw_dir>/<file name>`` of the file with ``role``, validated to stay in raw_dir.

    The name is one safe path component (:func:`validate_name`), so the path is always
    directly inside ``raw_dir``. Nothing on disk is touched: the file may be absent, or a
    symbolic link (to a shared disk, say; :func:`check_links` reports a broken one).

    Args:
        raw_dir: The dataset's raw folder (``DatasetPaths.raw``).
        spec: The dataset.
        role: ``"reviews"``, ``"meta"`` or ``"ratings"``.

    Raises:
        UsageError: Unknown role, or a name that would escape ``raw_dir``.
    """
    f = spec.file(role)
    name = validate_name(f.name, f"{spec.id} {role} file name").name
    return Path(raw_dir) / name


def resolve_base_url(spec: DatasetSpec, mirror: str | None = None) -> str:
    """Return the base URL to fetch ``spec``'s files from, always ending with ``/``.

    Precedence: ``mirror``, then ``$ALIGNREC_MIRROR``, then ``spec.base_url``. A mirror may
    contain ``{dataset}`` and ``{release}``, replaced by the dataset id and release, so one
    variable can serve several datasets. ``package:<folder>`` is a folder inside the installed
    ``alignrec_data`` package; plain filesystem paths become ``file://`` URLs.

    Args:
        spec: The dataset.
        mirror: URL or folder replacing the official base URL, or None.

    Raises:
        UsageError: Unsupported URL scheme.
    """
    value = mirror or os.environ.get(MIRROR_ENV) or spec.base_url
    value = value.replace("{dataset}", spec.id).replace("{release}", spec.release)
    if value.startswith(PACKAGE_SCHEME):
        rel = validate_name(value[len(PACKAGE_SCHEME) :].strip("/"), "package folder")
        root = resources.files("alignrec_data").joinpath(*rel.parts)
        # An installed or editable package is a real folder on disk (never a zip here).
        return Path(str(root)).resolve().as_uri() + "/"
    scheme = urlsplit(value).scheme.lower()
    if scheme in ("http", "https", "file"):
        return value if value.endswith("/") else value + "/"
    if scheme and len(scheme) > 1:  # "C:" on Windows is a drive, not a scheme
        msg = (
            f"mirror or base URL {value!r} has unsupported scheme {scheme!r}; "
            "expected http://, https://, file:// or a local folder path"
        )
        raise UsageError(msg)
    return Path(value).expanduser().resolve().as_uri() + "/"


def file_url(base_url: str, f: FileSpec) -> str:
    """URL of file ``f`` under a resolved base URL (the name is validated first)."""
    rel = validate_name(f.name, f"file name of role {f.role}")
    return base_url + "/".join(rel.parts)


def _build(entry: dict[str, Any], releases: dict[str, Any], where: str) -> DatasetSpec:
    """Build and check one DatasetSpec from its JSON entry."""
    try:
        rel_defaults = releases.get(entry["release"], {})
        files = tuple(
            FileSpec(role=f["role"], name=f["name"], size=f.get("size"), sha256=f.get("sha256"))
            for f in entry["files"]
        )
        spec = DatasetSpec(
            **{k: entry[k] for k in ("id", "release", "category", "description")},
            **{
                k: entry.get(k, rel_defaults.get(k, ""))
                for k in ("license", "citation", "homepage")
            },
            base_url=entry["base_url"],
            files=files,
            image_base_url=entry.get("image_base_url"),
            synthetic=bool(entry.get("synthetic", False)),
        )
    except (KeyError, TypeError) as err:
        msg = f"{where}: registry entry is missing or has a malformed field: {err}"
        raise UsageError(msg) from err
    if spec.release not in RELEASES:
        msg = f"{where}: release {spec.release!r} is not one of {', '.join(RELEASES)}"
        raise UsageError(msg)
    names = set()
    for f in spec.files:
        if f.role not in ROLES:
            msg = f"{where}: file role {f.role!r} is not one of {', '.join(ROLES)}"
            raise UsageError(msg)
        validate_name(f.name, f"{where} file name")
        if f.sha256 is not None and not SHA256.match(f.sha256):
            msg = (
                f"{where}: sha256 of {f.name} must be 64 lower-case hex digits, found {f.sha256!r}"
            )
            raise UsageError(msg)
        if f.size is not None and (not isinstance(f.size, int) or f.size < 0):
            msg = f"{where}: size of {f.name} must be a non-negative integer, found {f.size!r}"
            raise UsageError(msg)
        if f.filename in names:
            msg = f"{where}: two files would both be stored as {f.filename}"
            raise UsageError(msg)
        names.add(f.filename)
    missing = [r for r in PREPARE_ROLES if r not in {f.role for f in spec.files}]
    if missing:
        need = ", ".join(PREPARE_ROLES)
        msg = f"{where}: no {' and no '.join(missing)} file (prepare reads {need})"
        raise UsageError(msg)
    return spec


def load_registry(path: Path | None = None) -> dict[str, DatasetSpec]:
    """Parse a registry JSON file (default: the packaged one) into ``{id: DatasetSpec}``.

    The result holds every id: those generated from the tables, those written out in full and
    the aliases (``alias_of`` set).

    Args:
        path: A registry file with the packaged layout (its ``tables`` lie beside it), or None
            for the packaged registry.

    Raises:
        UsageError: The file is malformed (the message names the entry and field).
    """
    if path is None:
        return dict(_packaged_registry())
    path = Path(path)
    return _parse(path.parent, path.name, str(path))


@functools.cache
def _packaged_registry() -> dict[str, DatasetSpec]:
    folder = resources.files("alignrec_data").joinpath(REGISTRY_RESOURCE[0])
    return _parse(folder, REGISTRY_RESOURCE[1], "alignrec_data/" + "/".join(REGISTRY_RESOURCE))


def _parse(folder: Path | Traversable, name: str, where: str) -> dict[str, DatasetSpec]:
    """The registry file ``name`` in ``folder`` (its tables lie beside it); ``where`` names it."""
    doc = json.loads(folder.joinpath(name).read_text("utf-8"))
    releases = doc.get("releases", {})
    out: dict[str, DatasetSpec] = {}

    def add(spec: DatasetSpec, source: str) -> None:
        check_name(spec.id, f"{source}: dataset id")
        if spec.id in out:
            msg = f"{where}: dataset id {spec.id} appears twice"
            raise UsageError(msg)
        out[spec.id] = spec

    for table in doc.get("tables", []):
        table = validate_name(table, f"{where} table").as_posix()
        rows = json.loads(folder.joinpath(table).read_text("utf-8"))
        for entry, source in table_entries(rows, releases, f"{where}: table {table}"):
            add(_build(entry, releases, source), source)
    for i, entry in enumerate(doc.get("datasets", [])):
        source = f"{where} dataset #{i} ({entry.get('id', '?')})"
        add(_build(entry, releases, source), source)
    for alias, target in doc.get("aliases", {}).items():
        check_name(alias, f"{where}: alias")
        if alias in out:
            msg = f"{where}: alias {alias} is also a dataset id"
            raise UsageError(msg)
        spec = out.get(target)
        if spec is None or spec.alias_of is not None:
            msg = f"{where}: alias {alias} names {target!r}, which is not a dataset id"
            raise UsageError(msg)
        out[target] = replace(spec, aliases=(*spec.aliases, alias))
        out[alias] = replace(spec, id=alias, alias_of=target, aliases=())
    return out


def _declared(params: str | Path | None) -> dict[str, DatasetSpec]:
    """The datasets declared in ``params`` (lazy import: declared imports this module)."""
    from alignrec_data.declared import declared_specs

    return declared_specs(params)


def list_datasets(
    release: str | None = None, *, aliases: bool = False, params: str | Path | None = None
) -> list[DatasetSpec]:
    """The registered datasets in registry order, each alias right after its id.

    Args:
        release: Only this release (``2014``, ``2018``, ``2023``, ``synthetic`` for the
            generated sets, which no other release includes, or ``declared``), or None for all.
        aliases: Include the aliases (older ids such as ``amazon-baby``).
        params: A params file whose ``declared:`` datasets follow the registry's, or None.

    Raises:
        UsageError: ``release`` is not one of :data:`GROUPS`; a malformed declaration.
    """
    if release is not None and release not in GROUPS:
        msg = f"release {release!r} is not one of {', '.join(GROUPS)}"
        raise UsageError(msg)
    reg = {**_packaged_registry(), **_declared(params)}
    out = []
    for spec in reg.values():
        if spec.alias_of is not None or (release is not None and spec.group != release):
            continue
        out.append(spec)
        if aliases:
            out += [reg[a] for a in spec.aliases]
    return out


def _slug(dataset: str) -> str:
    """An id without its ``amazon<release>-`` prefix: what names the category."""
    return re.sub(r"^amazon(?:\d{4})?-", "", dataset.lower())


def closest_ids(dataset: str, params: str | Path | None = None) -> list[str]:
    """The (at most five) registered ids, aliases included, closest to ``dataset``, best first.

    Compares whole ids and, separately, the category parts, so ``baby`` finds
    ``amazon2014-baby`` and ``amazon2018-beauty`` finds ``amazon2018-all-beauty``.
    """
    query = dataset.lower()

    def score(known: str) -> float:
        whole = difflib.SequenceMatcher(None, query, known).ratio()
        part = difflib.SequenceMatcher(None, _slug(query), _slug(known)).ratio()
        return max(whole, part)

    known = [*_packaged_registry(), *_declared(params)]
    scored = sorted(((score(k), k) for k in known), key=lambda t: (-t[0], t[1]))
    return [k for s, k in scored[:5] if s >= 0.6]


def get_dataset(dataset_id: str, params: str | Path | None = None) -> DatasetSpec:
    """Return the registry entry of ``dataset_id`` (an alias returns its own entry).

    Args:
        dataset_id: A registry id, alias or, with ``params``, a declared id.
        params: A params file whose ``declared:`` section is searched too, or None.

    Raises:
        UsageError: Unknown id (the message names the closest known ids), or a malformed
            declaration in ``params``.
    """
    reg = _packaged_registry()
    declared = _declared(params)  # checked first: a declaration may not shadow a registry id
    if dataset_id in reg:
        return reg[dataset_id]
    try:
        return declared[dataset_id]
    except KeyError:
        close = closest_ids(str(dataset_id), params=params)
        found = f"closest: {', '.join(close)}" if close else "no registered id is close"
        msg = f"unknown dataset id {dataset_id!r}; {found}"
        hint = (
            f"run `alignrec-data datasets` to list all {len(reg) + len(declared)} ids "
            "(`--release 2014|2018|2023|synthetic|declared` for one release); declare your "
            "own under `declared:` in params.yaml (docs/declared.md)"
        )
        raise UsageError(msg, hint=hint) from None
