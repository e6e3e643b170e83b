"""Items/s of each extraction kind next to a plain loop doing the same work, on CPU.

    python benchmarks/extract_kinds.py [--items 200] [--threads 2] [--repeat 3] [--batch 32]

Prepares the embedded amazon-mini dataset (download / prepare / images, about 2 s) in a temp
folder, decodes the item images once, and times per kind the rows of ``--items`` items
(``Encoder.rows``: missing inputs, zero rows, joint, float32 copies) against a hand-written
loop over the same model, inputs, batch size and threads (tokenizer / processor + forward +
pooling, nothing else). Models: tiny random BERT / ViT / CLIP (the tests' builders), the real
offline all-MiniLM-L6-v2 (as ``hf-text`` and as ``sentence-transformers``) and
EfficientNet-Lite0 (``effnet``). Best of ``--repeat`` runs after one warm-up, ours and plain
timed alternately (a load spike on a shared machine then hits both).
Goal: every ratio (ours / plain items per second) >= 0.9.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]


def best_pair(ours: Callable[[], object], plain: Callable[[], object], repeat: int):
    """Best seconds of each, timed alternately (a shared machine's load hits both alike)."""
    ours(), plain()  # warm-up
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for fn, out in ((ours, times[0]), (plain, times[1])):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return min(times[0]), min(times[1])


def prepare(root: Path):
    from click.testing import CliRunner

    from alignrec_data.cli import cli
    from alignrec_data.paths import DatasetPaths

    for stage in ("download", "prepare", "images"):
        res = CliRunner().invoke(cli, [stage, "amazon-mini", "--data-dir", str(root)])
        assert res.exit_code == 0, res.output
    return DatasetPaths.of(root, "amazon-mini")


def plain_text(folder: Path, pooling: str, normalize: bool, bs: int) -> Callable[[list], None]:
    from transformers import AutoModel, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    limit = min(tok.model_max_length, model.config.max_position_embeddings)

    def run(texts: list[str]) -> None:
        with torch.no_grad():
            for i in range(0, len(texts), bs):
                enc = tok(texts[i : i + bs], padding=True, truncation=True, max_length=limit,
                          return_tensors="pt")  # fmt: skip
                h = model(**enc).last_hidden_state
                if pooling == "cls":
                    v = h[:, 0]
                else:
                    m = enc["attention_mask"].unsqueeze(-1).float()
                    v = (h * m).sum(1) / m.sum(1)
                if normalize:
                    v = torch.nn.functional.normalize(v, dim=1)
                v.numpy()

    return run


def plain_image(folder: Path, bs: int) -> Callable[[torch.Tensor], None]:
    from transformers import AutoImageProcessor, AutoModel

    proc = AutoImageProcessor.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()

    def run(images: torch.Tensor) -> None:
        with torch.no_grad():
            for i in range(0, len(images), bs):
                arrays = [im.permute(1, 2, 0).numpy() for im in images[i : i + bs]]
                px = proc(images=arrays, return_tensors="pt")["pixel_values"]
                model(pixel_values=px).pooler_output.numpy()

    return run


def plain_clip(folder: Path, bs: int) -> Callable[[list, torch.Tensor], None]:
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    proc, tok = AutoImageProcessor.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    limit = model.config.text_config.max_position_embeddings

    def feats(out):
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def run(texts: list[str], images: torch.Tensor) -> None:
        with torch.no_grad():
            for i in range(0, len(texts), bs):
                enc = tok(texts[i : i + bs], padding=True, truncation=True, max_length=limit,
                          return_tensors="pt")  # fmt: skip
                feats(model.get_text_features(enc["input_ids"], enc["attention_mask"])).numpy()
            for i in range(0, len(images), bs):
                arrays = [im.permute(1, 2, 0).numpy() for im in images[i : i + bs]]
                px = proc(images=arrays, return_tensors="pt")["pixel_values"]
                feats(model.get_image_features(pixel_values=px)).numpy()

    return run


def plain_effnet(size: int, bs: int) -> Callable[[torch.Tensor], None]:
    from alignrec_model.hybrid import load_efficientnet
    from alignrec_model.preprocess import IMAGENET_MEAN, IMAGENET_STD, normalize_pixels

    model = load_efficientnet(size)

    def run(images: torch.Tensor) -> None:
        with torch.no_grad():
            for i in range(0, len(images), bs):
                x = normalize_pixels(images[i : i + bs], IMAGENET_MEAN, IMAGENET_STD)
                model.extract_features(x).mean((2, 3)).numpy()

    return run


def main() -> None:
    from _machine import machine_line

    from alignrec_model.extractors import build_encoder, parse_entry
    from alignrec_model.hybrid import minilm_path
    from tests.feature_zoo._models import tiny_bert, tiny_clip, tiny_vit

    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--only", default="", help="comma-separated kinds to run (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bs = args.batch
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = prepare(root / "data")
        import pandas as pd

        items = pd.read_parquet(paths.prepared / "items.parquet").head(args.items)
        texts = items["text"].tolist()
        bert, vit, clip = tiny_bert(root / "bert"), tiny_vit(root / "vit"), tiny_clip(root / "clip")
        minilm = minilm_path()
        cases = [
            ("hf-text", "tiny BERT (mean)", {"kind": "hf-text", "model": str(bert)},
             lambda: plain_text(bert, "mean", False, bs), "text"),
            ("hf-image", "tiny ViT (pooler)", {"kind": "hf-image", "model": str(vit)},
             lambda: plain_image(vit, bs), "image"),
            ("hf-clip", "tiny CLIP (3 outputs)", {"kind": "hf-clip", "model": str(clip)},
             lambda: plain_clip(clip, bs), "both"),
            ("hf-text", "MiniLM-L6 (mean+L2)",
             {"kind": "hf-text", "model": str(minilm), "normalize": True},
             lambda: plain_text(minilm, "mean", True, bs), "text"),
            ("sentence-transformers", "MiniLM-L6", {"kind": "sentence-transformers"},
             lambda: plain_text(minilm, "mean", True, bs), "text"),
            ("effnet", "EfficientNet-Lite0 128px", {"kind": "effnet", "image_size": 128},
             lambda: plain_effnet(128, bs), "image"),
        ]  # fmt: skip
        only = set(filter(None, args.only.split(",")))
        print(f"machine: {machine_line()}")
        print(f"items: {len(items)} amazon-mini items, batch {bs}, {args.threads} threads")
        print(f"{'kind':22} {'model':24} {'ours it/s':>10} {'plain it/s':>11} {'ratio':>6}")
        for kind, label, spec, make_plain, inputs in cases:
            if only and kind not in only:
                continue
            entry = parse_entry({"name": "bench", "batch_size": bs, **spec})
            encoder = build_encoder(entry, paths)
            cache: dict = {}
            encoder.rows(paths, items, cache)  # decodes the images once (not timed below)
            plain = make_plain()
            images = cache.get(encoder.image_size)

            def plain_inputs() -> tuple:
                # The same selection the encoder makes: non-empty texts, items with an image.
                keep = [t for t in texts if t.strip()]
                pick = images[0][torch.from_numpy(np.flatnonzero(images[1]))] if images else None  # noqa: B023
                return {"text": (keep,), "image": (pick,), "both": (keep, pick)}[inputs]  # noqa: B023

            ours, t_plain = best_pair(
                lambda: encoder.rows(paths, items, cache),  # noqa: B023
                lambda: plain(*plain_inputs()),  # noqa: B023
                args.repeat,
            )
            n = len(items)
            ratio = t_plain / ours
            print(f"{kind:22} {label:24} {n / ours:10.1f} {n / t_plain:11.1f} {ratio:6.2f}")


if __name__ == "__main__":
    main()
