"""``python -m benchmarks [--only NAME ...] [--device cpu|cuda] [--quick]``: see README.md."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .harness import BENCHMARKS, RESULTS_DIR, RESULTS_MD, Context, run_all


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run the sdsam-nb benchmarks: print a markdown table, write JSON under "
        "benchmarks/results/ and (full runs) update benchmarks/RESULTS.md.",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default=None,
        help="where to run (default: cuda if available, else cpu)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny models and few repetitions: checks the code paths in seconds; "
        "its numbers mean nothing and RESULTS.md is left alone",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    parser.add_argument(
        "--results-md",
        type=Path,
        default=RESULTS_MD,
        help="the RESULTS.md to update after a full run",
    )
    parser.add_argument("--no-results-md", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is built locally
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is visible to torch here")
    from diffusers.utils import logging as dlogging

    level, bars = dlogging.get_verbosity(), dlogging.is_progress_bar_enabled()
    dlogging.set_verbosity_error()
    dlogging.disable_progress_bar()
    ctx = Context(device=torch.device(args.device), quick=args.quick)
    names = [n for n in BENCHMARKS if not args.only or n in args.only]
    results_md = None if args.no_results_md else args.results_md
    try:
        record, _ = run_all(
            names, ctx, results_dir=args.results_dir, results_md=results_md, argv=argv
        )
    finally:  # leave the caller's diffusers settings as they were (the smoke test runs in-process)
        dlogging.set_verbosity(level)
        if bars:
            dlogging.enable_progress_bar()
    failed = [n for n, b in record["benchmarks"].items() if b["status"] == "error"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
