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

Settings per dataset (:func:`load_settings`, what every command taking a DATASET uses): one
(dataset, section) resolves, each layer over the one before,

1. the dataclass defaults (for ``train``: the spec / MMRec rules for real data: lr 1e-3, at
   most 1000 epochs, patience 30, the public grids);
2. the packaged per-dataset defaults, ``alignrec_data/registry_data/settings.json`` (only
   ``amazon-mini``, the generated CPU dataset: short runs);
3. the params file's section (``train:``), for every dataset;
4. the params file's ``overrides.<section>.<dataset>`` (section first, so that a DVC stage
   depends on ``overrides.<section>``, a key that is always present; see ``params.yaml``);
5. the command-line options (``--epochs`` ...).

Each layer is checked on its own (an unknown key names ``overrides.<section>.<dataset>.<key>``),
nested sections (``train.alignrec``) merge key by key, and the keys that end up away from the
dataclass defaults are logged at INFO with the layer that set them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import types
import typing
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from alignrec_data.errors import UsageError

T = TypeVar("T")

logger = logging.getLogger(__name__)

DEFAULT_PARAMS_FILE = "params.yaml"
OVERRIDES = "overrides"
# The sections that take per-dataset settings (one per command that takes a DATASET).
SETTINGS_SECTIONS = (
    "download",
    "prepare",
    "images",
    "pretrain",
    "extract",
    "train",
    "evaluate",
    "leaderboard",
    "release",
)
PACKAGED_SETTINGS = ("registry_data", "settings.json")
# Keys named in every settings log line of a section, default or not.
HEADLINE_SETTINGS = {"train": ("lr", "epochs", "patience")}
# The layers of one (dataset, section), lowest first: ``[(where they are written, values)]``.
Layers = list[tuple[str, dict[str, Any]]]


def resolve_params_path(path: str | Path | None) -> Path | None:
    """Return the params file to use: ``path`` if given, else ``./params.yaml`` if present.

    Args:
        path: Explicit params file, or None.

    Returns:
        The params file, or None to use the packaged defaults.

    Raises:
        UsageError: ``path`` was given and does not exist.
    """
    p = Path(DEFAULT_PARAMS_FILE if path is None else path)
    if p.is_file():
        return p
    if path is None:
        return None
    what = "is not a file" if p.exists() else "does not exist"
    msg = f"params file {p} {what}; pass an existing YAML file to --params"
    raise UsageError(msg)


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
    try:
        if p.stat().st_size > 16 * 1024 * 1024:
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
    return check_mapping(data, f"params file {p}", "a mapping of sections at the top level")


def check_mapping(value: Any, where: str, expected: str = "a mapping") -> dict[str, Any]:
    """Return ``value`` if it is a mapping.

    Raises:
        UsageError: ``<where>: expected <expected>, found <type>``.
    """
    if not isinstance(value, dict):
        msg = f"{where}: expected {expected}, found {type(value).__name__}"
        raise UsageError(msg)
    return value


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
    """A value as written in ``params.yaml`` (tuples as lists, in mappings too)."""
    if isinstance(value, tuple | list):
        return [_shown(v) for v in value]
    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    return value


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
    if annotation is float and isinstance(value, int | str) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            return float(value)  # YAML reads "1e-3" as a string
    # A float field also takes a bool (an int), as Python does.
    accepted = (float, int) if annotation is float else annotation
    if annotation in (int, float, str, bool) and not isinstance(value, accepted):
        found = f"{value!r} ({type(value).__name__})"
        msg = f"{where}: expected {annotation.__name__}, found {found}"
        raise UsageError(msg)
    return value


def _field_hints(cls: type, values: Any, where: str) -> dict[str, Any]:
    """The type hints of ``cls``'s fields, after checking ``values`` is a mapping of them.

    Raises:
        UsageError: ``values`` is not a mapping, or has keys that are not fields of ``cls``.
    """
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(str(k) for k in set(check_mapping(values, where)) - names)
    if unknown:
        known = ", ".join(sorted(names))
        msg = f"{where}: unknown key(s) {', '.join(unknown)}; known keys are {known}"
        raise UsageError(msg)
    return typing.get_type_hints(cls)


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
    hints = _field_hints(cls, values, where)
    return cls(**{k: _coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()})


