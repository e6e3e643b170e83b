"""Fixtures for download tests: a real loopback HTTP server and datasets pointing at it."""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from alignrec_data.download import DownloadConfig
from alignrec_data.registry import DatasetSpec, FileSpec
from tests.download.httpserver import FaultServer

# Tiny back-offs so retry tests take milliseconds (Retry-After is still honoured as sent).
FAST = DownloadConfig(
    workers=2, retries=3, backoff_base=0.01, backoff_cap=0.05, timeout=5.0, chunk_size=16384
)


def gz_bytes(n_lines: int, seed: int = 0) -> bytes:
    """A real gzip file of JSON lines, not compressible to nothing (random hex payload)."""
    rnd = hashlib.sha256(str(seed).encode()).digest()
    lines = []
    for i in range(n_lines):
        rnd = hashlib.sha256(rnd).digest()
        lines.append(f'{{"asin": "B{i:09d}", "reviewText": "{rnd.hex()}"}}\n')
    return gzip.compress("".join(lines).encode(), mtime=0)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server_root(tmp_path: Path) -> Path:
    root = tmp_path / "srv"
    root.mkdir()
    return root


@pytest.fixture
def server(server_root: Path) -> Iterator[FaultServer]:
    with FaultServer(server_root) as srv:
        yield srv


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    return tmp_path / "data" / "toy" / "raw"


@pytest.fixture(autouse=True)
def _no_mirror_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALIGNREC_MIRROR", raising=False)


MakeSpec = Callable[..., DatasetSpec]


@pytest.fixture
def make_spec(server_root: Path, server: FaultServer) -> MakeSpec:
    """Write files into the served folder and return a DatasetSpec pointing at the server.

    ``make_spec({"reviews": ("r.json.gz", data)}, hashes=True)``: ``hashes`` puts the real
    size and sha256 in the registry entry; ``registry={"reviews": (size, sha)}`` overrides.
    """

    def make(
        files: dict[str, tuple[str, bytes]],
        *,
        hashes: bool = True,
        registry: dict[str, tuple[int | None, str | None]] | None = None,
        base_url: str | None = None,
    ) -> DatasetSpec:
        specs = []
        for role, (name, data) in files.items():
            target = server_root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            size, digest = (len(data), sha(data)) if hashes else (None, None)
            if registry and role in registry:
                size, digest = registry[role]
            specs.append(FileSpec(role=role, name=name, size=size, sha256=digest))
        return DatasetSpec(
            id="toy",
            release="2014",
            category="Toy",
            description="toy dataset for tests",
            license="test",
            citation="test",
            homepage="http://127.0.0.1/",
            base_url=base_url or server.url,
            files=tuple(specs),
        )

    return make


def dev_full_available() -> bool:
    return os.path.exists("/dev/full")
