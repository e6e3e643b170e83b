"""The real pipeline, end to end: `dvc repro` on amazon-mini in a temporary copy of the repo.

One long test on purpose: each `dvc repro` of the chain costs minutes on 2 cores, so the
checks that need a finished pipeline share one run. Smallest params (a few pretraining steps,
short training) keep it within a few minutes.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

# The chain runs for minutes on 2 idle cores and several times that beside another CPU-bound
# job: a generous limit here only (every other test keeps pyproject's 600 s).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

DATASET = "amazon-mini"


def _small_params(params: dict) -> dict:
    """The default params with the smallest settings that still learn something."""
    p = dict(params)
    p["datasets"] = [DATASET]
    p["pretrain"] = {
        **p["pretrain"],
        "max_steps": 6,
        "batch_size": 16,
        "max_text_len": 64,
        "probe_items": 16,
        "checkpoint_every": 2,
        "log_every": 2,
    }
    p["extract"] = {**p["extract"], "batch_size": 64}
    # patience as the default (10): with 5, a run can stop on the early popularity plateau
    p["train"] = {**p["train"], "epochs": 30}
    # amazon-mini's own settings (overrides.train.amazon-mini) win over the section: shorten there.
    over = {**p["overrides"]["train"].get(DATASET, {}), "epochs": 30}
    p["overrides"] = {**p["overrides"], "train": {**p["overrides"]["train"], DATASET: over}}
    p["runs"] = {
        "ids": ["lightgcn"],
        "alignrec": ["alignrec", "minilm-text"],
        "itemknn": [],
        "freedom": [],
    }
    p["evaluations"] = {"zero_shot": ["alignrec"], "item_cf": ["minilm-text"], "mask_modality": []}
    return p


def _copy_repo(dst: Path) -> None:
    """Copy the working tree's tracked and untracked-not-ignored files (a clean clone's view)."""
    files = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", DVC_NO_ANALYTICS="1", PYTHONUNBUFFERED="1"
    )
    env.pop("ALIGNREC_MIRROR", None)
    env.pop("ALIGNREC_DATA_DIR", None)
    return env


def _run(cmd: list[str], cwd: Path, timeout: float = 2000) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-6000:]}"
    return out


def _stages_run(output: str) -> set[str]:
    return {
        line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")
    }


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        yield obj


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    work = tmp_path_factory.mktemp("pipeline") / "repo"
    work.mkdir()
    _copy_repo(work)
    params = yaml.safe_load((work / "params.yaml").read_text())
    (work / "params.yaml").write_text(yaml.safe_dump(_small_params(params), sort_keys=False))
    (work / "dvc.lock").unlink(missing_ok=True)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "base"]):
        _run(cmd, work)
    return work


def test_killed_repro_leaves_no_half_written_out_then_finishes(repo: Path) -> None:
    data = repo / "data" / DATASET
    # 1. Start the pipeline and kill it (SIGKILL, the whole process group) during pretraining.
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=repo,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen = []
    deadline = time.monotonic() + 1200
    try:
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("Running stage 'pretrain@"):
                break
            assert time.monotonic() < deadline, "pretrain stage never started:\n" + "".join(seen)
        time.sleep(8)  # inside pretraining: the model is loaded and steps are running
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert (data / "prepared" / "interactions.parquet").is_file()
    assert not (data / "models" / "mmenc.pt").exists(), "a killed pretrain left its output"
    assert not list((data / "models").glob(".mmenc.pt*")), "a temporary file was left behind"
    assert not (data / "features").exists()

    # 2. The next repro finishes the chain (upstream stages are not rerun).
    out = _run([sys.executable, "-m", "dvc", "repro"], repo)
    ran = _stages_run(out)
    assert f"pretrain@{DATASET}" in ran and f"release@{DATASET}" in ran
    assert not {f"download@{DATASET}", f"prepare@{DATASET}", f"images@{DATASET}"} & ran

    # 3. Every declared out exists.
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    for name, stage in lock["stages"].items():
        for out_ in stage.get("outs", []):
            assert (repo / out_["path"]).exists(), f"{name}: declared out {out_['path']} missing"

    # 4. The one metrics file holds the headline: Recall@20 and NDCG@20 per run (valid, test)
    #    and per evaluation, finite; full results stay in plain JSON outputs.
    shown = json.loads(_run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], repo))
    values = list(_numbers(shown))
    assert len(values) == 4 * 4 + 2 * 2, shown  # 4 runs x (valid, test) x 2, 2 evaluations x 2
    assert all(math.isfinite(v) for v in values)

    # 5. AlignRec beats LightGCN on test Recall@20 (amazon-mini's text names each item's
    # category and colourway, so content helps), and both learn far beyond popularity. Asserted
    # on the MiniLM text features, where it also holds when both run to convergence (default
    # params: 0.5712 vs 0.5661). On this short run's MMEnc features (6 pretraining steps)
    # AlignRec is ahead too, but only because LightGCN converges more slowly (at convergence
    # they tie: 0.5642 vs 0.5661), so that pair is printed, not asserted.
    metrics = data / "metrics"
    recall = {
        run: json.loads((metrics / f"train-{run}.json").read_text())["test"]["recall@20"]
        for run in ("alignrec-alignrec", "alignrec-minilm-text", "lightgcn", "pop")
    }
    print("test recall@20:", recall)
    assert recall["alignrec-minilm-text"] > recall["lightgcn"], recall
    assert min(recall.values()) == recall["pop"] and recall["lightgcn"] > 2 * recall["pop"]

    # 6. The release loads with datasets.load_dataset, offline.
    import datasets
    import pyarrow.parquet as pq

    release = data / "release"
    n_items = pq.read_metadata(data / "prepared" / "items.parquet").num_rows
    feats = datasets.load_dataset(str(release), "features-alignrec", split="train")
    assert feats.num_rows == n_items
    assert feats["item_id"][:5] == [0, 1, 2, 3, 4]
    inter = datasets.load_dataset(str(release), "interactions")
    assert set(inter) == {"train", "validation", "test"}
    assert (repo / "data" / DATASET / "report" / "report.md").is_file()
    assert "## Pipeline report" in (release / "README.md").read_text()

    # 7. A second repro does nothing.
    out = _run([sys.executable, "-m", "dvc", "repro"], repo)
    assert _stages_run(out) == set(), out


def test_changing_a_train_param_reruns_only_train_and_what_follows(repo: Path) -> None:
    if not (repo / "dvc.lock").is_file():
        pytest.skip("the pipeline did not finish in the previous test")
    # train.reg_weight: LightGCN's (and MF's) L2 weight; AlignRec has its own (train.alignrec),
    # and no per-dataset override sets it, so the value each run sees really changes.
    out = _run([sys.executable, "-m", "dvc", "exp", "run", "-S", "train.reg_weight=0.0003"], repo)
    ran = _stages_run(out)
    # Runs that read train.reg_weight retrain, and what reads their results; nothing else.
    assert ran == {
        f"train@{DATASET}-lightgcn",
        f"leaderboard@{DATASET}",
        f"report@{DATASET}",
        f"release@{DATASET}",
    }, ran
    # The leaderboard reads the train section, but recomputes only its cells that read
    # reg_weight (the LightGCN cells, one per seed); the others come from its cache (persisted).
    cells = re.search(r"(\d+) cells \((\d+) computed, (\d+) cached\)", out)
    seeds = yaml.safe_load((repo / "params.yaml").read_text())["leaderboard"]["seeds"]
    assert cells is not None, out[-3000:]
    assert int(cells[2]) == len(seeds) and int(cells[3]) > 0, cells[0]
    exps = _run([sys.executable, "-m", "dvc", "exp", "show", "--json"], repo)
    assert "0.0003" in exps
