"""The machine a benchmark ran on, printed by every benchmark next to its numbers."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine_info() -> dict:
    """CPU count and model, torch version and threads, Python, platform, 1-minute load."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        threads, version = torch.get_num_threads(), torch.__version__
    except ImportError:
        threads, version = None, None
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "torch": version,
        "torch_threads": threads,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def machine_line() -> str:
    """:func:`machine_info` as one ``key=value`` line."""
    return " ".join(f"{k}={v}" for k, v in machine_info().items())
