"""``sdsam-nb`` (``python -m sdsam_nb``): run the notebooks headless with papermill, or replay.

    sdsam-nb run                       the chain 01 -> 04 into a new run folder
    sdsam-nb run --tiny                the same offline, on the built-in tiny models
    sdsam-nb run --walkthrough         00_walkthrough.ipynb instead of the chain
    sdsam-nb run -p steps 30 -f params.yaml
    sdsam-nb run --notebooks 03 -p run_dir outputs/<run-id>   continue a run
    sdsam-nb replay outputs/<run-id>   re-run from its run.json; compare the pictures
    sdsam-nb notebooks DIR             copy the notebooks into DIR (for a pip-installed kit)
    sdsam-nb batch items.yaml -o OUT   every item into OUT/<id>/, models loaded once; run it
                                       again to resume (exit 0: all done, 1: some failed)
    sdsam-nb batch items.yaml --ray    the same on Ray (this machine; --ray auto: the cluster)
    sdsam-nb sweep 01 -p seed 1 2 -p guidance 5 7.5   a grid of runs of one notebook

Parameter values are YAML (``-p points "[[250, 180, 1]]"``), as with papermill. Each notebook
receives the parameters its ``parameters`` cell declares; a ``-p`` that none of the notebooks
run declares is an error. Relative paths (``--output-root``, ``image_path``, ``run_dir``...)
are relative to the current directory, which is also where the kernels run.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import yaml

CHAIN = (
    "01_generate_subject",
    "02_click_to_mask",
    "03_inpaint_background",
    "04_composite_background",
)
WALKTHROUGH = ("00_walkthrough",)
EVERY = (*WALKTHROUGH, *CHAIN)
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


class CommandError(Exception):
    """A one-line answer to a command that cannot be done as asked."""


def notebooks_dir() -> Path:
    """The kit's notebooks, wherever it is installed (see :func:`sdsam_nb.runs.kit_dir`)."""
    from .runs import kit_dir

    return kit_dir("notebooks")


def declared(name: str, notebooks: Path | None = None) -> dict:
    """The parameters notebook ``name`` declares (papermill's reading of its parameters cell)."""
    import papermill as pm

    source = (notebooks or notebooks_dir()) / f"{name}.ipynb"
    if not source.is_file():
        raise CommandError(f"no notebook {source}")
    return pm.inspect_notebook(str(source))


def check_names(given, names, notebooks: Path | None = None, *, what: str = "-p") -> None:
    """Fail on a parameter that none of ``names`` declares, naming the close matches."""
    known = set()
    for name in names:
        known |= set(declared(name, notebooks))
    for param in given:
        if param not in known:
            close = difflib.get_close_matches(param, sorted(known), n=3)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            where = "any notebook" if set(names) == set(EVERY) else ", ".join(names)
            raise CommandError(f"{what} {param}: no parameter {param!r} in {where}{hint}")


def _yaml_value(text: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CommandError(f"-p value {text!r} is not YAML ({exc})") from None


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
    output_root: str | os.PathLike | None = None,
    run_dir: str | os.PathLike | None = None,
    progress: bool = True,
    notebooks: Path | None = None,
    kernel: str = "python3",
    per_notebook: dict[str, dict] | None = None,
    echo: bool = True,
):
    """Execute ``names`` (notebook stems) in order into one run folder; return the Run.

    The run folder is ``run_dir`` (continued: its record and files are kept) or a new one
    under ``output_root`` (default :func:`sdsam_nb.runs.default_output_root`). Each notebook
    gets the entries of ``params`` its parameters cell declares, updated by
    ``per_notebook[name]``, and runs in the current directory. Each executed notebook is
    saved in the run folder under a free name, also when it fails (papermill keeps the error
    in it); a failure stops the chain and raises papermill's execution error. ``echo``: print
    a line per notebook.
    """
    import papermill as pm

    from . import runs

    notebooks = notebooks or notebooks_dir()
    if run_dir:
        try:
            run = runs.open_run(Path(run_dir).expanduser().resolve())
        except FileNotFoundError as exc:
            raise CommandError(f"run_dir: {exc}") from None
    else:
        run = runs.new_run(Path(output_root or runs.default_output_root()).expanduser())
    params = _absolute(params)
    total = time.perf_counter()
    say = print if echo else _silent
    for i, name in enumerate(names, 1):
        source = notebooks / f"{name}.ipynb"
        given = {**params, **_absolute((per_notebook or {}).get(name, {}))}
        given.update(run_dir=str(run.path), progress=False)
        wanted = declared(name, notebooks)
        given = {k: v for k, v in given.items() if k in wanted}
        say(f"[{i}/{len(names)}] {name}", flush=True)
        start = time.perf_counter()
        executed = run.reserve(f"{name}.ipynb")
        before = len(run.record.get("executions", []))
        try:
            pm.execute_notebook(
                str(source),
                str(executed),
                parameters=given,
                kernel_name=kernel,
                cwd=os.getcwd(),
                progress_bar=progress,
                log_output=False,
            )
        except pm.PapermillExecutionError as exc:
            _note_executed(run, name, before, executed, given, _one_line(exc))
            say(f"      failed: the error is shown in {executed}", flush=True)
            raise
        _note_executed(run, name, before, executed, given)
        say(f"      done in {time.perf_counter() - start:.1f} s", flush=True)
    say(f"run folder: {run.path}  ({time.perf_counter() - total:.1f} s)")
    return run


