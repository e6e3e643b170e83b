"""MMEnc throughput: pretraining samples/s, MFU, extraction items/s, peak memory.

Goal on one H100/H200 at base size in bf16: MFU >= 35%. Synthetic inputs (224 px images, full
texts without padding so SDPA can use its fused kernels), the real model, heads, loss and
AdamW step of ``alignrec_model.pretrain``.

    python benchmarks/encoder_gpu.py                          # base, bf16, cuda
    python benchmarks/encoder_gpu.py --compile --batch 96     # with torch.compile
    python benchmarks/encoder_gpu.py --device cpu --size tiny --steps 3 --warmup 1   # smoke test

MFU = (model FLOPs per sample x samples/s) / peak dense bf16 FLOP/s of the device, where model
FLOPs count the matmuls of one training step (3 x forward: qkv, out, FFN, attention scores and
values, patch embedding, MLM and MIM heads) and not the element-wise work.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import resource
import time

import torch

from alignrec_model.encoder import MMEnc, MMEncConfig
from alignrec_model.masking import block_mask, sample_generator
from alignrec_model.pretrain import PretrainConfig, PretrainModel, make_optimizer

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def flops_per_sample(
    cfg: MMEncConfig, text_len: int, masked_text: int, masked_patches: int, target_dim: int
) -> float:
    """Training FLOPs (3 x forward matmul FLOPs) of one joint sample."""
    d, f, n_layers = cfg.hidden, cfg.ffn, cfg.layers
    seq = 1 + cfg.num_patches + text_len
    per_token = 2 * (4 * d * d + 2 * d * f) * n_layers  # qkv + out + FFN
    attention = 2 * 2 * seq * d * n_layers  # scores + weighted values, per token
    stem = 2 * 3 * cfg.patch_size**2 * d * cfg.num_patches
    heads = masked_text * 2 * (d * d + d * cfg.vocab_size) + masked_patches * 2 * (
        d * d + d * target_dim
    )
    return 3.0 * (seq * (per_token + attention) + stem + heads)


def make_batch(cfg: MMEncConfig, b: int, t: int, device: torch.device) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, cfg.vocab_size, (b, t), generator=g)
    labels = torch.full_like(ids, -100)
    n_txt = t // 2
    labels[:, 1 : 1 + n_txt] = ids[:, 1 : 1 + n_txt]
    n_mask = int(round(0.4 * cfg.num_patches))
    mask = torch.stack(
        [block_mask(cfg.grid, n_mask, sample_generator(0, 0, i, 2)) for i in range(b)]
    )
    part = {
        "pixels": torch.randn(b, 3, cfg.image_size, cfg.image_size, generator=g),
        "input_ids": ids,
        "text_padding_mask": torch.zeros(b, t, dtype=torch.bool),
        "labels": labels,
        "image_mask": mask,
    }
    return [{k: v.to(device) for k, v in part.items()}], n_txt, n_mask


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", default="base", choices=["tiny", "small", "base"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--text-len", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--compile", action="store_true", help="torch.compile the encoder")
    ap.add_argument(
        "--peak-tflops", type=float, default=None, help="override the peak bf16 TFLOP/s"
    )
    args = ap.parse_args()

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    bf16 = cuda and not args.no_bf16
    cfg = MMEncConfig.from_size(args.size, max_text_len=args.text_len)
    torch.manual_seed(0)
    model = PretrainModel(MMEnc(cfg)).to(device)
    if args.compile:
        model.encoder = torch.compile(model.encoder)
    opt = make_optimizer(model, PretrainConfig(init="scratch", size=args.size))
    parts, n_txt, n_mask = make_batch(cfg, args.batch, args.text_len, device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def train_step() -> None:
        with autocast:
            s = model(parts).sum(0)
        loss = s[0] / s[1] + s[2] / s[3]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        train_step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        train_step()
    sync()
    train_s = time.perf_counter() - t0
    train_sps = args.batch * args.steps / train_s
    train_mem = torch.cuda.max_memory_allocated() / 2**30 if cuda else None

    # Extraction: joint + image-only + text-only forward per item, no grad.
    enc = model.encoder
    enc.eval()
    p = parts[0]
    mean_std = (p["pixels"], p["input_ids"], p["text_padding_mask"])

    @torch.no_grad()
    def extract_step() -> None:
        px, ids, pad = mean_std
        with autocast:
            enc(pixel_values=px, input_ids=ids, text_padding_mask=pad)
            enc(pixel_values=px)
            enc(input_ids=ids, text_padding_mask=pad)

    for _ in range(max(1, args.warmup // 2)):
        extract_step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        extract_step()
    sync()
    extract_ips = args.batch * args.steps / (time.perf_counter() - t0)
    extract_mem = torch.cuda.max_memory_allocated() / 2**30 if cuda else None

    flops = flops_per_sample(cfg, args.text_len, n_txt, n_mask, model.target_dim)
    name = torch.cuda.get_device_name(device) if cuda else cpu_model()
    peak = (
        args.peak_tflops * 1e12
        if args.peak_tflops
        else next((v for k, v in PEAK_BF16.items() if k in name), None)
    )
    mfu = flops * train_sps / peak if (peak and cuda) else None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    n_params = sum(q.numel() for q in enc.parameters())
    print(
        f"machine: {name}; cpus {os.cpu_count()}; cpu {cpu_model()}; torch {torch.__version__}; "
        f"threads {torch.get_num_threads()}"
    )
    print(
        f"model: MMEnc {args.size} ({n_params / 1e6:.1f} M encoder params), "
        f"batch {args.batch}, {cfg.num_patches + 1} image + {args.text_len} text tokens, "
        f"{'bf16 autocast' if bf16 else 'fp32'}{', compiled' if args.compile else ''}"
    )
    rows = [
        ("pretrain samples/s", f"{train_sps:,.1f}"),
        ("train step GFLOP/sample", f"{flops / 1e9:,.1f}"),
        ("achieved TFLOP/s", f"{flops * train_sps / 1e12:,.2f}"),
        (
            "model FLOPs utilisation",
            f"{100 * mfu:.1f}%" if mfu is not None else "n/a (no known peak)",
        ),
        (
            "pretrain peak memory",
            f"{train_mem:.2f} GiB" if train_mem is not None else f"{rss:.2f} GiB RSS",
        ),
        ("extract items/s (3 passes)", f"{extract_ips:,.1f}"),
        ("extract peak memory", f"{extract_mem:.2f} GiB" if extract_mem is not None else "n/a"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'metric'.ljust(width)} | value")
    print(f"{'-' * width}-|------")
    for k, v in rows:
        print(f"{k.ljust(width)} | {v}")


if __name__ == "__main__":
    main()
