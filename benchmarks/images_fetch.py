"""Images stage throughput on the 100 real H&M photos served by a loopback HTTP server.

    .venv/bin/python benchmarks/images_fetch.py [--shared ../shared/data]

Prints items/s for a few (shorter_side, concurrency) settings, the missing rate, the stored
bytes, and the machine. Needs ../shared/data/hm-sample.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alignrec_data.images import ImagesConfig, fetch_images  # noqa: E402
from tests.images.helpers import write_items  # noqa: E402


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    folder = args.shared / "hm-sample" / "images"
    files = sorted(folder.glob("*.jpg"))
    if not files:
        sys.exit(f"no images in {folder}")
    handler = functools.partial(Quiet, directory=str(folder))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}/"
    urls = [[base + f.name] for f in files]
    print(f"machine: {os.cpu_count()} cpus, {cpu_model()}, python {platform.python_version()}")
    print(f"input: {len(files)} photos, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB")
    for shorter_side, concurrency in ((64, 4), (256, 4), (256, 16)):
        with tempfile.TemporaryDirectory() as tmp:
            write_items(Path(tmp) / "hm" / "prepared", urls, [f.stem for f in files])
            config = ImagesConfig(
                shorter_side=shorter_side, concurrency=concurrency, per_host_rate=0
            )
            r = fetch_images(tmp, "hm", config, progress=False)
            print(
                f"shorter_side={shorter_side:<4} concurrency={concurrency:<3} "
                f"{r.images_per_s:6.1f} items/s  {r.elapsed_s:.2f} s  "
                f"missing rate {r.stats['missing_rate']:.3f}  "
                f"stored {r.stats['shard_bytes'] / 1e3:.0f} kB "
                f"(mean {r.stats['mean_width']:.0f}x{r.stats['mean_height']:.0f})"
            )
    httpd.shutdown()


if __name__ == "__main__":
    main()
