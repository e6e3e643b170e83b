"""`alignrec-data --help` stays fast: command modules import their libraries lazily."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = (
    "torch",
    "torch_geometric",
    "transformers",
    "datasets",
    "huggingface_hub",
    "pandas",
    "pyarrow",
    "numpy",
    "PIL",
    "requests",
)
# Command modules that must import no heavy library at module level.
LIGHT_COMMANDS = (
    "datasets",
    "download",
    "prepare",
    "import_",
    "export",
    "images",
    "release",
    "publish",
)

# Imports one command module without running alignrec_data/cli/__init__.py (which imports
# every command): a bare package object stands in for alignrec_data.cli.
_ALONE = """
import importlib, sys, types
from pathlib import Path
import alignrec_data
pkg = types.ModuleType("alignrec_data.cli")
pkg.__path__ = [str(Path(alignrec_data.__file__).parent / "cli")]
sys.modules["alignrec_data.cli"] = pkg
mod = importlib.import_module("alignrec_data.cli." + sys.argv[1])
assert hasattr(mod, "command")
print(sorted(m for m in sys.argv[2].split(",") if m in sys.modules))
"""


def _heavy_after(code: str, *args: str) -> str:
    res = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


@pytest.mark.parametrize("name", LIGHT_COMMANDS)
def test_command_module_imports_no_heavy_library(name: str) -> None:
    assert _heavy_after(_ALONE, name, ",".join(HEAVY)) == "[]"


def test_cli_package_imports_no_heavy_library() -> None:
    code = f"import alignrec_data.cli, sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    assert _heavy_after(code) == "[]"


def test_constants_repeated_for_help_agree_with_the_library() -> None:
    from alignrec_data.cli import export, images
    from alignrec_data.export_features import LAYOUTS
    from alignrec_data.images.urls import IMAGE_MIRROR_ENV

    assert export.LAYOUTS == LAYOUTS
    assert images.IMAGE_MIRROR_ENV == IMAGE_MIRROR_ENV
