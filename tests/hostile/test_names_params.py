"""Hostile names and params files: every name is checked once, every failure is one line.

Each test asserts the exit code, the ``Error:`` line (what is wrong and the fix), no traceback,
and that nothing outside the data dir changed and nothing was created in it.
"""

from __future__ import annotations

import errno
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostile.conftest import (
    REPO,
    Outcome,
    assert_clean_error,
    run,
    run_process,
    tree_digest,
)

BAD_NAMES = ["../outside/x", "../../../../outside/x", "a/b", "..", ".hidden", "x\\y", ""]


def _digests(root: Path) -> dict[str, dict[str, str]]:
    return {"data": tree_digest(root / "data"), "outside": tree_digest(root / "outside")}


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize(
    "command",
    [
        ["train", "{ds}", "--model", "pop"],
        ["prepare", "{ds}"],
        ["pretrain", "{ds}"],
        ["extract", "{ds}"],
        ["images", "{ds}"],
        ["release", "{ds}"],
        ["evaluate", "{ds}", "--features", "alignrec", "--protocol", "zero-shot"],
        ["export", "mmrec", "{ds}", "--out", "{out}"],
    ],
    ids=lambda c: c[0] if isinstance(c, list) else None,
)
def test_bad_dataset_name_is_refused_before_anything_is_touched(
    sandbox: Path, name: str, command: list[str]
) -> None:
    before = _digests(sandbox)
    args = [a.format(ds=name, out=sandbox / "export") for a in command]
    out = run(*args, "--data-dir", sandbox / "data")
    assert_clean_error(out, 2, r"(is not a valid name|[Uu]nknown dataset|no such|Missing argument)")
    assert _digests(sandbox) == before
    assert not (sandbox / "export").exists()


@pytest.mark.parametrize("variant", ["../../../../outside/x", "../x", "sub/x", ".x"])
def test_bad_feature_variant_is_refused(sandbox: Path, variant: str) -> None:
    (sandbox / "outside" / "x.parquet").write_bytes(b"PAR1 not really")
    before = _digests(sandbox)
    for args in (
        ["evaluate", "amazon-mini", "--features", variant, "--protocol", "zero-shot"],
        ["evaluate", "amazon-mini", "--features", variant, "--protocol", "mask-modality"],
        ["train", "amazon-mini", "--model", "itemknn", "--features", variant],
        ["train", "amazon-mini", "--model", "alignrec", "--features", variant],
    ):
        out = run(*args, "--data-dir", sandbox / "data")
        assert_clean_error(out, 2, r"feature variant .* is not a valid name", r"no '/'")
        assert _digests(sandbox) == before, args
    assert not (sandbox / "outside" / "x.json").exists()


def test_train_features_in_params_is_checked(sandbox: Path) -> None:
    params = sandbox / "p.yaml"
    params.write_text("train:\n  features: ../../outside/x\n")
    out = run("train", "amazon-mini", "--params", params, "--data-dir", sandbox / "data")
    assert_clean_error(out, 2, r"train.features '../../outside/x' is not a valid name")


def test_zero_epochs_never_replaces_a_trained_checkpoint(sandbox: Path) -> None:
    models = sandbox / "data" / "amazon-mini" / "models"
    models.mkdir(parents=True)
    (models / "lightgcn.pt").write_bytes(b"a trained checkpoint")
    params = sandbox / "p.yaml"
    params.write_text("train:\n  epochs: 0\n")
    before = _digests(sandbox)
    out = run(
        "train", "amazon-mini", "--model", "lightgcn", "--params", params,
        "--data-dir", sandbox / "data",
    )  # fmt: skip
    assert_clean_error(out, 2, r"train.epochs = 0 is out of range: expected >= 1")
    out = run("train", "amazon-mini", "--epochs", "0", "--data-dir", sandbox / "data")
    assert_clean_error(out, 2, r"train.epochs = 0 is out of range")
    assert _digests(sandbox) == before


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", r"is not UTF-8 text"),
        (b"train: [unclosed\n  - x: {", r"is not valid YAML"),
        (b"- a\n- b\n", r"expected a mapping of sections at the top level, found list"),
        (b"train:\n  lr: fast\n", r"train.lr: expected float, found 'fast'"),
        (b"train:\n  learning_rate: 0.1\n", r"unknown key\(s\) learning_rate; known keys"),
        (b"train:\n  batch_size: 0\n", r"train.batch_size = 0 is out of range: expected >= 1"),
    ],
    ids=["binary", "bad-yaml", "list", "wrong-type", "unknown-key", "out-of-range"],
)
def test_bad_params_file_is_one_line(sandbox: Path, content: bytes, pattern: str) -> None:
    params = sandbox / "params.yaml"
    params.write_bytes(content)
    out = run("train", "amazon-mini", "--params", params, "--data-dir", sandbox / "data")
    assert_clean_error(out, 2, pattern, re.escape(str(params)) if "known" not in pattern else "")
    assert "\n" not in out.error_line


