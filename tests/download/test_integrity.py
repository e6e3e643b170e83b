"""Streamed sha256 + gzip checks agree with hashlib and the gzip module."""

from __future__ import annotations

import gzip
import hashlib
import zlib

import pytest

from alignrec_data.integrity import GzipStreamCheck, StreamVerifier
from tests.download.conftest import gz_bytes


def _stream(data: bytes, step: int) -> tuple[str, str | None]:
    v = StreamVerifier(gzip_check=True)
    for i in range(0, len(data), step):
        v.feed(data[i : i + step])
    return v.result()


def _gzip_module_accepts(data: bytes) -> bool:
    try:
        gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        return False
    return True


GOOD = gz_bytes(200)
CASES = {
    "one member": GOOD,
    "two members": GOOD + gzip.compress(b"second member\n", mtime=0),
    "zero padding": GOOD + bytes(512),
    "padding between members": GOOD + bytes(512) + gzip.compress(b"second member\n", mtime=0),
    "padding then garbage": GOOD + bytes(512) + b"garbage",
    "truncated": GOOD[:-9],
    "bad crc": GOOD[:-8] + bytes(4) + GOOD[-4:],
    "trailing garbage": GOOD + b"garbage",
    "not gzip": b"plain text, not gzip\n" * 100,
    "empty": b"",
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("step", [3, 4096, 1 << 20])
def test_stream_check_matches_gzip_module(case, step):
    data = CASES[case]
    sha, problem = _stream(data, step)
    assert sha == hashlib.sha256(data).hexdigest()
    expect_ok = _gzip_module_accepts(data) and data != b""  # an empty file is not a gzip file
    assert (problem is None) == expect_ok, (case, problem)


def test_prefix_on_disk_is_hashed_first(tmp_path):
    data = gz_bytes(300)
    part = tmp_path / "x.part"
    part.write_bytes(data[:1000])
    v = StreamVerifier(part, 1000, gzip_check=True)
    v.feed(data[1000:])
    assert v.count == len(data)
    assert v.result() == (hashlib.sha256(data).hexdigest(), None)


def test_gzip_check_counts_members():
    check = GzipStreamCheck()
    check.feed(CASES["two members"])
    check.close()
    assert check.members == 2


def test_padding_between_members_is_accepted_wherever_a_chunk_ends():
    second = gzip.compress(b"second member\n", mtime=0)
    assert _gzip_module_accepts(GOOD + bytes(512) + second)
    for chunks in ([GOOD + bytes(512), second], [GOOD, bytes(512), second[:1], second[1:]]):
        check = GzipStreamCheck()
        for chunk in chunks:
            check.feed(chunk)
        check.close()
        assert check.members == 2
