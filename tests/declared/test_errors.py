"""Declared datasets from tiny files: formats, bad rows, changed sources, and every user error.

Each mistake in a declaration ends in one `Error:` line (exit 2) that names the params key or
the file, and writes nothing under the data dir.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from alignrec_data.lockfile import LOCK_NAME
from tests.hostile.conftest import assert_clean_error, run, tree_digest

INTER_CSV = (
    "who,what,stars,when\n"
    "u1,7,5,2020-01-02\n"
    "u1,8,4,2020-01-03T10:00:00Z\n"
    "u2,7,3,2020-01-01\n"
    "u2,7,1,2020-02-01\n"  # a repeated pair: the earliest row is kept
    ",8,2,2020-01-05\n"  # no user: a bad row
    "u3,9,x,2020-01-05\n"  # not a rating: a bad row
)
ITEMS_JSONL = (
    '{"id": 8, "name": "<b>Mug</b> &amp; lid", "pic": "pics/8.jpg"}\n'
    '{"id": 6, "name": "Pot", "pic": "https://cdn.example/6.jpg"}\n'
    '{"id": 7, "name": "Cup"}\n'
)


def _write(folder: Path, declared: dict, **sections: dict) -> Path:
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump({"declared": declared, **sections}, sort_keys=False))
    return path


def _shop(folder: Path) -> dict:
    (folder / "src").mkdir(exist_ok=True)
    (folder / "src" / "inter.csv").write_text(INTER_CSV)
    (folder / "src" / "items.jsonl").write_text(ITEMS_JSONL)
    return {
        "interactions": {
            "path": "src/inter.csv",
            "user": "who",
            "item": "what",
            "rating": "stars",
            "timestamp": "when",
        },
        "items": {
            "path": "src/items.jsonl",
            "item": "id",
            "item_offset": 1,  # 6, 7, 8 here are 7, 8, 9 in the interactions
            "title": "name",
            "text": "{name}!",
            "image": "{pic}",
        },
    }


NO_CORE = {"min_user_interactions": 0, "min_item_interactions": 0}


def test_tiny_csv_and_jsonl(tmp_path: Path) -> None:
    params = _write(tmp_path, {"shop": _shop(tmp_path)}, prepare=NO_CORE)
    data = tmp_path / "data"
    common = ["--data-dir", data, "--params", params]
    assert run("download", "shop", *common, "--no-progress").code == 0
    out = run("prepare", "shop", *common, "--format", "json")
    assert out.code == 0, out.stderr
    stats = json.loads(out.stdout)
    assert stats["bad_lines"]["reviews"]["bad_lines"] == 2
    assert [s["interactions"] for s in stats["steps"]] == [4, 3, 3]
    inter = pq.read_table(data / "shop" / "prepared" / "interactions.parquet").to_pylist()
    rows = {(r["user_key"], r["item_key"]): (r["rating"], r["timestamp"]) for r in inter}
    assert rows == {
        ("u1", "7"): (5.0, 1577923200),
        ("u1", "8"): (4.0, 1578045600),
        ("u2", "7"): (3.0, 1577836800),  # the earliest of the repeated pair
    }
    items = {
        r["item_key"]: r
        for r in pq.read_table(data / "shop" / "prepared" / "items.parquet").to_pylist()
    }
    assert sorted(items) == ["7", "8"]
    assert items["7"]["title"] == "Pot" and items["7"]["text"] == "Pot!"
    assert items["7"]["image_urls"] == ["https://cdn.example/6.jpg"]  # URLs are kept
    assert items["8"]["title"] == "Cup" and items["8"]["image_urls"] == []
    assert stats["declared"]["images"]["url"] == 1


def test_no_timestamp_random_only_and_null_columns(tmp_path: Path) -> None:
    (tmp_path / "i.tsv").write_text("u\ti\na\tx\na\ty\nb\tx\n")
    decl = {"interactions": {"path": "i.tsv", "user": "u", "item": "i"}}
    params = _write(tmp_path, {"tsv": decl}, prepare=NO_CORE)
    common = ["--data-dir", tmp_path / "data", "--params", params]
    assert run("download", "tsv", *common, "--no-progress").code == 0
    out = run("prepare", "tsv", *common)
    assert out.code == 0, out.stderr
    table = pq.read_table(tmp_path / "data" / "tsv" / "prepared" / "interactions.parquet")
    assert table.column("rating").null_count == table.column("timestamp").null_count == 3
    params = _write(tmp_path, {"tsv": decl}, prepare={**NO_CORE, "split": "leave-one-out"})
    out = run("prepare", "tsv", *common)
    assert_clean_error(out, 2, r"declared\.tsv\.interactions declares no timestamp column")


def test_changed_source_is_copied_again(tmp_path: Path) -> None:
    params = _write(tmp_path, {"shop": _shop(tmp_path)}, prepare=NO_CORE)
    common = ["--data-dir", tmp_path / "data", "--params", params, "--no-progress"]
    assert run("download", "shop", *common).code == 0
    (tmp_path / "src" / "inter.csv").write_text(INTER_CSV + "u9,9,5,2020-03-01\n")
    assert run("download", "shop", *common).code == 0
    raw = tmp_path / "data" / "shop" / "raw"
    assert (raw / "interactions.csv").read_text().endswith("u9,9,5,2020-03-01\n")
    lock = json.loads((raw / LOCK_NAME).read_text())["files"]
    import hashlib

    assert (
        lock["interactions.csv"]["sha256"]
        == hashlib.sha256((raw / "interactions.csv").read_bytes()).hexdigest()
    )


def _break(decl: dict, part: str, key: str, value: object) -> dict:
    decl = json.loads(json.dumps(decl))
    if value is None:
        del decl[part][key]
    else:
        decl[part][key] = value
    return decl


@pytest.mark.parametrize(
    ("case", "command", "pattern"),
    [
        ("unknown-key", "download", r"declared\.shop\.items: unknown key\(s\) colour"),
        ("no-user", "download", r"declared\.shop\.interactions\.user is required"),
        ("bad-format", "download", r"declared\.shop\.interactions\.format = 'xls' is not one of"),
        ("bad-template", "download", r"declared\.shop\.items\.text .*field \{name!r\}"),
        ("missing-file", "download", r"declared\.shop\.items\.path: .*nope\.jsonl does not exist"),
        (
            "missing-column",
            "prepare",
            r"declared\.shop\.interactions\.rating: column 'score' is not in interactions\.csv",
        ),
        ("shadow", "download", r"declared\.amazon-mini: amazon-mini is a registry id"),
        ("bad-name", "download", r"declared: dataset id '\.\./up' is not a valid name"),
        (
            "bad-url",
            "download",
            r"declared\.shop\.interactions\.path: 'ftp://h/x\.csv' has unsupported scheme",
        ),
    ],
)
def test_declaration_errors(tmp_path: Path, case: str, command: str, pattern: str) -> None:
    good = _shop(tmp_path)
    ds, decl = "shop", good
    if case == "unknown-key":
        decl = _break(good, "items", "colour", "red")
    elif case == "no-user":
        decl = _break(good, "interactions", "user", None)
    elif case == "bad-format":
        decl = _break(good, "interactions", "format", "xls")
    elif case == "bad-template":
        decl = _break(good, "items", "text", "{name!r}")
    elif case == "missing-file":
        decl = _break(good, "items", "path", "src/nope.jsonl")
    elif case == "missing-column":
        decl = _break(good, "interactions", "rating", "score")
    elif case == "shadow":
        ds = "amazon-mini"
    elif case == "bad-name":
        ds = "../up"
    elif case == "bad-url":
        decl = _break(good, "interactions", "path", "ftp://h/x.csv")
    params = _write(tmp_path, {ds: decl}, prepare=NO_CORE)
    data = tmp_path / "data"
    common = ["--data-dir", data, "--params", params]
    if command == "prepare":
        assert run("download", ds, *common, "--no-progress").code == 0
    before = tree_digest(tmp_path)
    out = run(command, ds, *common)
    assert_clean_error(out, 2, pattern)
    assert tree_digest(tmp_path) == before  # nothing written, nothing removed


def test_unknown_declared_id_suggests(tmp_path: Path) -> None:
    params = _write(tmp_path, {"shop": _shop(tmp_path)})
    out = run("prepare", "shpo", "--data-dir", tmp_path / "data", "--params", params)
    assert_clean_error(out, 2, r"unknown dataset id 'shpo'; closest: shop")