def _silent(*args, **kwargs) -> None:
    pass


def _one_line(exc) -> str:
    return f"{exc.ename}: {exc.evalue}".splitlines()[0]


def _note_executed(
    run, name: str, before: int, executed: Path, params: dict, error: str | None = None
) -> None:
    """Name the executed notebook file in the execution(s) that notebook recorded; a
    notebook that failed before recording one (a bad parameter) gets a failed entry."""
    from .runs import jsonable

    def change(record):
        executions = record.setdefault("executions", [])
        mine = [e for e in executions[before:] if e.get("notebook") == name]
        if not mine and error is not None:
            mine = [{"id": len(executions), "notebook": name, "params": jsonable(params)}]
            mine[0].update(status="failed", errors=[error])
            executions.append(mine[0])
        for entry in mine:
            entry["executed_notebook"] = executed.name

    run.update(change)


def replay(run_dir: str | os.PathLike, *, output_root=None, progress: bool = True):
    """Re-run a run folder's notebooks with their newest recorded parameters and clicks,
    with the disk caches off (every picture and embedding computed again).

    Returns ``(new_run, differences)``: ``differences`` lists the picture keys whose pixels
    differ from the original (empty when the replay is bit-identical).
    """
    from . import runs

    try:
        original = runs.open_run(Path(run_dir).expanduser().resolve())
    except FileNotFoundError as exc:
        raise CommandError(f"replay: {exc}") from None
    record = original.record
    names = [n for n in EVERY if n in record.get("notebooks", {})]
    if not names:
        raise CommandError(f"replay: {run_dir} records no notebook to replay")
    per_notebook = {}
    for name in names:
        params = record["notebooks"][name]["params"]
        per_notebook[name] = {k: v for k, v in params.items() if k not in NOT_REPLAYED}
        # a parameter added since the run was recorded takes the value that did what the
        # notebook did then (a newer default may differ, e.g. edge="matte")
        for key, value in runs.BEFORE_IT_EXISTED.items():
            if key not in params and key in declared(name):
                per_notebook[name][key] = value
        if record.get("clicks") and "clicks" in params:
            per_notebook[name]["clicks"] = record["clicks"]  # interactive clicks, exactly
        if original.file("input") is not None and "image_path" in params:
            per_notebook[name]["image_path"] = str(original.file("input"))  # the kept copy
        if params.get("mask_path") and original.file("mask") is not None:
            per_notebook[name]["mask_path"] = str(original.file("mask"))  # likewise
        if "cache" in declared(name):  # recomputed, not taken from the caches: a replay
            per_notebook[name]["cache"] = False  # proves the run reproduces from scratch
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


def copy_notebooks(target: str | os.PathLike) -> list[Path]:
    """Copy the kit's notebooks into ``target`` (created if needed); never overwrites.

    Returns the files written; a notebook already in ``target`` is left as it is.
    """
    target = Path(target).expanduser()
    if target.exists() and not target.is_dir():
        raise CommandError(f"notebooks: {target} is a file, not a folder")
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sorted(notebooks_dir().glob("*.ipynb")):
        dest = target / source.name
        if dest.exists():
            print(f"kept {dest} (already there)")
            continue
        shutil.copyfile(source, dest)
        written.append(dest)
    return written


