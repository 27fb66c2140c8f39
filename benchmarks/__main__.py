"""``python -m benchmarks [--only NAME ...] [--device cpu|cuda] [--quick]``: see README.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .harness import BENCHMARKS, RESULTS_DIR, RESULTS_MD, Context, quiet, run_all


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run the sdsam-nb benchmarks: print a markdown table, write JSON under "
        "benchmarks/results/ and (full runs) update benchmarks/RESULTS.md.",
    )
    add = parser.add_argument
    only = f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}"
    add("--only", action="append", choices=sorted(BENCHMARKS), metavar="NAME", help=only)
    add("--device", choices=("cpu", "cuda"), help="where to run (default: cuda if available)")
    quick = "tiny models and few repetitions: checks the code paths in seconds; its numbers "
    add("--quick", action="store_true", help=quick + "mean nothing and RESULTS.md is left alone")
    add("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    add("--results-md", type=Path, default=RESULTS_MD, help="the RESULTS.md a full run updates")
    add("--no-results-md", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is visible to torch here")
    ctx = Context(device=torch.device(args.device), quick=args.quick)
    names = [n for n in BENCHMARKS if not args.only or n in args.only]
    md = None if args.no_results_md else args.results_md
    with quiet():  # diffusers' settings restored after: the smoke test runs in-process
        record, _ = run_all(names, ctx, results_dir=args.results_dir, results_md=md, argv=argv)
    return 1 if any(b["status"] == "error" for b in record["benchmarks"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
