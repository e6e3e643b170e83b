import dataclasses
import importlib
import re
from dataclasses import dataclass, field

import pytest

from alignrec_data.config import (
    check_ranges,
    from_dict,
    load_section,
    resolve_params_path,
    to_dict,
)
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


# --- range checks: every params section validates on construction, one message format ------

# (section, its dataclass, a params.yaml snippet with one bad value, "<key> = <found>", expected)
OUT_OF_RANGE = [
    ("download", "alignrec_data.download:DownloadConfig", "workers: 0", "workers = 0", ">= 1"),
    (
        "prepare",
        "alignrec_data.prepare:PrepareConfig",
        "split: by-time",
        "split = 'by-time'",
        "one of random, leave-one-out, temporal",
    ),
    (
        "images",
        "alignrec_data.images.config:ImagesConfig",
        "jpeg_quality: 120",
        "jpeg_quality = 120",
        "between 1 and 95",
    ),
    (
        "pretrain",
        "alignrec_model.pretrain.config:PretrainConfig",
        "text_mask_prob: 1.5",
        "text_mask_prob = 1.5",
        "between 0 and 1, both excluded",
    ),
    (
        "extract",
        "alignrec_model.extract:ExtractConfig",
        "effnet_image_size: 16",
        "effnet_image_size = 16",
        ">= 32 pixels",
    ),
    (
        "release",
        "alignrec_data.release:ReleaseConfig",
        "compression: lz4",
        "compression = 'lz4'",
        "one of zstd, snappy, gzip, none",
    ),
    ("train", "alignrec_model.train:TrainConfig", "lr: -0.1", "lr = -0.1", "> 0"),
    (
        "train",
        "alignrec_model.train:TrainConfig",
        "alignrec: {temperature: 0}",
        "alignrec.temperature = 0.0",
        "> 0",
    ),
    (
        "evaluate",
        "alignrec_model.feature_eval:EvaluateConfig",
        "mask_model: pop",
        "mask_model = 'pop'",
        "one of alignrec, itemknn",
    ),
    (
        "evaluate",
        "alignrec_model.feature_eval:EvaluateConfig",
        "mask_modality: audio",
        "mask_modality = 'audio'",
        "one of image, text",
    ),
]


def _config_class(where: str) -> type:
    module, _, name = where.partition(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize(
    ("section", "where", "snippet", "found", "expected"),
    OUT_OF_RANGE,
    ids=[f"{c[0]}-{c[2].split(':')[0]}" for c in OUT_OF_RANGE],
)
def test_out_of_range_value_names_section_key_found_and_expected(
    tmp_path, section, where, snippet, found, expected
):
    cls = _config_class(where)
    assert cls() == load_section(None, section, cls)  # the defaults are in range
    p = tmp_path / "params.yaml"
    p.write_text(f"{section}:\n  {snippet}\n")
    pattern = (
        rf"^params file {re.escape(str(p))}: {re.escape(f'{section}.{found}')} is out of range: "
        rf"expected {re.escape(expected)}.*; fix params.yaml or the command-line override$"
    )
    with pytest.raises(UsageError, match=pattern) as err:
        load_section(p, section, cls)
    assert "\n" not in str(err.value)


def test_a_command_line_override_is_checked_like_params():
    cls = _config_class("alignrec_model.train:TrainConfig")
    with pytest.raises(UsageError, match=r"^train.epochs = 0 is out of range: expected >= 1"):
        dataclasses.replace(cls(), epochs=0)


def test_check_ranges_names_every_bad_key_in_one_message():
    cfg = Section(lr=-1.0, ks=(0, 5))
    with pytest.raises(UsageError) as err:
        check_ranges(
            cfg,
            "x",
            {
                "lr": (cfg.lr > 0, "> 0"),
                "epochs": (True, ">= 1"),
                "ks": (min(cfg.ks) >= 1, "K >= 1"),
            },
        )
    assert str(err.value) == (
        "x.lr = -1.0 is out of range: expected > 0; x.ks = [0, 5] is out of range: expected "
        "K >= 1; fix params.yaml or the command-line override"
    )
    check_ranges(cfg, "x", {"epochs": (True, ">= 1")})  # nothing out of range: no error
