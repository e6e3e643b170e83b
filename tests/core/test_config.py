from dataclasses import dataclass, field

import pytest

from alignrec_data.config import from_dict, load_section, resolve_params_path, to_dict
from alignrec_data.errors import UsageError


@dataclass(frozen=True)
class Inner:
    k: int = 10


@dataclass(frozen=True)
class Section:
    lr: float = 1e-3
    epochs: int = 5
    ks: tuple[int, ...] = (5, 10)
    name: str | None = None
    inner: Inner = field(default_factory=Inner)


def test_defaults_without_params_file():
    assert load_section(None, "train", Section) == Section()


def test_section_values_and_coercion(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("train:\n  lr: 1e-2\n  epochs: 3\n  ks: [1, 2]\n  inner: {k: 4}\nother: {x: 1}\n")
    cfg = load_section(p, "train", Section)
    assert cfg == Section(lr=0.01, epochs=3, ks=(1, 2), inner=Inner(k=4))
    assert to_dict(cfg) == {"lr": 0.01, "epochs": 3, "ks": [1, 2], "name": None, "inner": {"k": 4}}


def test_unknown_key_is_rejected_with_known_keys_listed(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("train:\n  learning_rate: 0.1\n")
    with pytest.raises(UsageError, match=r"train: unknown key\(s\) learning_rate; known keys are"):
        load_section(p, "train", Section)


def test_wrong_type_names_the_key():
    with pytest.raises(UsageError, match=r"x:train.epochs: expected int, found 'many'"):
        from_dict(Section, {"epochs": "many"}, "x:train")


def test_missing_params_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        resolve_params_path(tmp_path / "nope.yaml")


def test_invalid_yaml_names_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train: [unclosed\n")
    with pytest.raises(UsageError, match="bad.yaml is not valid YAML"):
        load_section(p, "train", Section)
