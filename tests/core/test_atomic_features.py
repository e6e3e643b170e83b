import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alignrec_data.atomic import atomic_path, write_json
from alignrec_data.errors import DataFormatError, UsageError
from alignrec_data.features import read_features, write_features


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_write_json_replaces_atomically(tmp_path):
    target = tmp_path / "m.json"
    write_json(target, {"b": 1, "a": 2})
    write_json(target, {"a": 3})
    assert target.read_text() == '{\n  "a": 3\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_features_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    m = rng.normal(size=(5, 7)).astype(np.float32)
    missing = np.array([False, True, False, False, True])
    write_features(tmp_path / "f.parquet", [f"k{i}" for i in range(5)], m, missing)
    keys, got, got_missing = read_features(tmp_path / "f.parquet")
    assert list(keys) == ["k0", "k1", "k2", "k3", "k4"]
    np.testing.assert_array_equal(got, m)
    np.testing.assert_array_equal(got_missing, missing)
    schema = pq.read_schema(tmp_path / "f.parquet")
    emb_type = schema.field("embedding").type
    assert pa.types.is_fixed_size_list(emb_type)
    assert emb_type.list_size == 7 and emb_type.value_type == pa.float32()


def test_features_reject_nan_and_bad_files(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        write_features(tmp_path / "f.parquet", ["a"], np.array([[np.nan]], dtype=np.float32))
    with pytest.raises(UsageError, match="run `alignrec-data extract` first"):
        read_features(tmp_path / "absent.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataFormatError, match="junk.parquet is not a readable parquet"):
        read_features(tmp_path / "junk.parquet")


def test_atomic_write_has_the_default_file_mode(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        write_json(tmp_path / "m.json", {})
    finally:
        os.umask(mask)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644


def test_next_write_removes_leftovers_of_dead_processes_only(tmp_path):
    import os
    import subprocess
    import sys

    from alignrec_data.atomic import atomic_dir, write_text

    # A pid that is certainly dead: a child that has exited and been reaped.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    (tmp_path / f".x.json.tmp-{dead}-abcd").write_text("partial")
    (tmp_path / f".x.json.tmp-{os.getpid()}-live").write_text("this process's own")
    (tmp_path / ".x.json.k3j_x9a2.tmp").write_text("an earlier version's leftover")
    (tmp_path / ".x.json.notes").write_text("not ours")
    (tmp_path / "y.json").write_text("another file")
    write_text(tmp_path / "x.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f".x.json.tmp-{os.getpid()}-live", ".x.json.notes", "y.json", "x.json"]
    )
    (tmp_path / f".out.old-{dead}-zz").mkdir()
    (tmp_path / ".out.tmp-q1w2e3r4").mkdir()  # an earlier version's release staging folder
    with atomic_dir(tmp_path / "out") as staging:
        (staging / "a.txt").write_text("a")
    assert (tmp_path / "out" / "a.txt").read_text() == "a"
    assert not list(tmp_path.glob(".out.*"))
    mode = (tmp_path / "out").stat().st_mode & 0o777
    (tmp_path / "plain").mkdir()
    assert mode == (tmp_path / "plain").stat().st_mode & 0o777