def load_section(path: str | Path | None, section: str, cls: type[T]) -> T:
    """Load one section of a params file into its config dataclass.

    Args:
        path: The params file, or None for the packaged defaults (the dataclass defaults).
        section: Top-level key, e.g. ``"train"``.
        cls: The section's frozen dataclass.

    Returns:
        The config; missing keys take the dataclass defaults.
    """
    return _from_params(cls, load_params(path).get(section) or {}, path, section)


def _from_params(
    cls: type[T], values: dict[str, Any], path: str | Path | None, section: str, set_by: Any = ()
) -> T:
    """:func:`from_dict` for a params section; an error that names no file gets the file named.

    ``set_by`` lists the per-dataset override layers that went into ``values``.
    """
    try:
        return from_dict(cls, values, f"{path or 'defaults'}:{section}")
    except UsageError as err:
        if path is None or str(path) in str(err):
            raise
        where = f" (with {', '.join(set_by)})" if set_by else ""
        msg = f"params file {path}{where}: {err}"  # a range check of the dataclass names no file
        raise UsageError(msg, hint=err.hint) from err


def to_dict(config: Any) -> dict[str, Any]:
    """Return a config dataclass as a plain dict (tuples as lists), e.g. for metadata."""
    return _shown(dataclasses.asdict(config))


# ----------------------------------------------------------------------- settings per dataset


@functools.cache
def packaged_settings() -> dict[str, Any]:
    """The packaged per-dataset defaults: ``{section: {dataset: {key: value}}}``.

    Read from ``alignrec_data/registry_data/settings.json`` (its ``overrides`` key, the shape of
    ``params.yaml``'s ``overrides``).
    """
    text = resources.files("alignrec_data").joinpath(*PACKAGED_SETTINGS).read_text("utf-8")
    return json.loads(text).get(OVERRIDES) or {}


def _check_layer(cls: type, values: Any, where: str) -> None:
    """Reject unknown keys and wrong types of one layer (nested sections key by key).

    Unlike :func:`from_dict` nothing is built: a layer holds only some keys, and the range
    checks, some of which relate keys (``valid_metric`` and ``topks``), run on the merged result.
    """
    hints = _field_hints(cls, values, where)
    for key, value in values.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            _check_layer(hint, value, f"{where}.{key}")
        else:
            _coerce(value, hint, f"{where}.{key}")


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``; mappings (nested sections) merge key by key, lists replace."""
    out = dict(base)
    for key, value in top.items():
        below = out.get(key)
        nested = isinstance(value, dict) and isinstance(below, dict)
        out[key] = _merge(below, value) if nested else value
    return out


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b": leaf}`` of nested mappings (lists are leaves)."""
    if not (isinstance(obj, dict) and obj):
        return {prefix[:-1]: obj} if prefix else {}
    return {k: v for key, value in obj.items() for k, v in _flat(value, f"{prefix}{key}.").items()}


def _section_overrides(table: Any, section: str, where: str) -> dict[str, Any]:
    """``overrides.<section>`` of a params file or the packaged file, its shape checked.

    Returns:
        ``{dataset: values}`` (empty when absent).

    Raises:
        UsageError: ``overrides`` is not ``{section: {dataset: {key: value}}}`` or names a
            section that takes no per-dataset settings.
    """
    if table is None:
        return {}
    sections = ", ".join(SETTINGS_SECTIONS)
    table = check_mapping(table, where, f"a mapping of sections ({sections})")
    unknown = sorted(str(k) for k in table if k not in SETTINGS_SECTIONS)
    if unknown:
        msg = (
            f"{where}: unknown section(s) {', '.join(unknown)}; per-dataset settings are "
            f"written overrides.<section>.<dataset>.<key> with section one of {sections}"
        )
        raise UsageError(msg)
    per_dataset = table.get(section)
    if per_dataset is None:
        return {}
    expected = f"a mapping of dataset ids to {section} settings"
    per_dataset = check_mapping(per_dataset, f"{where}.{section}", expected)
    return {str(k): (v if v is not None else {}) for k, v in per_dataset.items()}