def _parameters(sub: argparse.ArgumentParser, one: str, file: str) -> None:
    """``-p NAME VALUE`` (repeatable) and ``-f FILE``, as ``run`` and ``batch`` take them."""
    sub.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help=one,
    )
    sub.add_argument("-f", "--parameters-file", help=file)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sdsam-nb", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="execute the notebooks into a run folder")
    _parameters(
        run_p,
        "a notebook parameter (YAML value); -p run_dir DIR continues that run",
        "a YAML file of parameters",
    )
    run_p.add_argument(
        "--tiny", action="store_true", help="built-in tiny models with quick settings (offline)"
    )
    run_p.add_argument(
        "--walkthrough",
        action="store_true",
        help="run 00_walkthrough instead of the chain 01 -> 04",
    )
    run_p.add_argument("--notebooks", help="comma-separated notebook names (e.g. 01,02)")
    run_p.add_argument(
        "--output-root",
        default=None,
        help="where new run folders go, relative to the current directory (default: the "
        "checkout's outputs/, or ./outputs for an installed kit)",
    )
    run_p.add_argument("--no-progress", action="store_true", help="no cell progress bar")
    rep_p = sub.add_parser("replay", help="re-run a run folder from its run.json")
    rep_p.add_argument("run_dir")
    rep_p.add_argument("--output-root", default=None, help="default: beside the original")
    rep_p.add_argument("--no-progress", action="store_true")
    nb_p = sub.add_parser("notebooks", help="copy the notebooks into a folder")
    nb_p.add_argument("dir", help="the folder (created if needed); existing files are kept")
    bat_p = sub.add_parser(
        "batch",
        help="many subjects headless into OUT/<id>/, models loaded once; run again to resume",
        description="Run every item of MANIFEST into OUT/<id>/ and list them in OUT/index.csv. "
        "Running it again skips the items done and redoes the others (their old folders are "
        "moved aside, never deleted). Exit status: 0 every item done, 1 some failed, 2 the "
        "batch could not start.",
    )
    bat_p.add_argument(
        "manifest",
        help="a .csv, .yaml or .jsonl file of items, or a folder of pictures with "
        "a prompt.txt (the background prompt)",
    )
    bat_p.add_argument(
        "-o",
        "--out",
        default=None,
        help="the batch's folder (default: batch-<manifest name> where run folders go)",
    )
    _parameters(
        bat_p,
        "a default for every item (YAML value): a notebook parameter, method, mask, auto_mask",
        "a YAML file of defaults for every item",
    )
    bat_p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _ray_options(
        bat_p,
        "items",
        "with --ray: the actor pool's size (default: one per GPU, else 2 CPU workers)",
    )
    sw_p = sub.add_parser(
        "sweep",
        help="one notebook over a grid of parameters, one run folder per point",
        description="Run NOTEBOOK once per point of the cartesian grid of the -p values into "
        "OUT/p001, OUT/p002... and list the points in OUT/index.csv. Running it again skips "
        "the points done. Exit status: 0 every point done, 1 some failed, 2 the sweep could "
        "not start.",
    )
    sw_p.add_argument("notebook", help="a notebook's name or number (01, 03_inpaint_background)")
    sw_p.add_argument(
        "-p",
        "--parameter",
        nargs="+",
        action="append",
        default=[],
        metavar="NAME VALUE",
        help="a parameter and the values to sweep (YAML each): -p seed 1 2 3",
    )
    sw_p.add_argument(
        "-f",
        "--parameters-file",
        help="a YAML mapping: a list is swept, any other value is fixed",
    )
    sw_p.add_argument(
        "-o", "--out", default=None, help="default: sweep-<notebook> where run folders go"
    )
    sw_p.add_argument(
        "--tiny", action="store_true", help="built-in tiny models with quick settings (offline)"
    )
    sw_p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _ray_options(
        sw_p,
        "points",
        "how many kernels at once (default 1 here; with --ray, all the cluster runs)",
    )
    return parser


def _ray_options(sub: argparse.ArgumentParser, what: str, workers: str) -> None:
    """``--ray [auto|ADDRESS]`` and ``--workers N``, as ``batch`` and ``sweep`` take them."""
    sub.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="auto|ADDRESS",
        help=f"run the {what} on Ray: alone, a Ray instance on this machine; 'auto', the "
        "cluster running here (ray start --head); or a cluster's address "
        '(needs pip install "sdsam-nb[ray]")',
    )
    sub.add_argument(
        "--workers",
        type=int,
        default=None,
        help=workers,
    )


def _select(spec: str | None, walkthrough: bool) -> list[str]:
    if not spec:
        return list(WALKTHROUGH if walkthrough else CHAIN)
    names = []
    for w in (n.strip() for n in spec.split(",")):
        if not w:
            continue
        match = [n for n in EVERY if n == w or n.startswith(w + "_")]
        if not match:
            raise CommandError(f"--notebooks: no notebook {w!r} (the notebooks: {EVERY})")
        names += match
    return names


def _parameters_file(path: str | None) -> dict:
    """The mapping a ``-f`` YAML file holds (empty without one)."""
    if not path:
        return {}
    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CommandError(f"-f {path}: {exc}") from None
    if not isinstance(loaded, dict):
        raise CommandError(f"-f {path} must hold a mapping of parameters")
    return loaded


