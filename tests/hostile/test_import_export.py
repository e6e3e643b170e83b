"""Hostile inputs to `import mmrec|lattice` and `export mmrec`.

Each test feeds one faulty or hostile input and checks what a user would: the exit code, one
``Error:`` line naming the file or value and the fix, no traceback, and that nothing outside
the command's target changed (the target too, when the command is refused).
"""

from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path

import numpy as np
import pytest

from tests.hostile.conftest import assert_clean_error, run, run_process, tree_digest

# `python -m alignrec_data import/export ...` (click, numpy, pandas, pyarrow) peaks at about
# 400-500 MB of address space here; 1 GB leaves room for that and for the small real work,
# while the id expansion this guards against (a list of 9e12 strings) needs terabytes.
MEMORY_LIMIT_MB = 1024


def _inter(folder: Path, rows: list[tuple[int, int, int]], name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["userID\titemID\tx_label", *(f"{u}\t{i}\t{x}" for u, i, x in rows)]
    (folder / f"{name or folder.name}.inter").write_text("\n".join(lines) + "\n")
    return folder


def _mmrec_source(root: Path, n_items: int = 4, name: str = "mm") -> Path:
    """An MMRec folder: 2 users, ``n_items`` items, every split used."""
    rows = [(u, i, (u + i) % 3) for u in range(2) for i in range(n_items)]
    return _inter(root / name, rows)


def _import(sandbox: Path, src: Path, name: str = "ds", *extra: str):
    return run("import", "mmrec", src, "--name", name, "--data-dir", sandbox / "data", *extra)


# --- import over an existing dataset -----------------------------------------------------------


def test_import_over_prepared_dataset_needs_overwrite(sandbox: Path) -> None:
    data = sandbox / "data"
    first = _mmrec_source(sandbox / "src", n_items=6, name="first")
    assert _import(sandbox, first).code == 0
    root = data / "ds"
    (root / "raw").mkdir()
    (root / "raw" / "reviews.json.gz").write_bytes(b"raw bytes")
    for folder in ("features", "models", "metrics"):
        (root / folder).mkdir()
        (root / folder / "x.bin").write_bytes(b"built on the old items")
    second = _mmrec_source(sandbox / "src", n_items=3, name="second")
    before = tree_digest(sandbox)

    for kind, args in (
        ("mmrec", [second]),
        ("lattice", [sandbox / "outside"]),  # refused before the folder is even read
    ):
        out = run("import", kind, *args, "--name", "ds", "--data-dir", data)
        assert_clean_error(
            out,
            2,
            r"dataset 'ds' already exists in .*ds \(prepared/, features/, models/, metrics/\)",
            r"choose another --name, or pass --overwrite",
            r"remove features/, models/, metrics/",
        )
        assert tree_digest(sandbox) == before

    # A bad source with --overwrite: the whole source is checked before anything changes.
    bad = _inter(sandbox / "src" / "bad", [(0, 0, 0), (0, 1, 7)])
    before = tree_digest(sandbox)
    out = _import(sandbox, bad, "ds", "--overwrite")
    assert_clean_error(out, 1, r"bad\.inter: line 3: x_label must be 0 \(train\)")
    assert tree_digest(sandbox) == before

    out = _import(sandbox, second, "ds", "--overwrite")
    assert out.code == 0, out.stderr
    assert "removed features/, models/, metrics/ of ds" in out.stdout
    assert sorted(p.name for p in root.iterdir()) == ["prepared", "raw"]  # raw/ is kept
    assert (root / "raw" / "reviews.json.gz").read_bytes() == b"raw bytes"
    stats = json.loads((root / "prepared" / "stats.json").read_text())
    assert stats["items"] == 3 and stats["source_files"] == ["second.inter"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE((root / "prepared").stat().st_mode) == 0o777 & ~umask  # not 0700
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no leftovers
    after = tree_digest(sandbox)
    assert {k: v for k, v in after.items() if not k.startswith("data/ds/")} == {
        k: v for k, v in before.items() if not k.startswith("data/ds/")
    }


def test_import_lattice_over_imported_dataset_with_overwrite(sandbox: Path) -> None:
    data = sandbox / "data"
    assert _import(sandbox, _mmrec_source(sandbox / "src")).code == 0
    lat = sandbox / "src" / "lat"
    lat.mkdir()
    (lat / "train.json").write_text('{"0": [0, 1], "1": [1]}')
    (lat / "val.json").write_text('{"0": [1]}')
    (lat / "test.json").write_text('{"1": [0]}')
    out = run("import", "lattice", lat, "--name", "ds", "--data-dir", data, "--overwrite")
    assert out.code == 0, out.stderr
    assert json.loads((data / "ds" / "prepared" / "stats.json").read_text())["items"] == 2


@pytest.mark.parametrize(
    ("args", "code", "pattern"),
    [
        (["mmrec", "outside/NOTES.md", "--name", "ds"], 2, r"NOTES\.md is not a folder; pass"),
        (["mmrec", "src/mm", "--name", "../x"], 2, r"dataset '\.\./x' is not a valid name"),
        (["lattice", "src/mm", "--name", "a/b"], 2, r"dataset 'a/b' is not a valid name"),
        (["mmrec", "src", "--name", "ds"], 2, r"src: expected one <name>\.inter file, found none"),
    ],
)
def test_import_bad_folder_or_name(sandbox: Path, args: list[str], code: int, pattern: str) -> None:
    _mmrec_source(sandbox / "src")
    before = tree_digest(sandbox)
    out = run("import", *args, "--data-dir", sandbox / "data", cwd=sandbox)
    assert_clean_error(out, code, pattern)
    assert tree_digest(sandbox) == before


# --- bounded memory: ids are range-checked before anything is allocated by id ----------------


def test_huge_item_id_in_inter_is_refused_in_bounded_memory(sandbox: Path) -> None:
    src = _inter(sandbox / "src" / "mm", [(0, 0, 0), (0, 1, 1), (1, 9000000000000, 2), (1, 1, 0)])
    before = tree_digest(sandbox)
    out = run_process(
        "import",
        "mmrec",
        src,
        "--name",
        "ds",
        "--data-dir",
        sandbox / "data",
        memory_limit_mb=MEMORY_LIMIT_MB,
    )
    assert_clean_error(
        out,
        1,
        r"mm\.inter, line 4: item id 9000000000000 is out of range",
        r"ids must be contiguous from 0",
        r"renumber the item ids as 0\.\.N-1",
    )
    assert tree_digest(sandbox) == before


def test_huge_user_id_in_inter_is_refused_in_bounded_memory(sandbox: Path) -> None:
    src = _inter(sandbox / "src" / "mm", [(0, 0, 0), (9000000000000, 0, 1)])
    before = tree_digest(sandbox)
    out = run_process(
        "import",
        "mmrec",
        src,
        "--name",
        "ds",
        "--data-dir",
        sandbox / "data",
        memory_limit_mb=MEMORY_LIMIT_MB,
    )
    assert_clean_error(out, 1, r"mm\.inter, line 3: user id 9000000000000 is out of range")
    assert tree_digest(sandbox) == before


@pytest.mark.parametrize(
    ("files", "pattern"),
    [
        (
            {"train.json": '{"0": [0, 9000000000000], "1": [1]}'},
            r"train\.json: item id 9000000000000 is out of range",
        ),
        (
            {"item2id.json": '{"a": 0, "b": 1, "c": 9000000000000}'},
            r"item2id\.json: item id 9000000000000 is out of range",
        ),
        ({"train.json": '{"9000000000000": [0]}'}, r"user id 9000000000000 is out of range"),
    ],
)
def test_huge_lattice_id_is_refused_in_bounded_memory(
    sandbox: Path, files: dict[str, str], pattern: str
) -> None:
    lat = sandbox / "src" / "lat"
    lat.mkdir(parents=True)
    base = {"train.json": '{"0": [0], "1": [1]}', "val.json": "{}", "test.json": "{}"}
    for fname, text in {**base, **files}.items():
        (lat / fname).write_text(text)
    before = tree_digest(sandbox)
    out = run_process(
        "import",
        "lattice",
        lat,
        "--name",
        "ds",
        "--data-dir",
        sandbox / "data",
        memory_limit_mb=MEMORY_LIMIT_MB,
    )
    assert_clean_error(out, 1, pattern, r"renumber the")
    assert tree_digest(sandbox) == before


# --- .inter and LATTICE parsing ----------------------------------------------------------------

INTER_CASES = [
    ("empty", b"", r"mm\.inter is empty; expected tab-separated columns userID itemID"),
    (
        "binary",
        b"\x00\x01\x02\xff\xfe" * 40,
        r"mm\.inter is a binary file .*not text; expected tab-separated columns",
    ),
    (
        "not-utf8",
        b"userID\titemID\tx_label\n0\t\xff\xfe\t0\n",
        r"mm\.inter is not UTF-8 text .*expected tab-separated columns",
    ),
    (
        "header-only",
        b"userID\titemID\tx_label\n",
        r"mm\.inter holds a header but no interaction",
    ),
    (
        "non-numeric",
        b"userID\titemID\tx_label\n0\t0\t0\n0\tabc\t1\n",
        r"mm\.inter: line 3, column 'itemID': expected an integer item id, found 'abc', not a "
        r"number",
    ),
    (
        "fractional",
        b"userID\titemID\tx_label\n1.5\t0\t0\n",
        r"mm\.inter: line 2, column 'userID': expected an integer user id, found '1\.5', a "
        r"fractional number",
    ),
    (
        "fractional-label",
        b"userID\titemID\tx_label\n0\t0\t0.5\n",
        r"line 2, column 'x_label': expected an integer split label .*'0\.5', a fractional",
    ),
    (
        "above-int64",
        b"userID\titemID\tx_label\n0\t99999999999999999999999\t0\n",
        r"mm\.inter: line 2, column 'itemID': item id 99999999999999999999999 is beyond the "
        r"64-bit integer range",
    ),
    (
        "empty-cell",
        b"userID\titemID\tx_label\n0\t\t0\n",
        r"line 2, column 'itemID': expected an integer item id, found an empty cell",
    ),
    (
        "missing-columns",
        b"user,item,label\n0,0,0\n",
        r"mm\.inter: missing column\(s\) \['userID', 'itemID', 'x_label'\]; found "
        r"\['user,item,label'\] \(expected userID itemID rating timestamp x_label, tab-sep",
    ),
    (
        "extra-field",
        b"userID\titemID\tx_label\n0\t0\t0\n0\t1\t0\t9\n",
        r"mm\.inter: line 3 has 4 tab-separated fields, the header 3",
    ),
    (
        "bad-rating",
        b"userID\titemID\trating\tx_label\n0\t0\tinf\t0\n",
        r"line 2, column 'rating': expected a finite number or an empty cell, found 'inf'",
    ),
    (
        "fractional-timestamp",
        b"userID\titemID\ttimestamp\tx_label\n0\t0\t12.5\t0\n",
        r"line 2, column 'timestamp': expected an integer timestamp, found '12\.5'",
    ),
    (
        "negative-id",
        b"userID\titemID\tx_label\n0\t-1\t0\n",
        r"mm\.inter, line 2: item ids must be >= 0, found -1",
    ),
    (
        "bad-id-map",
        b"userID\titemID\tx_label\n0\t0\t0\n",
        r"i_id_mapping\.csv: line 2, column 'itemID': expected an integer id, found 'x'",
    ),
]


@pytest.mark.parametrize(
    ("content", "pattern"), [c[1:] for c in INTER_CASES], ids=[c[0] for c in INTER_CASES]
)
def test_bad_inter_file_is_one_line_naming_file_line_column(
    sandbox: Path, content: bytes, pattern: str
) -> None:
    src = sandbox / "src" / "mm"
    src.mkdir(parents=True)
    (src / "mm.inter").write_bytes(content)
    if "i_id_mapping" in pattern:
        (src / "i_id_mapping.csv").write_text("asin\titemID\nB1\tx\n")
    before = tree_digest(sandbox)
    assert_clean_error(_import(sandbox, src), 1, pattern)
    assert tree_digest(sandbox) == before


def test_whole_number_timestamps_written_as_floats_are_read(sandbox: Path) -> None:
    src = sandbox / "src" / "mm"
    src.mkdir(parents=True)
    (src / "mm.inter").write_text(
        "userID\titemID\trating\ttimestamp\tx_label\n0\t0\t5.0\t1365811200.0\t0\n1\t1\t\t\t2\n\n"
    )
    out = _import(sandbox, src, "ds", "--format", "json")
    assert out.code == 0, out.stderr
    stats = json.loads(out.stdout)
    assert stats["interactions"] == 2 and stats["has_timestamps"] and stats["has_ratings"]


LATTICE_CASES = [
    (
        "list-split",
        {"train.json": "[[0, 1], [1]]"},
        r"train\.json is not a valid split file: expected a LATTICE split file "
        r'\{"userID": \[itemID, \.\.\.\]\}, found a list',
    ),
    (
        "not-json",
        {"val.json": "user 0: items 1 2\n"},
        r"val\.json is not valid JSON \(line 1, column 1: .*\); expected a LATTICE split file",
    ),
    (
        "binary",
        {"test.json": "\x00\x01\x02 not json"},
        r"test\.json is a binary file .*not text; expected a LATTICE split file",
    ),
    ("empty", {"train.json": ""}, r"train\.json is empty; expected a LATTICE split file"),
    (
        "float-item",
        {"train.json": '{"0": [0, 1.5], "1": [1]}'},
        r"train\.json: user '0': expected a list of integer item ids .*found 1\.5",
    ),
    (
        "above-int64",
        {"train.json": '{"0": [0, 99999999999999999999999], "1": [1]}'},
        r"train\.json: user '0': expected a list of integer item ids \(0 to 2\*\*63-1\)",
    ),
    (
        "list-id-map",
        {"item2id.json": '["a", "b"]'},
        r"item2id\.json is not an id map: expected an object \{raw key: id\}, found a list",
    ),
    (
        "bad-id-map-value",
        {"user2id.json": '{"a": 0, "b": "1"}'},
        r"user2id\.json: user key 'b' maps to '1'; expected a non-negative integer id",
    ),
]


@pytest.mark.parametrize(
    ("files", "pattern"), [c[1:] for c in LATTICE_CASES], ids=[c[0] for c in LATTICE_CASES]
)
def test_bad_lattice_file_is_named_for_what_it_is(
    sandbox: Path, files: dict[str, str], pattern: str
) -> None:
    lat = sandbox / "src" / "lat"
    lat.mkdir(parents=True)
    base = {"train.json": '{"0": [0], "1": [1]}', "val.json": "{}", "test.json": "{}"}
    for fname, text in {**base, **files}.items():
        (lat / fname).write_text(text)
    before = tree_digest(sandbox)
    out = run("import", "lattice", lat, "--name", "ds", "--data-dir", sandbox / "data")
    assert_clean_error(out, 1, pattern)
    assert tree_digest(sandbox) == before


# --- export: inputs checked before the first byte, the marker, all-or-nothing -----------------


@pytest.fixture
def exported(sandbox: Path) -> Path:
    """``sandbox/data/ds``: a prepared dataset of 2 users and 4 items (an import)."""
    assert _import(sandbox, _mmrec_source(sandbox / "src")).code == 0
    return sandbox


def _export(sandbox: Path, out: Path, *extra: str | Path):
    return run("export", "mmrec", "ds", "--out", out, "--data-dir", sandbox / "data", *extra)


def _npy_bytes(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1")


def test_forged_npy_header_is_refused_before_loading(exported: Path) -> None:
    sandbox = exported
    forged = sandbox / "outside" / "forged.npy"
    forged.write_bytes(_npy_bytes((4, 250_000_000_000)) + b"\x00" * 64)  # asks for 4 TB
    out_dir = sandbox / "out"
    before = tree_digest(sandbox)
    out = run_process(
        "export",
        "mmrec",
        "ds",
        "--out",
        out_dir,
        "--data-dir",
        sandbox / "data",
        "--features",
        f"image={forged}",
        memory_limit_mb=MEMORY_LIMIT_MB,
    )
    assert_clean_error(
        out,
        1,
        r"forged\.npy: its header describes a 4 x 250,000,000,000 float32 matrix "
        r"\(4,000,000,000,000 bytes\) but the file holds 64 bytes of data",
        r"np\.save",
    )
    assert tree_digest(sandbox) == before and not out_dir.exists()


def _npy_case(kind: str, path: Path) -> None:
    if kind == "random":
        rng = np.random.default_rng(7)
        data = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
        assert not data.startswith((b"\x93NUMPY", b"\x80"))
        path.write_bytes(data)
    elif kind == "pickle":
        path.write_bytes(pickle.dumps(np.zeros((4, 3))))
    elif kind == "pickle-protocol0":
        path.write_bytes(pickle.dumps([1.0, 2.0], protocol=0))
    elif kind == "object-array":
        np.save(path, np.array([{"a": 1}, None, 1, 2], dtype=object), allow_pickle=True)
    elif kind == "nan":
        m = np.ones((4, 3), np.float32)
        m[2, 1] = np.nan
        np.save(path, m)
    elif kind == "truncated":
        np.save(path, np.ones((4, 3), np.float32))
        path.write_bytes(path.read_bytes()[:-5])
    elif kind == "three-d":
        np.save(path, np.ones((4, 3, 2), np.float32))
    elif kind == "strings":
        np.save(path, np.array([["a"] * 3] * 4))
    elif kind == "npz":
        np.savez(path.with_suffix(".npz"), x=np.ones((4, 3)))
        path.with_suffix(".npz").rename(path)
    elif kind == "rows":
        np.save(path, np.ones((3, 3), np.float32))
    elif kind == "bad-header":
        path.write_bytes(_npy_bytes((4, 3)).replace(b"'shape'", b"'shap!'") + b"\x00" * 48)


NPY_CASES = [
    ("random", r"feat\.npy is not a \.npy file \(it does not start with the \.npy magic bytes\)"),
    ("pickle", r"feat\.npy holds pickled Python objects .*never unpickles"),
    ("pickle-protocol0", r"feat\.npy holds pickled Python objects"),
    ("object-array", r"feat\.npy holds pickled Python objects"),
    ("nan", r"feat\.npy: the matrix holds NaN or infinite values \(1 row\(s\), first row 2\)"),
    ("truncated", r"feat\.npy: its header describes a 4 x 3 float32 matrix \(48 bytes\) but"),
    ("three-d", r"feat\.npy: expected a 2-D numeric matrix .*found shape \(4, 3, 2\)"),
    ("strings", r"feat\.npy: expected an integer or float matrix, found dtype <U1"),
    ("npz", r"feat\.npy is a \.npz archive, not a \.npy file"),
    ("rows", r"feat\.npy: 3 rows, but the dataset has 4 items"),
    ("bad-header", r"feat\.npy has a malformed \.npy header"),
]


@pytest.mark.parametrize(("kind", "pattern"), NPY_CASES, ids=[c[0] for c in NPY_CASES])
def test_bad_npy_is_refused_and_nothing_is_written(exported: Path, kind: str, pattern: str) -> None:
    sandbox = exported
    feat = sandbox / "outside" / "feat.npy"
    _npy_case(kind, feat)
    out_dir = sandbox / "out" / "mini"
    before = tree_digest(sandbox)
    out = _export(sandbox, out_dir, "--features", f"image={feat}")
    assert_clean_error(out, 1, pattern)
    assert tree_digest(sandbox) == before
    assert not (sandbox / "out").exists()  # not even the folder


# --- import mmrec: every *.npy of the folder is an item feature matrix ------------------------


def _with_features(root: Path) -> Path:
    """An MMRec source (4 items) with good image_feat.npy and text_feat.npy."""
    src = _mmrec_source(root)
    np.save(src / "image_feat.npy", np.arange(8, dtype=np.float32).reshape(4, 2))
    np.save(src / "text_feat.npy", np.ones((4, 3), np.float32))
    return src


@pytest.mark.parametrize(("kind", "pattern"), NPY_CASES, ids=[c[0] for c in NPY_CASES])
def test_bad_feature_npy_in_an_mmrec_folder_is_refused_and_nothing_is_written(
    sandbox: Path, kind: str, pattern: str
) -> None:
    src = _with_features(sandbox / "src")
    _npy_case(kind, src / "feat.npy")
    before = tree_digest(sandbox)
    out = _import(sandbox, src)
    assert_clean_error(out, 1, pattern)
    assert tree_digest(sandbox) == before and not (sandbox / "data" / "ds").exists()


def test_bad_feature_npy_with_overwrite_keeps_the_old_dataset(sandbox: Path) -> None:
    src = _with_features(sandbox / "src")
    assert _import(sandbox, src).code == 0
    features = sandbox / "data" / "ds" / "features"
    assert sorted(p.name for p in features.iterdir()) == [
        "mmrec-image.parquet",
        "mmrec-text.parquet",
    ]
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(features.stat().st_mode) == 0o777 & ~umask  # not mkdtemp's 0700
    assert not [p for p in features.parent.iterdir() if p.name.startswith(".")]
    m = np.ones((4, 3), np.float32)
    m[3, 0] = np.inf
    np.save(src / "text_feat.npy", m)
    before = tree_digest(sandbox)
    out = _import(sandbox, src, "ds", "--overwrite")
    assert_clean_error(
        out,
        1,
        r"text_feat\.npy: the matrix holds NaN or infinite values \(1 row\(s\), first row 3\)",
    )
    assert tree_digest(sandbox) == before


def test_forged_feature_header_in_an_mmrec_folder_is_refused_before_loading(
    sandbox: Path,
) -> None:
    src = _mmrec_source(sandbox / "src")
    (src / "image_feat.npy").write_bytes(_npy_bytes((4, 250_000_000_000)) + b"\x00" * 64)
    before = tree_digest(sandbox)
    out = run_process(
        "import",
        "mmrec",
        src,
        "--name",
        "ds",
        "--data-dir",
        sandbox / "data",
        memory_limit_mb=MEMORY_LIMIT_MB,
    )
    assert_clean_error(
        out,
        1,
        r"image_feat\.npy: its header describes a 4 x 250,000,000,000 float32 matrix "
        r"\(4,000,000,000,000 bytes\) but the file holds 64 bytes of data",
    )
    assert tree_digest(sandbox) == before


@pytest.mark.parametrize(
    ("files", "pattern"),
    [
        (
            {"image.npy": (4, 2)},
            r"image_feat\.npy and image\.npy would both become the feature variant "
            r"'mmrec-image'; rename or move one",
        ),
        ({"bad name.npy": (4, 2)}, r"bad name\.npy: its name gives the feature variant"),
        ({"big.npy": "overflow"}, r"big\.npy: values beyond the float32 range \(first in row 0"),
        ({"empty.npy": (4, 0)}, r"empty\.npy: the matrix has no columns"),
    ],
    ids=["same-variant", "bad-name", "float32-overflow", "no-columns"],
)
def test_feature_files_that_cannot_be_imported_are_named(
    sandbox: Path, files: dict, pattern: str
) -> None:
    src = _with_features(sandbox / "src")
    for name, shape in files.items():
        m = np.full((4, 2), 1e300) if shape == "overflow" else np.ones(shape, np.float32)
        np.save(src / name, m)
    before = tree_digest(sandbox)
    assert_clean_error(_import(sandbox, src), 1, pattern)
    assert tree_digest(sandbox) == before


def test_hidden_and_non_file_npy_entries_are_not_features(sandbox: Path) -> None:
    src = _mmrec_source(sandbox / "src")
    np.save(src / "text_feat.npy", np.ones((4, 3), np.float32))
    np.save(src / ".image_feat.npy.tmp-1-abcd.npy", np.ones((3, 3), np.float32))  # leftover
    (src / "folder.npy").mkdir()
    os.mkfifo(src / "pipe.npy")  # never opened: reading a FIFO would block
    out = _import(sandbox, src)
    assert out.code == 0, out.stderr
    features = sandbox / "data" / "ds" / "features"
    assert [p.name for p in features.iterdir()] == ["mmrec-text.parquet"]


@pytest.mark.parametrize("where", ["writing", "swapping"])
def test_failure_while_placing_features_leaves_the_dataset_as_it_was(
    sandbox: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    src = _with_features(sandbox / "src")
    assert _import(sandbox, src).code == 0
    root = sandbox / "data" / "ds"
    (root / "models").mkdir()
    (root / "models" / "m.pt").write_bytes(b"built on the old items")
    np.save(src / "text_feat.npy", np.full((4, 3), 2.0, np.float32))
    from alignrec_data.interop import prepared

    if where == "writing":
        real_write = prepared.write_features

        def fail(path, *args, **kwargs):
            if Path(path).name == "mmrec-text.parquet":
                raise OSError(28, "No space left on device", str(path))
            return real_write(path, *args, **kwargs)

        monkeypatch.setattr(prepared, "write_features", fail)
    else:
        real_replace = os.replace

        def fail(src_path, dst, *args, **kwargs):
            if Path(dst) == root / "features" and ".features.tmp-" in str(src_path):
                raise OSError(5, "Input/output error", str(dst))
            return real_replace(src_path, dst, *args, **kwargs)

        monkeypatch.setattr(os, "replace", fail)
    before = tree_digest(sandbox)
    out = _import(sandbox, src, "ds", "--overwrite")
    assert out.code != 0 and "Traceback" not in out.stderr, out.stderr
    monkeypatch.undo()
    assert tree_digest(sandbox) == before  # old prepared/, features/ and models/, no leftovers


def test_export_into_a_foreign_folder_needs_overwrite_and_keeps_its_files(exported: Path) -> None:
    sandbox = exported
    target = sandbox / "outside"
    before = tree_digest(sandbox)
    out = _export(sandbox, target)
    assert_clean_error(
        out,
        2,
        r"--out .*outside is not empty and is not a previous export folder \(it has no "
        r"alignrec_export\.json\)",
        r"pass --overwrite",
    )
    assert tree_digest(sandbox) == before

    good = sandbox / "good.npy"
    np.save(good, np.ones((4, 3), np.float32))
    out = _export(sandbox, target, "--overwrite", "--features", f"image={good}")
    assert out.code == 0, out.stderr
    after = tree_digest(sandbox)
    for rel, digest in before.items():  # the user's files are kept, unchanged
        assert after[rel] == digest, rel
    written = {"outside/" + f for f in ("outside.inter", "u_id_mapping.csv", "i_id_mapping.csv")}
    written |= {"outside/image_feat.npy", "outside/alignrec_export.json", "good.npy"}
    assert set(after) - set(before) == written
    marker = json.loads((target / "alignrec_export.json").read_text())
    assert marker["files"] == sorted(
        ["outside.inter", "u_id_mapping.csv", "i_id_mapping.csv", "image_feat.npy"]
    )

    # The folder is now a previous export: a rerun needs no --overwrite, drops the feature
    # file the new export does not write (it was ours), and still keeps the user's files.
    out = _export(sandbox, target)
    assert out.code == 0, out.stderr
    assert "removed image_feat.npy (from the previous export)" in out.stdout
    assert (target / "NOTES.md").read_text() == "my notes\n"
    assert (target / "src" / "main.py").is_file()
    assert not (target / "image_feat.npy").exists()


def test_export_refuses_a_foreign_text_feature_in_the_alignrec_layout(exported: Path) -> None:
    sandbox = exported
    data = sandbox / "data"
    variant = np.ones((4, 5), np.float32)
    from alignrec_data.features import write_features

    write_features(data / "ds" / "features" / "alignrec.parquet", ["0", "1", "2", "3"], variant)
    target = sandbox / "al"
    target.mkdir()
    np.save(target / "text_feat.npy", np.ones((4, 2), np.float32))
    before = tree_digest(sandbox)
    out = _export(sandbox, target, "--overwrite", "--layout", "alignrec")
    assert_clean_error(
        out,
        2,
        r"al/text_feat\.npy was not written by alignrec-data export, and the AlignRec code "
        r"would read it",
        r"move it away or choose another --out",
    )
    assert tree_digest(sandbox) == before


def test_export_out_is_a_file(exported: Path) -> None:
    sandbox = exported
    target = sandbox / "outside" / "NOTES.md"
    before = tree_digest(sandbox)
    out = _export(sandbox, target)
    assert_clean_error(out, 2, r"--out .*NOTES\.md exists and is not a folder; choose a new")
    assert tree_digest(sandbox) == before


def test_export_out_read_only(exported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests may run as root, for whom chmod 0o555 stops nothing: the permission check itself
    # (os.access) is made to answer as for a read-only folder.
    sandbox = exported
    target = sandbox / "ro"
    target.mkdir()
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        if Path(path) == target and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    before = tree_digest(sandbox)
    out = _export(sandbox, target)
    assert_clean_error(out, 2, r"--out .*ro is read-only \(permission denied\); make it writable")
    assert tree_digest(sandbox) == before


def test_export_failure_while_writing_leaves_no_partial_file(
    exported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = exported
    good = sandbox / "good.npy"
    np.save(good, np.ones((4, 3), np.float32))
    from alignrec_data.interop import export

    def fail(path, matrix):
        Path(path).write_bytes(b"half")
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(export, "write_npy_to", fail)
    target = sandbox / "out" / "mini"
    before = tree_digest(sandbox)
    out = _export(sandbox, target, "--features", f"image={good}")
    assert_clean_error(out, 1, r"No space left on device: .*image_feat\.npy", r"free disk space")
    assert tree_digest(sandbox) == before
    assert not (sandbox / "out").exists()  # the .inter and id maps were not left behind


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["../other"], r"dataset '\.\./other' is not a valid name"),
        (["ds", "--name", "../x"], r"MMRec dataset name \(--name\) '\.\./x' is not a valid name"),
    ],
)
def test_export_names_are_checked(exported: Path, args: list[str], pattern: str) -> None:
    sandbox = exported
    (sandbox / "other" / "prepared").mkdir(parents=True)
    before = tree_digest(sandbox)
    out = run("export", "mmrec", *args, "--out", sandbox / "o", "--data-dir", sandbox / "data")
    assert_clean_error(out, 2, pattern)
    assert tree_digest(sandbox) == before


def test_export_into_the_data_dir_is_refused_even_with_overwrite(exported: Path) -> None:
    sandbox = exported
    before = tree_digest(sandbox)
    for target in (sandbox / "data", sandbox / "data" / "ds", sandbox / "data" / "ds" / "raw"):
        out = _export(sandbox, target, "--overwrite")
        assert_clean_error(out, 2, r"would replace .*, which holds a dataset's files")
        assert tree_digest(sandbox) == before


def test_export_with_a_nonfinite_feature_variant_is_refused(exported: Path) -> None:
    import pyarrow as pa

    from alignrec_data.atomic import write_parquet
    from alignrec_data.features import features_table

    sandbox = exported
    table = features_table(["0", "1", "2", "3"], np.ones((4, 2), np.float32))
    flat = np.ones(8, np.float32)
    flat[5] = np.inf
    emb = pa.FixedSizeListArray.from_arrays(pa.array(flat), 2)
    table = table.set_column(table.schema.get_field_index("embedding"), "embedding", emb)
    write_parquet(sandbox / "data" / "ds" / "features" / "effnet-image.parquet", table)
    before = tree_digest(sandbox)
    out = _export(sandbox, sandbox / "o", "--features", "effnet-image")
    assert_clean_error(
        out, 1, r"feature file .*effnet-image\.parquet: the matrix holds NaN or infinite values"
    )
    assert tree_digest(sandbox) == before


# --- to_mmrec (the library export of a release): the same writer, the same rules --------------


def _release(sandbox: Path) -> Path:
    """``sandbox/rel``: the release of the imported dataset ``ds``."""
    from alignrec_data.release import build_release

    build_release(sandbox / "data", "ds", sandbox / "rel")
    return sandbox / "rel"


def test_to_mmrec_into_a_foreign_folder_needs_overwrite_and_keeps_its_files(
    exported: Path,
) -> None:
    from alignrec_data.errors import UsageError
    from alignrec_data.loaders import to_mmrec

    sandbox = exported
    rel = _release(sandbox)
    target = sandbox / "outside"
    before = tree_digest(sandbox)
    with pytest.raises(
        UsageError,
        match=r"out .*outside is not empty and is not a previous export folder \(it has no "
        r"alignrec_export\.json\)",
    ):
        to_mmrec(rel, target)
    assert tree_digest(sandbox) == before

    res = to_mmrec(rel, target, overwrite=True)
    after = tree_digest(sandbox)
    for path, digest in before.items():  # the user's files are kept, unchanged
        assert after[path] == digest, path
    written = {"outside/" + f for f in ("outside.inter", "u_id_mapping.csv", "i_id_mapping.csv")}
    assert set(res["files"]) == {f.removeprefix("outside/") for f in written}
    assert set(after) - set(before) == written | {"outside/alignrec_export.json"}

    # Now a previous export: a rerun needs no overwrite and still keeps the user's files.
    before = tree_digest(sandbox)
    assert to_mmrec(rel, target)["removed"] == []
    assert tree_digest(sandbox) == before  # same bytes, same files


@pytest.mark.parametrize(
    ("where", "kwargs", "pattern"),
    [
        ("outside/NOTES.md", {}, r"out .*NOTES\.md exists and is not a folder"),
        ("o", {"name": "../x"}, r"MMRec dataset name '\.\./x' is not a valid name"),
        ("o", {"features": "nope"}, r"no feature variant 'nope'"),
    ],
)
def test_to_mmrec_refusals_change_nothing(
    exported: Path, where: str, kwargs: dict, pattern: str
) -> None:
    from alignrec_data.errors import UsageError
    from alignrec_data.loaders import to_mmrec

    sandbox = exported
    rel = _release(sandbox)
    before = tree_digest(sandbox)
    with pytest.raises(UsageError, match=pattern):
        to_mmrec(rel, sandbox / where, overwrite=True, **kwargs)
    assert tree_digest(sandbox) == before
