"""``sdsam-nb`` (``python -m sdsam_nb``): run the notebooks headless with papermill, or replay.

    sdsam-nb run                       the chain 01 -> 04 into a new run folder
    sdsam-nb run --tiny                the same offline, on the built-in tiny models
    sdsam-nb run --walkthrough         00_walkthrough.ipynb instead of the chain
    sdsam-nb run -p steps 30 -f params.yaml
    sdsam-nb replay outputs/<run-id>   re-run from its run.json; compare the pictures

Parameter values are YAML (``-p points "[[250, 180, 1]]"``), as with papermill. Each notebook
receives only the parameters its ``parameters`` cell declares. The kernel runs in
``notebooks/`` (as in Jupyter), so relative paths given here are made absolute first.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import yaml

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CHAIN = (
    "01_generate_subject",
    "02_click_to_mask",
    "03_inpaint_background",
    "04_composite_background",
)
WALKTHROUGH = ("00_walkthrough",)
# Small settings that make the tiny models quick; real models keep the notebooks' defaults.
TINY = {
    "sd_model": "tiny",
    "sam_model": "tiny",
    "detector_model": "tiny",
    "steps": 8,
    "size": 256,
    "n_variations": 2,
}
PATH_PARAMS = ("image_path", "mask_path", "run_dir", "output_root")
NOT_REPLAYED = ("run_dir", "output_root", "use_drive", "progress")


def _yaml_value(text: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SystemExit(f"sdsam-nb: -p value {text!r} is not YAML ({exc})") from None


def _absolute(params: dict) -> dict:
    out = dict(params)
    for name in PATH_PARAMS:
        if out.get(name):
            out[name] = str(Path(out[name]).expanduser().resolve())
    return out


def execute_chain(
    names,
    params: dict,
    *,
    output_root: str | os.PathLike = "outputs",
    progress: bool = True,
    notebooks: Path = NOTEBOOKS,
    kernel: str = "python3",
    per_notebook: dict[str, dict] | None = None,
):
    """Execute ``names`` (notebook stems) in order into one new run folder; return the Run.

    Each notebook gets the entries of ``params`` its parameters cell declares, updated by
    ``per_notebook[name]``. Each executed notebook is saved in the run folder, also when it
    fails (papermill keeps the error in it); a failure stops the chain and raises papermill's
    execution error.
    """
    import papermill as pm

    from . import runs

    run = runs.new_run(Path(output_root).expanduser().resolve())
    params = _absolute(params)
    total = time.perf_counter()
    for i, name in enumerate(names, 1):
        source = notebooks / f"{name}.ipynb"
        if not source.is_file():
            raise SystemExit(f"sdsam-nb: no notebook {source} (run from a checkout of sdsam-nb)")
        declared = pm.inspect_notebook(str(source))
        given = {**params, **_absolute((per_notebook or {}).get(name, {}))}
        given.update(run_dir=str(run.path), progress=False)
        given = {k: v for k, v in given.items() if k in declared}
        print(f"[{i}/{len(names)}] {name}", flush=True)
        start = time.perf_counter()
        executed = run.path / f"{name}.ipynb"
        try:
            pm.execute_notebook(
                str(source),
                str(executed),
                parameters=given,
                kernel_name=kernel,
                cwd=str(notebooks),
                progress_bar=progress,
                log_output=False,
            )
        except pm.PapermillExecutionError:
            print(f"      failed: the error is shown in {executed}", flush=True)
            raise
        print(f"      done in {time.perf_counter() - start:.1f} s", flush=True)
    print(f"run folder: {run.path}  ({time.perf_counter() - total:.1f} s)")
    return runs.open_run(run.path)


def replay(run_dir: str | os.PathLike, *, output_root=None, progress: bool = True):
    """Re-run a run folder's notebooks with its recorded parameters and clicks.

    Returns ``(new_run, differences)``: ``differences`` lists the picture keys whose pixels
    differ from the original (empty when the replay is bit-identical).
    """
    from . import runs

    original = runs.open_run(run_dir)
    record = original.record
    names = [n for n in (*WALKTHROUGH, *CHAIN) if n in record.get("notebooks", {})]
    if not names:
        raise SystemExit(f"sdsam-nb: {run_dir} records no notebook to replay")
    per_notebook = {}
    for name in names:
        params = record["notebooks"][name]["params"]
        per_notebook[name] = {k: v for k, v in params.items() if k not in NOT_REPLAYED}
        if record.get("clicks") and "clicks" in params:
            per_notebook[name]["clicks"] = record["clicks"]  # interactive clicks, exactly
        if original.file("input") is not None and "image_path" in params:
            per_notebook[name]["image_path"] = str(original.file("input"))  # the kept copy
    new = execute_chain(
        names,
        {},
        output_root=output_root or original.path.parent,
        progress=progress,
        per_notebook=per_notebook,
    )
    return new, compare_runs(original, new)


def compare_runs(a, b) -> list[str]:
    """Keys of the PNG files present in both runs whose pixels differ."""
    from PIL import Image

    differ = []
    for key, name in sorted(a.record.get("files", {}).items()):
        other = b.file(key)
        if not name.endswith(".png") or other is None:
            continue
        with Image.open(a.path / name) as x, Image.open(other) as y:
            if x.size != y.size or not np.array_equal(np.asarray(x), np.asarray(y)):
                differ.append(key)
    return differ


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sdsam-nb", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="execute the notebooks into a new run folder")
    run_p.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a notebook parameter (YAML value)",
    )
    run_p.add_argument("-f", "--parameters-file", help="a YAML file of parameters")
    run_p.add_argument(
        "--tiny", action="store_true", help="built-in tiny models with quick settings (offline)"
    )
    run_p.add_argument(
        "--walkthrough",
        action="store_true",
        help="run 00_walkthrough instead of the chain 01 -> 04",
    )
    run_p.add_argument("--notebooks", help="comma-separated notebook names (e.g. 01,02)")
    run_p.add_argument("--output-root", default="outputs", help="where run folders go")
    run_p.add_argument("--no-progress", action="store_true", help="no cell progress bar")
    rep_p = sub.add_parser("replay", help="re-run a run folder from its run.json")
    rep_p.add_argument("run_dir")
    rep_p.add_argument("--output-root", default=None, help="default: beside the original")
    rep_p.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.command == "replay":
        new, differ = replay(
            args.run_dir, output_root=args.output_root, progress=not args.no_progress
        )
        if differ:
            print("differs from the original: " + ", ".join(differ))
            return 1
        print("identical to the original: every picture, bit for bit")
        return 0

    params = dict(TINY) if args.tiny else {}
    if args.parameters_file:
        loaded = yaml.safe_load(Path(args.parameters_file).read_text()) or {}
        if not isinstance(loaded, dict):
            raise SystemExit(f"sdsam-nb: {args.parameters_file} must hold a mapping of parameters")
        params.update(loaded)
    params.update({name: _yaml_value(value) for name, value in args.parameter})
    if args.notebooks:
        wanted = [n.strip() for n in args.notebooks.split(",") if n.strip()]
        everything = (*WALKTHROUGH, *CHAIN)
        names = []
        for w in wanted:
            match = [n for n in everything if n == w or n.startswith(w + "_")]
            if not match:
                raise SystemExit(f"sdsam-nb: --notebooks: no notebook {w!r} in {everything}")
            names += match
    else:
        names = list(WALKTHROUGH if args.walkthrough else CHAIN)
    from papermill import PapermillExecutionError

    try:
        run = execute_chain(
            names, params, output_root=args.output_root, progress=not args.no_progress
        )
    except PapermillExecutionError as exc:
        print(f"sdsam-nb: a notebook failed: {exc.ename}: {exc.evalue}", file=sys.stderr)
        return 1
    print(json.dumps(run.record.get("files", {}), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
