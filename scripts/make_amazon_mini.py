"""Rebuild or check the embedded ``amazon-mini`` dataset (wraps scripts/amazon_mini.py).

Examples:
    python scripts/make_amazon_mini.py --out alignrec_data/mini --seed 0   # rebuild
    python scripts/make_amazon_mini.py --check                              # verify shipped files
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without an installed package
    sys.path.insert(0, str(REPO))

from scripts.amazon_mini import MINI_DIR, check_amazon_mini, generate_amazon_mini  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, then rebuild or check; returns the exit status (1: files differ)."""
    parser = argparse.ArgumentParser(
        description=(
            "Generate the synthetic amazon-mini dataset (Amazon 2018 format) deterministically, "
            "or check that a folder holds exactly what the generator writes."
        ),
        epilog=__doc__.split("Examples:", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", type=Path, default=MINI_DIR, help="folder to write or check (default: shipped)"
    )
    parser.add_argument("--seed", type=int, default=0, help="generator seed (shipped: 0)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="regenerate into a temporary folder and compare sha256 with --out; exit 1 on a diff",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.check:
        problems = check_amazon_mini(args.out, seed=args.seed)
        for line in problems:
            print(line)
        if problems:
            print(
                f"{len(problems)} file(s) differ from the generator output; rebuild with "
                f"`python scripts/make_amazon_mini.py --out {args.out} --seed {args.seed}`",
                file=sys.stderr,
            )
            return 1
        print(f"ok: {args.out} matches the generator (seed {args.seed})")
        return 0
    shas = generate_amazon_mini(args.out, seed=args.seed)
    core = {k: v for k, v in shas.items() if not k.startswith("images/")}
    print(json.dumps({"out": str(args.out), "files": len(shas), "sha256": core}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