def test_params_that_is_a_folder_or_missing(sandbox: Path) -> None:
    out = run("prepare", "amazon-mini", "--params", sandbox / "outside", "--data-dir", sandbox)
    assert_clean_error(out, 2, r"'--params'.* is a directory")
    out = run("prepare", "amazon-mini", "--params", sandbox / "nope.yaml", "--data-dir", sandbox)
    assert_clean_error(out, 2, r"params file .*nope.yaml does not exist", r"pass an existing YAML")


def test_os_error_is_one_line_naming_the_path(sandbox: Path) -> None:
    # A file stands where the dataset folder must be created: the file system refuses.
    data = sandbox / "data"
    (data / "amazon-mini").write_text("not a folder\n")
    before = _digests(sandbox)
    out = run_process("download", "amazon-mini", "--data-dir", data, timeout=120)
    assert_clean_error(out, 1, r"amazon-mini", r"(folder|directory|Not a directory|exists)")
    assert _digests(sandbox) == before


def test_internal_error_is_one_line_and_debug_shows_the_traceback(
    sandbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A mock, on purpose: no real input makes the listing fail, and a bug has to be simulated.
    import alignrec_data.cli.datasets as mod

    def broken(*args: object, **kwargs: object) -> list:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(mod, "list_datasets", broken)
    out = run("datasets", "--data-dir", sandbox / "data")
    assert_clean_error(out, 1, r"internal error: ZeroDivisionError: division by zero")
    assert "rerun with --debug" in out.stderr
    out = run("--debug", "datasets", "--data-dir", sandbox / "data")
    assert out.code == 1
    assert "Traceback" in out.stderr and "ZeroDivisionError" in out.stderr


def test_os_error_message_names_the_fix() -> None:
    from alignrec_data.failures import os_message

    msg = os_message(OSError(errno.ENOSPC, "No space left on device", "/d/x.parquet"))
    assert msg == (
        "No space left on device: /d/x.parquet; free disk space or choose another "
        "--data-dir / --out"
    )
    msg = os_message(OSError(errno.EROFS, "Read-only file system", "/ro"))
    assert "read-only" in msg and "/ro" in msg


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["-m", "alignrec_model.pretrain", "--dataset", "../outside/x"],
         r"dataset '../outside/x' is not a valid name"),
        (["-m", "alignrec_model.pretrain", "--dataset", "amazon-mini", "--params", "nope.yaml"],
         r"nope.yaml does not exist"),
        ([str(REPO / "pipelines" / "summary.py"), "--params", "bin.yaml"], r"is not UTF-8 text"),
    ],
    ids=["torchrun-entry-name", "torchrun-entry-params", "summary"],
)  # fmt: skip
def test_entry_points_outside_the_cli_fail_in_one_line(
    sandbox: Path, argv: list[str], pattern: str
) -> None:
    (sandbox / "bin.yaml").write_bytes(b"\xff\xfe\x00binary")
    before = _digests(sandbox)
    proc = subprocess.run(
        [sys.executable, *argv, "--data-dir", "data"],
        cwd=sandbox, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = Outcome(proc.returncode, proc.stdout, proc.stderr)
    assert_clean_error(out, 2, pattern)
    assert _digests(sandbox) == before
