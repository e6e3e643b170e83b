"""The dataset registry: which files make up each dataset id, where they live, how to verify them.

The registry is data, not code: ``alignrec_data/registry_data/datasets.json`` inside the package.
Each entry names a release (2014 / 2018 / 2023 / synthetic), a category, an official base URL
and its files (reviews, metadata, ratings where they exist) with size and sha256 where known
(``null`` = unknown: the first download records them in the lock file, see
:mod:`alignrec_data.lockfile`). Licence, citation and homepage come from the release unless an
entry sets its own.

File names are paths relative to the base URL (the 2018 host keeps reviews and metadata in two
folders: ``categoryFilesSmall/...`` and ``metaFiles2/...``). A mirror replaces the base URL and
must keep that relative layout. On disk every file lies flat in the raw folder under its last
path component (:func:`raw_path`). Registry entries and mirrors are untrusted: every name is
validated so that it can never point outside the raw folder.

Nothing is read at import time; the JSON is parsed once, on first use.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from alignrec_data.errors import UsageError

MIRROR_ENV = "ALIGNREC_MIRROR"
PACKAGE_SCHEME = "package:"
REGISTRY_RESOURCE = ("registry_data", "datasets.json")
ROLES = ("reviews", "meta", "ratings")
RELEASES = ("2014", "2018", "2023", "synthetic")

_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset.

    Attributes:
        role: ``"reviews"``, ``"meta"`` or ``"ratings"``.
        name: Path relative to the dataset's base URL (``/``-separated, never ``..``).
        size: Size in bytes, or None when unknown.
        sha256: Lower-case hex sha256, or None when unknown (trust on first use).
    """

    role: str
    name: str
    size: int | None
    sha256: str | None

    @property
    def filename(self) -> str:
        """The file's name on disk: the last component of :attr:`name`."""
        return PurePosixPath(self.name).name


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

    @property
    def total_size(self) -> int | None:
        """Sum of the file sizes, or None when any size is unknown."""
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[arg-type]


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


def _package_folder_url(folder: str) -> str:
    """``file://`` URL of a folder inside the installed alignrec_data package."""
    rel = validate_name(folder, "package folder")
    root = resources.files("alignrec_data").joinpath(*rel.parts)
    # An installed or editable package is a real folder on disk (never a zip here).
    return Path(str(root)).resolve().as_uri() + "/"


def _as_base_url(value: str, spec: DatasetSpec) -> str:
    """Normalise a base URL or path (package:, file://, http(s)://, plain path) to a URL."""
    value = value.replace("{dataset}", spec.id).replace("{release}", spec.release)
    if value.startswith(PACKAGE_SCHEME):
        return _package_folder_url(value[len(PACKAGE_SCHEME) :].strip("/"))
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
    chosen = mirror or os.environ.get(MIRROR_ENV) or spec.base_url
    return _as_base_url(chosen, spec)


def file_url(base_url: str, f: FileSpec) -> str:
    """URL of file ``f`` under a resolved base URL (the name is validated first)."""
    rel = validate_name(f.name, f"file name of role {f.role}")
    return base_url + "/".join(rel.parts)


def _build(entry: dict[str, Any], releases: dict[str, Any], where: str) -> DatasetSpec:
    """Build and check one DatasetSpec from its JSON entry."""
    try:
        release = entry["release"]
        rel_defaults = releases.get(release, {})
        files = tuple(
            FileSpec(role=f["role"], name=f["name"], size=f.get("size"), sha256=f.get("sha256"))
            for f in entry["files"]
        )
        spec = DatasetSpec(
            id=entry["id"],
            release=release,
            category=entry["category"],
            description=entry["description"],
            license=entry.get("license", rel_defaults.get("license", "")),
            citation=entry.get("citation", rel_defaults.get("citation", "")),
            homepage=entry.get("homepage", rel_defaults.get("homepage", "")),
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
        if f.sha256 is not None and not _SHA256.match(f.sha256):
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
    return spec


def load_registry(path: Path | None = None) -> dict[str, DatasetSpec]:
    """Parse a registry JSON file (default: the packaged one) into ``{id: DatasetSpec}``.

    Args:
        path: A registry file with the packaged layout, or None for the packaged registry.

    Raises:
        UsageError: The file is malformed (the message names the entry and field).
    """
    if path is None:
        return dict(_packaged_registry())
    return _parse(Path(path).read_text(encoding="utf-8"), str(path))


@functools.cache
def _packaged_registry() -> dict[str, DatasetSpec]:
    text = resources.files("alignrec_data").joinpath(*REGISTRY_RESOURCE).read_text("utf-8")
    return _parse(text, "alignrec_data/" + "/".join(REGISTRY_RESOURCE))


def _parse(text: str, where: str) -> dict[str, DatasetSpec]:
    doc = json.loads(text)
    releases = doc.get("releases", {})
    out: dict[str, DatasetSpec] = {}
    for i, entry in enumerate(doc.get("datasets", [])):
        spec = _build(entry, releases, f"{where} dataset #{i} ({entry.get('id', '?')})")
        if spec.id in out:
            msg = f"{where}: dataset id {spec.id} appears twice"
            raise UsageError(msg)
        out[spec.id] = spec
    return out


def list_datasets() -> list[DatasetSpec]:
    """All registered datasets, in registry order."""
    return list(_packaged_registry().values())


def get_dataset(dataset_id: str) -> DatasetSpec:
    """Return the registry entry of ``dataset_id``.

    Raises:
        UsageError: Unknown id; the message lists the known ids.
    """
    reg = _packaged_registry()
    try:
        return reg[dataset_id]
    except KeyError:
        msg = f"unknown dataset id {dataset_id!r}; known ids: {', '.join(reg)}"
        raise UsageError(msg, hint="run `alignrec-data datasets` to list them") from None