def _run(args) -> int:
    from papermill import PapermillExecutionError

    names = _select(args.notebooks, args.walkthrough)
    params = dict(TINY) if args.tiny else {}
    loaded = _parameters_file(args.parameters_file)
    check_names(loaded, EVERY, what="-f")  # a general file may name other notebooks'
    params.update(loaded)
    given = {name: _yaml_value(value) for name, value in args.parameter}
    check_names(given, names)
    params.update(given)
    run_dir = params.pop("run_dir", None)
    try:
        run = execute_chain(
            names,
            params,
            output_root=args.output_root,
            run_dir=run_dir,
            progress=not args.no_progress,
        )
    except PapermillExecutionError as exc:
        print(f"sdsam-nb: a notebook failed: {_one_line(exc)}", file=sys.stderr)
        return 1
    print(json.dumps(run.record.get("files", {}), indent=1))
    return 0


def _replay(args) -> int:
    from papermill import PapermillExecutionError

    try:
        _new, differ = replay(
            args.run_dir, output_root=args.output_root, progress=not args.no_progress
        )
    except PapermillExecutionError as exc:
        print(f"sdsam-nb: the replay failed: {_one_line(exc)}", file=sys.stderr)
        return 1
    if differ:
        print("differs from the original: " + ", ".join(differ))
        return 1
    print("identical to the original: every picture, bit for bit")
    return 0


def _batch(args) -> int:
    from .batch import read_manifest, run_batch
    from .runs import default_output_root

    params = {}
    params.update(_parameters_file(args.parameters_file))
    params.update({name: _yaml_value(value) for name, value in args.parameter})
    try:
        manifest = read_manifest(args.manifest)
    except (OSError, ValueError) as exc:
        raise CommandError(f"batch: {exc}") from None
    if args.workers is not None and args.ray is None:
        raise CommandError(
            "batch: --workers needs --ray (here the items run one after the other, each "
            "model loaded once)"
        )
    out = args.out or default_output_root() / f"batch-{Path(args.manifest).resolve().stem}"
    try:
        result = run_batch(
            manifest,
            out_dir=out,
            params=params,
            progress=not args.no_progress,
            ray=args.ray,
            workers=args.workers,
        )
    except ValueError as exc:  # a bad default, another batch in OUT, no Ray: nothing was run
        raise CommandError(f"batch: {exc}") from None
    print(
        f"{len(result.done)} done ({len(result.skipped)} by an earlier pass), "
        f"{len(result.failed)} failed: {result.index}"
    )
    return result.exit_code


def _sweep(args) -> int:
    from .batch.sweep import run_sweep
    from .runs import default_output_root

    (notebook,) = _select(args.notebook, False) if "," not in args.notebook else [None]
    if notebook is None:
        raise CommandError("sweep: give one notebook")
    values, fixed = {}, dict(TINY) if args.tiny else {}
    loaded = _parameters_file(args.parameters_file)
    check_names(loaded, [notebook], what="-f")
    for name, value in loaded.items():  # a list is swept; box: [[x0, y0, x1, y1]] is one box
        (values if isinstance(value, list) else fixed)[name] = value
    for name, *given in args.parameter:
        if not given:
            raise CommandError(f"-p {name}: give the values to sweep after its name")
        values[name] = [_yaml_value(v) for v in given]
        fixed.pop(name, None)
    check_names(values, [notebook])
    if not values:
        raise CommandError("sweep: nothing to sweep: give -p NAME VALUE... or a list in -f")
    fixed = {k: v for k, v in fixed.items() if k in declared(notebook) and k not in values}
    out = args.out or default_output_root() / f"sweep-{notebook}"
    try:
        result = run_sweep(
            notebook,
            values,
            out_dir=out,
            fixed=fixed,
            workers=args.workers or 1 if args.ray is None else args.workers,
            ray=args.ray,
            progress=not args.no_progress,
        )
    except ValueError as exc:
        raise CommandError(f"sweep: {exc}") from None
    print(
        f"{len(result.done)} points done ({len(result.skipped)} by an earlier pass), "
        f"{len(result.failed)} failed: {result.index}"
    )
    return result.exit_code


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if args.command == "replay":
            return _replay(args)
        if args.command == "batch":
            return _batch(args)
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "notebooks":
            written = copy_notebooks(args.dir)
            print(f"{len(written)} notebooks copied into {Path(args.dir).resolve()}")
            print(f"open them with: jupyter lab {args.dir}")
            return 0
        return _run(args)
    except CommandError as exc:
        print(f"sdsam-nb: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
