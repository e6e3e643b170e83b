"""Parameters: one frozen dataclass per ``params.yaml`` section, loaded by one function.

``params.yaml`` (the DVC default params file) has one top-level section per pipeline stage
(``download``, ``prepare``, ``images``, ``pretrain``, ``extract``, ``train``, ``evaluate``,
``release``) plus ``datasets``. Each module that owns a stage defines its config dataclass with
commented defaults; :func:`load_section` fills it from a params file and rejects unknown keys,
so a typo in ``params.yaml`` is an error and not a silently ignored setting. Without a params
file the dataclass defaults are the packaged defaults.

Every config checks its values one way: its ``__post_init__`` calls :func:`check_ranges`, so a
config is valid from construction, whether loaded here, built in code, or changed by a
command-line override with :func:`dataclasses.replace`, and every message names
``<section>.<key>``, the value found and the values expected.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from alignrec_data.errors import UsageError

T = TypeVar("T")

DEFAULT_PARAMS_FILE = "params.yaml"


def resolve_params_path(path: str | Path | None) -> Path | None:
    """Return the params file to use: ``path`` if given, else ``./params.yaml`` if present.

    Args:
        path: Explicit params file, or None.

    Returns:
        The params file, or None to use the packaged defaults.

    Raises:
        UsageError: ``path`` was given and does not exist.
    """
    if path is not None:
        p = Path(path)
        if not p.is_file():
            what = "is not a file" if p.exists() else "does not exist"
            msg = f"params file {p} {what}; pass an existing YAML file to --params"
            raise UsageError(msg)
        return p
    p = Path(DEFAULT_PARAMS_FILE)
    return p if p.is_file() else None


def load_params(path: str | Path | None) -> dict[str, Any]:
    """Read a params YAML file into a dict (empty dict for ``None``).

    Args:
        path: The params file, or None for the packaged defaults.

    Returns:
        The parsed mapping.

    Raises:
        UsageError: The file is not valid YAML or its top level is not a mapping.
    """
    if path is None:
        return {}
    p = Path(path)
    max_bytes = 16 * 1024 * 1024
    try:
        if p.stat().st_size > max_bytes:
            msg = f"params file {p} is over 16 MB; pass a params YAML file to --params"
            raise UsageError(msg)
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        byte = err.object[err.start]
        msg = (
            f"params file {p} is not UTF-8 text (byte {err.start} is {byte:#04x}); "
            "pass a params YAML file to --params"
        )
        raise UsageError(msg) from err
    except OSError as err:
        msg = f"params file {p} cannot be read ({err.strerror}); pass a readable YAML file"
        raise UsageError(msg) from err
    except yaml.YAMLError as err:
        first = " ".join(str(err).split())
        msg = f"params file {p} is not valid YAML: {first}; fix the file or pass another --params"
        raise UsageError(msg) from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        found = type(data).__name__
        msg = f"params file {p}: expected a mapping of sections at the top level, found {found}"
        raise UsageError(msg)
    return data


def check_ranges(config: Any, section: str, checks: Mapping[str, tuple[bool, str]]) -> None:
    """Raise one error naming every key of ``config`` whose value is out of range.

    Called from the ``__post_init__`` of each config dataclass.

    Args:
        config: The config dataclass; the found values are read from it by key.
        section: Its place in ``params.yaml`` as written in messages, e.g. ``"train"`` or
            ``"train.alignrec"``.
        checks: ``{key: (holds, expected)}``: whether the value is allowed, and the allowed
            values in words (``">= 1"``, ``"one of image, text"``).

    Raises:
        UsageError: ``<section>.<key> = <found> is out of range: expected <expected>`` for each
            failed check (joined by ``;``), then the fix.
    """
    problems = [
        f"{section}.{key} = {_shown(getattr(config, key))!r} is out of range: expected {expected}"
        for key, (holds, expected) in checks.items()
        if not holds
    ]
    if problems:
        msg = "; ".join(problems) + "; fix params.yaml or the command-line override"
        raise UsageError(msg)


def _shown(value: Any) -> Any:
    """A value as written in ``params.yaml`` (tuples as lists)."""
    return [_shown(v) for v in value] if isinstance(value, tuple) else value


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert YAML values to the dataclass field type (tuples from lists, floats from ints)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(value, non_none[0], where) if len(non_none) == 1 else value
    if dataclasses.is_dataclass(annotation) and isinstance(value, dict):
        return from_dict(annotation, value, where)
    if origin is tuple and isinstance(value, list | tuple):
        inner = args[0] if args else Any
        return tuple(_coerce(v, inner, where) for v in value)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        try:
            return float(value)  # YAML reads "1e-3" as a string
        except ValueError:
            pass
    expected = annotation if isinstance(annotation, type) else None
    if expected in (int, float, str, bool) and not isinstance(value, expected):
        if not (expected is float and isinstance(value, int)):
            msg = f"{where}: expected {expected.__name__}, found {value!r} ({type(value).__name__})"
            raise UsageError(msg)
    return value


def from_dict(cls: type[T], values: dict[str, Any], where: str) -> T:
    """Build dataclass ``cls`` from ``values``, rejecting unknown keys.

    Args:
        cls: A dataclass type.
        values: Mapping of field name to value.
        where: Name used in error messages (e.g. ``params.yaml:train``).

    Returns:
        The dataclass instance.

    Raises:
        UsageError: Unknown keys or values of the wrong type.
    """
    if not isinstance(values, dict):
        msg = f"{where}: expected a mapping, found {type(values).__name__}"
        raise UsageError(msg)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - names)
    if unknown:
        msg = (
            f"{where}: unknown key(s) {', '.join(unknown)}; "
            f"known keys are {', '.join(sorted(names))}"
        )
        raise UsageError(msg)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()}
    return cls(**kwargs)


def load_section(path: str | Path | None, section: str, cls: type[T]) -> T:
    """Load one section of a params file into its config dataclass.

    Args:
        path: The params file, or None for the packaged defaults (the dataclass defaults).
        section: Top-level key, e.g. ``"train"``.
        cls: The section's frozen dataclass.

    Returns:
        The config; missing keys take the dataclass defaults.
    """
    params = load_params(path)
    values = params.get(section) or {}
    try:
        return from_dict(cls, values, f"{path or 'defaults'}:{section}")
    except UsageError as err:
        if path is None or str(path) in str(err):
            raise
        msg = f"params file {path}: {err}"  # a range check of the dataclass names no file
        raise UsageError(msg, hint=err.hint) from err


def to_dict(config: Any) -> dict[str, Any]:
    """Return a config dataclass as a plain dict (tuples as lists), e.g. for metadata."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {k: plain(v) for k, v in dataclasses.asdict(config).items()}
