"""Shared fixtures: offline environment, the real data in ../shared/data, a temp data dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ALIGNREC_SHARED_DATA", REPO.parent / "shared" / "data"))

# No hub at run time: set before any test imports huggingface_hub / datasets / transformers.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
for _k, _v in {
    "GIT_AUTHOR_NAME": "alignrec-tests",
    "GIT_AUTHOR_EMAIL": "tests@localhost",
    "GIT_COMMITTER_NAME": "alignrec-tests",
    "GIT_COMMITTER_EMAIL": "tests@localhost",
}.items():
    os.environ.setdefault(_k, _v)


@pytest.fixture(autouse=True, scope="session")
def _hf_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["HF_HOME"] = str(tmp_path_factory.mktemp("hf_home"))


def shared_data(name: str) -> Path:
    """Path of a folder in ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data {path} is absent (../shared/data is not next to this checkout)")
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty ``--data-dir``."""
    d = tmp_path / "data"
    d.mkdir()
    return d
