"""Extraction sharded over Ray workers and torchrun ranks: the same feature files as one process.

Tiny random BERT / ViT / CLIP models (saved with ``save_pretrained``) and a tiny MMEnc
checkpoint encode a synthetic dataset once in one process and once sharded; the merged files
must hold the same rows, the same ``missing`` flags and the same metadata. A killed Ray worker
is run again, a killed driver's finished parts are kept by the rerun, and a changed model never
reuses stale parts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from alignrec_data.config import load_section
from alignrec_data.engine.shards import SHARDS_DIR, part_path, shard_dir
from alignrec_data.features import read_features
from alignrec_data.paths import DatasetPaths
from alignrec_model.extract import ExtractConfig, extract
from alignrec_model.extract_dist import compute_shard, entry_fingerprints, merge_run
from tests.conftest import REPO
from tests.encoder._data import write_dataset
from tests.feature_zoo._models import tiny_bert, tiny_models
from tests.scale.conftest import ray_worker_pids

N = 60
NO_IMAGE = (4, 9, 13, 30)
EMPTY_TEXT = (3, 9, 41)
ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_models(tmp_path_factory.mktemp("zoo"))


def entries(models: dict[str, Path]) -> list[dict]:
    return [
        {"name": "bert", "kind": "hf-text", "model": str(models["bert"]), "batch_size": 8},
        {"name": "vit", "kind": "hf-image", "model": str(models["vit"]), "pooling": "mean"},
        {"name": "clip", "kind": "hf-clip", "model": str(models["clip"]), "batch_size": 16},
    ]


VARIANTS = ("bert", "vit", "clip", "clip-image", "clip-text")


def make_dataset(data_dir: Path, name: str = "zoo") -> DatasetPaths:
    rng = np.random.default_rng(0)
    words = ["red", "wool", "scarf", "blue", "cotton", "shirt", "baby", "bottle", "soft"]
    texts, images = [], []
    for i in range(N):
        n_words = int(rng.integers(1, 12))  # varied lengths: different padding per batch
        texts.append("" if i in EMPTY_TEXT else " ".join(rng.choice(words, n_words)))
        px = rng.integers(0, 256, size=(40, 36, 3), dtype=np.uint8)
        images.append(None if i in NO_IMAGE else Image.fromarray(px))
    return write_dataset(data_dir, name, texts, images)


def config(models: dict[str, Path], tmp: Path, **keys) -> ExtractConfig:
    params = tmp / "params.yaml"
    section = {"variants": entries(models), "num_threads": 1, "device": "cpu", **keys}
    params.write_text(yaml.safe_dump({"extract": section}))
    return load_section(params, "extract", ExtractConfig)


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> DatasetPaths:
    """The dataset with the features written by one process."""
    tmp = tmp_path_factory.mktemp("single")
    paths = make_dataset(tmp / "data")
    extract(tmp / "data", "zoo", config(models, tmp))
    return paths


def copy_inputs(single: DatasetPaths, data_dir: Path) -> DatasetPaths:
    paths = DatasetPaths.of(data_dir, "zoo")
    for sub in ("prepared", "images"):
        shutil.copytree(single.root / sub, paths.root / sub)
    return paths


def assert_same_features(one: DatasetPaths, other: DatasetPaths) -> None:
    for variant in VARIANTS:
        a, b = one.features / f"{variant}.parquet", other.features / f"{variant}.parquet"
        keys_a, rows_a, miss_a = read_features(a)
        keys_b, rows_b, miss_b = read_features(b)
        assert list(keys_a) == list(keys_b) and list(miss_a) == list(miss_b)
        # Bit-identical on CPU: every kind here pads, pools and normalises per item, and the
        # CPU kernels of these tiny models give the same floats whatever the batch holds.
        np.testing.assert_array_equal(rows_a, rows_b, err_msg=variant)
        assert pq.read_schema(a).metadata == pq.read_schema(b).metadata
        assert a.read_bytes() == b.read_bytes()  # the whole parquet file, byte for byte
    assert not (other.features / SHARDS_DIR).exists()


def test_ray_shards_merge_to_the_single_process_files(
    tmp_path: Path, models: dict[str, Path], single: DatasetPaths, ray_address: str
) -> None:
    from alignrec_data.engine.ray_extract import extract_ray

    paths = copy_inputs(single, tmp_path / "data")
    cfg = config(models, tmp_path)
    metrics = extract_ray(tmp_path / "data", "zoo", cfg, workers=2, shard_items=16)
    assert (metrics["engine"], metrics["workers"], metrics["shards"]) == ("ray", 2, 4)
    assert metrics["shards_kept"] == 0 and metrics["items"] == N
    assert metrics["variants"]["bert"] == {"dim": 32, "missing": len(EMPTY_TEXT)}
    assert metrics["variants"]["clip"]["missing"] == len(set(NO_IMAGE) | set(EMPTY_TEXT))
    assert_same_features(single, paths)
    # Killed worker: Ray runs its task again; the files do not change.
    for variant in VARIANTS:
        (paths.features / f"{variant}.parquet").unlink()
    killed: list[int] = []

    def kill_one_worker() -> None:
        deadline = time.monotonic() + 30
        while not killed and time.monotonic() < deadline:
            pids = ray_worker_pids("_shard_task")
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.01)

    from click.testing import CliRunner

    from alignrec_data.cli import cli

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    args = ["extract", "zoo", "--data-dir", str(tmp_path / "data"), "--params",
            str(tmp_path / "params.yaml"), "--format", "json"]  # fmt: skip
    res = CliRunner().invoke(cli, [*args, "--engine", "ray", "--workers", "2"])
    killer.join()
    assert res.exit_code == 0, res.output
    assert killed, "no _shard_task worker was seen running"
    # Ray's raylet reports the death ("A worker died or was killed ...") on the driver's stdout;
    # the command sends it to stderr while Ray runs, so stdout holds the JSON result. (Here the
    # Ray instance is the tests' and outlives the command: a report printed after the run ends
    # could still reach stdout, hence the search for the JSON document.)
    printed = res.output.replace("\x1b[33m", "").replace("\x1b[0m", "")
    assert "(raylet) A worker died" in printed
    assert json.loads(res.stdout[res.stdout.index("{") :])["shards"] == 2  # a range a worker
    assert_same_features(single, paths)
    res = CliRunner().invoke(cli, [*args, "--workers", "2"])
    assert res.exit_code == 2 and "--address and --workers need --engine ray" in res.output


def test_killed_driver_rerun_keeps_finished_parts(
    tmp_path: Path, models: dict[str, Path], single: DatasetPaths, ray_address: str
) -> None:
    paths = copy_inputs(single, tmp_path / "data")
    cfg = config(models, tmp_path)
    params = tmp_path / "params.yaml"
    script = textwrap.dedent(f"""
        from alignrec_data.config import load_section
        from alignrec_data.engine.ray_extract import extract_ray
        from alignrec_model.extract import ExtractConfig
        cfg = load_section({str(params)!r}, "extract", ExtractConfig)
        extract_ray({str(tmp_path / "data")!r}, "zoo", cfg, address={ray_address!r},
                    workers=2, shard_items=10)
    """)
    driver = subprocess.Popen([sys.executable, "-c", script], cwd=REPO,
                              env={**os.environ, **ENV}, stderr=subprocess.PIPE)  # fmt: skip
    last = shard_dir(paths.features, "clip")  # the last variant a task writes (joint)
    deadline = time.monotonic() + 60
    while driver.poll() is None and time.monotonic() < deadline:
        if last.is_dir() and any(last.glob("part-*.parquet")):
            break
        time.sleep(0.02)
    driver.kill()  # kill -9 the driver mid-run
    driver.wait()
    assert driver.returncode == -signal.SIGKILL, driver.stderr.read().decode()[-2000:]
    time.sleep(1.0)  # Ray ends the dead driver's tasks
    finished = sorted(p.name for p in last.glob("part-*.parquet"))
    assert 1 <= len(finished) < 6, finished  # 6 tasks of 10 items

    from alignrec_data.engine.ray_extract import extract_ray

    metrics = extract_ray(tmp_path / "data", "zoo", cfg, workers=2, shard_items=10)
    assert metrics["shards_kept"] >= len(finished)
    assert_same_features(single, paths)
    assert metrics["shards"] == 6


def test_changed_model_does_not_reuse_parts(
    tmp_path: Path, models: dict[str, Path], single: DatasetPaths
) -> None:
    paths = copy_inputs(single, tmp_path / "data")
    bert = tmp_path / "bert"
    shutil.copytree(models["bert"], bert)
    cfg = config({**models, "bert": bert}, tmp_path)
    ids = np.arange(N)
    first = compute_shard(paths, cfg, entry_fingerprints(cfg.entries(), paths), ids, 0, "cpu", 1)
    assert sorted(first["computed"]) == sorted(VARIANTS) and first["kept"] == []
    again = compute_shard(paths, cfg, entry_fingerprints(cfg.entries(), paths), ids, 0, "cpu", 1)
    assert again["computed"] == [] and sorted(again["kept"]) == sorted(VARIANTS)
    tiny_bert(bert)  # same architecture, other weights (a retrained model)
    import torch
    from transformers import BertModel

    model = BertModel.from_pretrained(str(bert))
    with torch.no_grad():
        model.embeddings.word_embeddings.weight.mul_(2.0)
    model.save_pretrained(str(bert))
    prints = entry_fingerprints(cfg.entries(), paths)
    third = compute_shard(paths, cfg, prints, ids, 0, "cpu", 1)
    assert third["computed"] == ["bert"]  # only the changed model's part is recomputed
    merge_run(paths, cfg, [0], 1.0)
    _, stale, _ = read_features(single.features / "bert.parquet")
    _, fresh, _ = read_features(paths.features / "bert.parquet")
    assert not np.allclose(stale, fresh)
    assert not part_path(paths.features, "bert", 0).exists()  # the shards are removed


def test_torchrun_two_ranks_same_files(
    tmp_path: Path, models: dict[str, Path], single: DatasetPaths
) -> None:
    paths = copy_inputs(single, tmp_path / "data")
    cfg = config(models, tmp_path)
    # Rank 0's parts as a run that lost rank 1 left them: the torchrun run keeps them.
    prints = entry_fingerprints(cfg.entries(), paths)
    compute_shard(paths, cfg, prints, np.arange(0, N, 2), 0, "cpu", 1)
    # `python -m torch.distributed.run` is the `torchrun` script, present wherever torch is.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "-m", "alignrec_model.extract_dist", "zoo", "--data-dir", str(tmp_path / "data"),
           "--params", str(tmp_path / "params.yaml")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, **ENV, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (metrics["engine"], metrics["workers"], metrics["items"]) == ("torchrun", 2, N)
    assert metrics["shards_kept"] == 1
    assert_same_features(single, paths)


def test_mmenc_kind_sharded_same_files(tmp_path: Path) -> None:
    from alignrec_model.pretrain import PretrainConfig, pretrain
    from tests.encoder._data import synthetic_dataset, tiny_params

    mm = ["alignrec", "mmenc-image", "mmenc-text"]
    for name in ("one", "sharded"):
        synthetic_dataset(tmp_path / name, n=23)  # every 5th item without image
    params = tiny_params(tmp_path / "params.yaml", mm)
    pretrain(tmp_path / "one", "synth", load_section(params, "pretrain", PretrainConfig))
    paths = DatasetPaths.of(tmp_path / "sharded", "synth")
    paths.models.mkdir(parents=True, exist_ok=True)
    one = DatasetPaths.of(tmp_path / "one", "synth")
    shutil.copy(one.models / "mmenc.pt", paths.models / "mmenc.pt")
    cfg = load_section(params, "extract", ExtractConfig)
    extract(tmp_path / "one", "synth", cfg)
    prints = entry_fingerprints(cfg.entries(), paths)
    for rank in range(3):  # what torchrun rank r of 3 computes: items r::3
        compute_shard(paths, cfg, prints, np.arange(rank, 23, 3), rank, "cpu", 1)
    merge_run(paths, cfg, range(3), 1.0)
    for variant in mm:
        a, b = one.features / f"{variant}.parquet", paths.features / f"{variant}.parquet"
        (_, rows_a, miss_a), (_, rows_b, miss_b) = read_features(a), read_features(b)
        assert list(miss_a) == list(miss_b)
        np.testing.assert_array_equal(rows_a, rows_b, err_msg=variant)
        assert pq.read_schema(a).metadata == pq.read_schema(b).metadata
