"""Images stage: one process vs 1 and 2 Ray workers, side by side, on the real H&M photos.

    .venv/bin/python benchmarks/scale_images.py [--items 400] [--latency 0.05] [--rate 20]
        [--threads 16]

A loopback HTTP server in its own process serves the 100 H&M photos of ../shared/data
(each under several paths, so ``--items`` distinct items) and answers every request after
``--latency`` seconds, like a far image host. In one run, on one local Ray instance:

1. ``one process``: ``fetch_images`` (16 threads), per-host limit off;
2. ``ray 1 worker`` and ``ray 2 workers``: ``fetch_images_ray``, limit off (goal: 2 workers
   >= 1.8x of 1 worker);
3. ``ray 2 workers, limit on``: ``per_host_rate = --rate``; the server's request log must
   show at most the limit in any second, for both workers together;
4. ``decode+resize alone``: ``process_image`` on the same photo bytes in one thread (CPU
   seconds an item), against the CPU seconds an item of the one-process run (goal: within 2x).

Prints the machine, items/s, the ratios and the measured request rate. Not a test.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _machine import machine_line  # noqa: E402

from alignrec_data.engine.ray_images import fetch_images_ray  # noqa: E402
from alignrec_data.images import ImagesConfig, fetch_images  # noqa: E402
from alignrec_data.images.validate import process_image  # noqa: E402
from tests.images.helpers import write_items  # noqa: E402

CONFIG = ImagesConfig(concurrency=16, per_host_rate=0, retries=0)  # --threads sets concurrency


def serve(folder: str, latency: float, port_out: mp.Queue) -> None:
    """The image server (own process): ``/p/<copy>/<file>`` after ``latency`` s; ``/log``."""
    photos = {p.name: p.read_bytes() for p in Path(folder).glob("*.jpg")}
    starts: list[float] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/log":
                with lock:
                    body = json.dumps(starts).encode()
                    starts.clear()
            else:
                with lock:
                    starts.append(time.time())
                time.sleep(latency)
                body = photos[self.path.rsplit("/", 1)[-1]]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    port_out.put(httpd.server_address[1])
    httpd.serve_forever()


def request_log(base: str) -> list[float]:
    """The request start times the server saw since the last call."""
    import requests

    return json.loads(requests.get(base + "log", timeout=10).content)


def max_per_second(starts: list[float]) -> int:
    """The most requests that started within any one second."""
    starts = sorted(starts)
    return max(sum(t0 <= t < t0 + 1 for t in starts) for t0 in starts)


def timed(label: str, fn, n: int) -> dict:
    """Run ``fn`` and report wall time, items/s and this process's CPU seconds an item."""
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    assert result.stats["n_with_image"] == n, result.stats["reasons"]
    print(
        f"{label:<28} {n / wall:7.1f} items/s  wall {wall:6.2f} s  "
        f"driver CPU {cpu / n * 1e3:6.1f} ms/item"
    )
    return {"wall": wall, "cpu_per_item": cpu / n}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--items", type=int, default=400)
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--threads", type=int, default=16, help="images.concurrency of each worker")
    args = p.parse_args()
    global CONFIG
    CONFIG = ImagesConfig(concurrency=args.threads, per_host_rate=0, retries=0)
    folder = args.shared / "hm-sample" / "images"
    files = sorted(folder.glob("*.jpg"))
    if not files:
        sys.exit(f"no photos in {folder}")
    q: mp.Queue = mp.Queue()
    server = mp.Process(target=serve, args=(str(folder), args.latency, q), daemon=True)
    server.start()
    base = f"http://127.0.0.1:{q.get(timeout=30)}/"
    urls = [[f"{base}p/{i // len(files)}/{files[i % len(files)].name}"] for i in range(args.items)]
    keys = [f"hm{i:06d}" for i in range(args.items)]

    import ray

    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=128 * 2**20
    )
    print(f"machine: {machine_line()}")
    print(
        f"input: {args.items} items ({len(files)} H&M photos), {args.latency * 1e3:.0f} ms "
        f"latency, {CONFIG.concurrency} threads a worker, shorter_side {CONFIG.shorter_side}"
    )
    with tempfile.TemporaryDirectory() as tmp:

        def run(name: str, engine: str, workers: int = 1, config: ImagesConfig = CONFIG, n=None):
            data_dir = Path(tmp) / name
            n = n or args.items
            write_items(data_dir / "hm" / "prepared", urls[:n], keys[:n])
            if engine == "one":
                return fetch_images(data_dir, "hm", config, progress=False)
            return fetch_images_ray(data_dir, "hm", config, workers=workers, progress=False)

        run("warm-up", "ray", 2)  # start and import the two Ray workers once
        request_log(base)
        one = timed("one process", lambda: run("one", "one"), args.items)
        r1 = timed("ray 1 worker", lambda: run("r1", "ray", 1), args.items)
        r2 = timed("ray 2 workers", lambda: run("r2", "ray", 2), args.items)
        request_log(base)
        n_limited = min(args.items, int(args.rate * 5))
        limited = ImagesConfig(**{**CONFIG.__dict__, "per_host_rate": args.rate})
        timed(
            f"ray 2 workers, limit {args.rate:g}/s",
            lambda: run("lim", "ray", 2, limited, n_limited),
            n_limited,
        )
        starts = request_log(base)
    print(
        f"ray 2 vs 1 worker: {r1['wall'] / r2['wall']:.2f}x (goal >= 1.8x); "
        f"ray 2 workers vs one process: {one['wall'] / r2['wall']:.2f}x"
    )
    mean = (len(starts) - 1) / (max(starts) - min(starts))
    print(
        f"limit {args.rate:g} requests/s, 2 workers: most requests in any second at the "
        f"server {max_per_second(starts)}; mean {mean:.1f}/s"
    )

    photos = [f.read_bytes() for f in files]
    settings = CONFIG.image_settings()
    c0 = time.process_time()
    for i in range(args.items):
        process_image(photos[i % len(photos)], settings)
    decode = (time.process_time() - c0) / args.items
    print(
        f"decode+resize alone: {decode * 1e3:.1f} ms CPU/item; one-process stage "
        f"{one['cpu_per_item'] * 1e3:.1f} ms CPU/item = {one['cpu_per_item'] / decode:.2f}x "
        f"(goal <= 2x)"
    )
    ray.shutdown()
    server.terminate()


if __name__ == "__main__":
    main()
