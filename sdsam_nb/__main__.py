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

Parameter values are YAML 1.2 (``-p points "[[250, 180, 1]]"``; ``010`` is 10, ``1:00`` is
text). Each notebook receives the parameters its ``parameters`` cell declares; a ``-p`` that
none of the notebooks run declares is an error. Relative paths (``--output-root``,
``image_path``, ``run_dir``...) are relative to the current directory, which is also where the
kernels run.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import shutil
import sys
from pathlib import Path

from .kernel import SharedKernel

# At exit, no last garbage collection of what papermill and jsonschema built: the interpreter's
# teardown collected it for 0.1-0.4 s after every command, and the process is ending anyway.
atexit.register(gc.freeze)

# Small settings that make the tiny models quick; real models keep the notebooks' defaults.
TINY = {
    "sd_model": "tiny",
    "sam_model": "tiny",
    "detector_model": "tiny",
    "steps": 8,
    "size": 256,
    "n_variations": 2,
}


class CommandError(Exception):
    """A one-line answer to a command that cannot be done as asked."""


def _yaml_value(text: str, name: str):
    """A ``-p`` value: its YAML 1.2 reading (``010`` is 10, ``1:00`` stays text)."""
    from .runs import load_yaml

    try:
        return load_yaml(text, name=f"-p {name} value {text!r}")
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def copy_notebooks(target: str | os.PathLike) -> list[Path]:
    """Copy the kit's notebooks into ``target`` (created if needed); never overwrites.

    Returns the files written; a notebook already in ``target`` is left as it is.
    """
    from .runs.chain import notebooks_dir

    target = Path(target).expanduser()
    if target.exists() and not target.is_dir():
        raise CommandError(f"notebooks: {target} is a file, not a folder")
    written = []
    try:
        target.mkdir(parents=True, exist_ok=True)
        for source in sorted(notebooks_dir().glob("*.ipynb")):
            dest = target / source.name
            if dest.exists():
                print(f"kept {dest} (already there)")
                continue
            shutil.copyfile(source, dest)
            written.append(dest)
    except OSError as exc:  # a read-only or missing parent, a full disk
        why = exc.strerror or exc
        raise CommandError(f"notebooks: cannot write into {target}: {why}") from None
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
    _ray_options(bat_p, "items")
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
    _ray_options(sw_p, "points")
    return parser


def _ray_options(sub: argparse.ArgumentParser, what: str) -> None:
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
        help="with --ray: the actor pool's size (default: one per GPU, else 2 CPU workers)",
    )


MAX_FILE_BYTES = 16 << 20  # a -f parameters file at most (16 MiB)


def _parameters_file(path: str | None) -> dict:
    """The mapping a ``-f`` YAML file holds (empty without one), read as YAML 1.2."""
    from .runs import load_yaml
    from .validate import one_line

    if not path:
        return {}
    try:
        if Path(path).stat().st_size > MAX_FILE_BYTES:
            raise CommandError(
                f"-f {path} is over {MAX_FILE_BYTES >> 20} MiB: is it a parameters file?"
            )
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"-f {path}: {one_line(exc)}") from None
    try:
        loaded = load_yaml(text, name=f"-f {path}")
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict) or not all(isinstance(k, str) for k in loaded):
        raise CommandError(f"-f {path} must hold a mapping of parameter names to values")
    return loaded


def _check_values(params: dict) -> None:
    """Check the values of the notebook parameters here, before any notebook runs (the
    notebooks check them again); ``run_dir`` must be a run folder."""
    from .runs import SPEC, check_params, open_run

    check_params(**{k: v for k, v in params.items() if k in SPEC})
    for name in ("image_path", "mask_path"):  # before a kernel starts, not in notebook 01 or 02
        path = params.get(name)
        if path and not Path(path).expanduser().is_file():
            raise CommandError(f"-p {name}: no file at {str(path)!r}")
    if params.get("run_dir"):
        try:
            open_run(Path(params["run_dir"]).expanduser())
        except OSError as exc:  # no run.json there, or no such path at all
            raise CommandError(f"-p run_dir: {exc}") from None