def settings_layers(path: str | Path | None, section: str, cls: type, dataset: str) -> Layers:
    """The layers of (``dataset``, ``section``) above the dataclass defaults, lowest first.

    Every dataset's entry of the section is checked, not only ``dataset``'s: a typo under
    another dataset is an error now, not when that dataset runs.

    Returns:
        ``[(label, values)]``: the packaged defaults, the params section, the params override;
        a label names where the values are written (``params.yaml:overrides.train.amazon-mini``).
    """
    if section not in SETTINGS_SECTIONS:
        msg = f"{section!r} takes no per-dataset settings; expected one of {SETTINGS_SECTIONS}"
        raise ValueError(msg)
    layers: Layers = []

    def add(label: str, values: dict[str, Any], used: bool = True) -> None:
        _check_layer(cls, values, label)
        if used and values:
            layers.append((label, values))

    def add_overrides(name: str, table: Any, where: str) -> None:
        for ds, values in _section_overrides(table, section, where).items():
            add(f"{name}:{OVERRIDES}.{section}.{ds}", values, ds == dataset)

    packaged = "packaged " + "/".join(PACKAGED_SETTINGS)  # alignrec_data/registry_data/...
    add_overrides(packaged, packaged_settings(), OVERRIDES)
    params = load_params(path)
    name = str(path or "defaults")
    add(f"{name}:{section}", params.get(section) or {})
    add_overrides(name, params.get(OVERRIDES), f"{name}:{OVERRIDES}")
    return layers


def load_settings(
    path: str | Path | None,
    section: str,
    cls: type[T],
    dataset: str,
    *,
    given: Mapping[str, Any] | None = None,
) -> T:
    """The settings of one section for one dataset: defaults, packaged, params, override, CLI.

    Args:
        path: The params file, or None (packaged defaults only).
        section: One of :data:`SETTINGS_SECTIONS`, e.g. ``"train"``.
        cls: The section's frozen dataclass.
        dataset: The dataset id, as given on the command line (the folder under the data dir).
        given: Command-line values (``{"epochs": 2}``; None values are ignored): the last layer,
            checked like params (:func:`dataclasses.replace`).

    Returns:
        The config. The keys that differ from the dataclass defaults are logged at INFO, each
        with the layer that set it.

    Raises:
        UsageError: An unknown key or a wrong type in any layer (named by its place, e.g.
            ``params.yaml:overrides.train.amazon-mini: unknown key(s) lrr``), or a merged value
            out of range.
    """
    layers = settings_layers(path, section, cls, dataset)
    merged = functools.reduce(_merge, (values for _, values in layers), {})
    set_by = sorted({label for label, _ in layers if OVERRIDES in label})
    config = _from_params(cls, merged, path, section, set_by)
    cli = {k: v for k, v in (given or {}).items() if v is not None}
    if cli:
        config = dataclasses.replace(config, **cli)  # type: ignore[type-var]
        layers.append(("command line", cli))
    _log_settings(section, dataset, config, layers)
    return config


def _log_settings(section: str, dataset: str, config: Any, layers: Layers) -> None:
    """Log at INFO the headline keys, then each key away from its default or set over another.

    Each such key is shown with the layer that set it (the last that holds it) and the values
    it hid in lower layers.
    """
    source = {key: label for label, values in layers for key in _flat(values)}
    defaults = _flat(to_dict(type(config)()))
    found = _flat(to_dict(config))
    flat_layers = [(label, _flat(values)) for label, values in layers]
    shown = []
    for key, value in found.items():
        where = source.get(key)
        hidden = [
            f"{values[key]!r} in {label}"
            for label, values in flat_layers
            if label != where and key in values and values[key] != value
        ]
        if value == defaults.get(key) and not hidden:
            continue
        note = f"; not {', '.join(hidden)}" if hidden else ""
        shown.append(f"{key}={value!r} [{where or 'default'}{note}]")
    head = ", ".join(f"{k}={found[k]!r}" for k in HEADLINE_SETTINGS.get(section, ()))
    changed = "set: " + ", ".join(shown) if shown else "every key at its default"
    logger.info("%s settings for %s: %s%s", section, dataset, f"{head}; " if head else "", changed)