def _booted() -> SharedKernel:
    """The kernel of a run or replay, booted first: it warms up (imports the kit) on one core
    while this process imports papermill and checks its input on the other."""
    kernel = SharedKernel()
    try:
        return kernel.start()
    except Exception:  # noqa: BLE001 - it is started again in the chain, which says why not
        return SharedKernel()


def _run(args) -> int:
    kernel = _booted()
    try:
        return _chain(args, kernel)
    finally:
        kernel.stop()  # when the parameters are refused; the chain stops it otherwise


def _chain(args, kernel: SharedKernel) -> int:
    from papermill import PapermillExecutionError

    from .runs.chain import EVERY, KernelDied, check_names, execute_chain, select
    from .validate import one_line

    names = select(args.notebooks, args.walkthrough)
    params = dict(TINY) if args.tiny else {}
    loaded = _parameters_file(args.parameters_file)
    check_names(loaded, EVERY, what="-f")  # a general file may name other notebooks'
    params.update(loaded)
    given = {name: _yaml_value(value, name) for name, value in args.parameter}
    check_names(given, names)
    params.update(given)
    _check_values(params)
    run_dir = params.pop("run_dir", None)
    try:
        run = execute_chain(
            names,
            params,
            output_root=args.output_root,
            run_dir=run_dir,
            progress=not args.no_progress,
            kernel=kernel,
        )
    except (PapermillExecutionError, KernelDied) as exc:
        print(f"sdsam-nb: a notebook failed: {one_line(exc)}", file=sys.stderr)
        return 1
    print(json.dumps(run.record.get("files", {}), indent=1))
    return 0


def _replay(args) -> int:
    kernel = _booted()  # before the imports below, which it overlaps
    from papermill import PapermillExecutionError

    from .runs.chain import KernelDied, replay
    from .validate import one_line

    try:
        _new, comparison = replay(
            args.run_dir,
            output_root=args.output_root,
            progress=not args.no_progress,
            kernel=kernel,
        )
    except (PapermillExecutionError, KernelDied) as exc:
        print(f"sdsam-nb: the replay failed: {one_line(exc)}", file=sys.stderr)
        return 1
    finally:
        kernel.stop()  # when the run folder is refused; the chain stops it otherwise
    print(comparison.summary())
    return 0 if comparison.identical else 1


def _batch(args) -> int:
    from .batch import read_manifest, run_batch
    from .runs import default_output_root

    params = {}
    params.update(_parameters_file(args.parameters_file))
    params.update({name: _yaml_value(value, name) for name, value in args.parameter})
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
    from .runs.chain import check_names, declared, select

    chosen = select(args.notebook) if args.notebook.strip() else []
    if len(chosen) != 1 or "," in args.notebook:
        raise CommandError(
            f"sweep: give one notebook by name or number (01 ... 04, 00), not {args.notebook!r}"
        )
    (notebook,) = chosen
    values, fixed = {}, dict(TINY) if args.tiny else {}
    loaded = _parameters_file(args.parameters_file)
    check_names(loaded, [notebook], what="-f")
    for name, value in loaded.items():  # a list is swept; box: [[x0, y0, x1, y1]] is one box
        (values if isinstance(value, list) else fixed)[name] = value
    for name, *given in args.parameter:
        if not given:
            raise CommandError(f"-p {name}: give the values to sweep after its name")
        values[name] = [_yaml_value(v, name) for v in given]
        fixed.pop(name, None)
    check_names(values, [notebook])
    _check_values(fixed)
    for name, options in values.items():
        for value in options if isinstance(options, list) else [options]:
            _check_values({name: value})
    if not values:
        raise CommandError("sweep: nothing to sweep: give -p NAME VALUE... or a list in -f")
    fixed = {k: v for k, v in fixed.items() if k in declared(notebook) and k not in values}
    if args.workers is not None and args.ray is None:
        raise CommandError(
            "sweep: --workers needs --ray (here the points run one after the other, each "
            "model loaded once)"
        )
    out = args.out or default_output_root() / f"sweep-{notebook}"
    try:
        result = run_sweep(
            notebook,
            values,
            out_dir=out,
            fixed=fixed,
            ray=args.ray,
            workers=args.workers,
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
    except (CommandError, ValueError) as exc:  # bad input: said in one line, nothing run
        print(f"sdsam-nb: {(str(exc).strip().splitlines() or [repr(exc)])[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
