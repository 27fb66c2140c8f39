"""Execute notebooks into a run folder with papermill, and replay a run folder.

This is what ``sdsam-nb run``, ``replay`` and ``sweep`` do; the command line
(:mod:`sdsam_nb.__main__`) only reads its arguments and prints. Bad input raises a one-line
``ValueError`` before anything runs; a notebook that fails is marked ``"failed"`` in
``run.json`` with its error line, and raises :class:`NotebookFailed` (a cell raised:
papermill's ``PapermillExecutionError``, which is one) or :class:`KernelDied`.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..kernel import SharedKernel
from ..models import sha256_file
from ..recording import deactivate
from ..validate import one_line
from .inputs import default_output_root, kit_dir
from .params import BEFORE_IT_EXISTED
from .record import Run, jsonable, new_run, open_run

CHAIN = (
    "01_generate_subject",
    "02_click_to_mask",
    "03_inpaint_background",
    "04_composite_background",
)
WALKTHROUGH = ("00_walkthrough",)
EVERY = (*WALKTHROUGH, *CHAIN)
PATH_PARAMS = ("image_path", "mask_path", "run_dir", "output_root")
NOT_REPLAYED = ("run_dir", "output_root", "use_drive", "progress")


class KernelDied(RuntimeError):
    """A notebook's kernel died (killed, out of memory) or could not run it. ``line`` is the
    one-line message, also recorded as the execution's error in ``run.json``."""

    def __init__(self, line: str, executed: Path | None = None):
        super().__init__(line)
        self.line = line
        self.executed = executed


def notebooks_dir() -> Path:
    """The kit's notebooks, wherever it is installed (see :func:`sdsam_nb.runs.kit_dir`)."""
    return kit_dir("notebooks")


def declared(name: str, notebooks: Path | None = None) -> dict:
    """The parameters notebook ``name`` declares (papermill's reading of its parameters cell).

    Raises:
        ValueError: no such notebook.
    """
    import papermill as pm

    source = (notebooks or notebooks_dir()) / f"{name}.ipynb"
    if not source.is_file():
        raise ValueError(f"no notebook {source}")
    return pm.inspect_notebook(str(source))


def check_names(given, names, notebooks: Path | None = None, *, what: str = "-p") -> None:
    """Fail on a parameter that none of ``names`` declares, naming the close matches.

    Raises:
        ValueError: ``-p stepz: no parameter 'stepz' in 01_generate_subject (did you mean...)``.
    """
    known = set()
    for name in names:
        known |= set(declared(name, notebooks))
    for param in given:
        if param not in known:
            close = difflib.get_close_matches(param, sorted(known), n=3)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            where = "any notebook" if set(names) == set(EVERY) else ", ".join(names)
            raise ValueError(f"{what} {param}: no parameter {param!r} in {where}{hint}")


def select(spec: str | None, walkthrough: bool = False) -> list[str]:
    """The notebooks ``--notebooks`` names (``"01,02"``, ``"03_inpaint_background"``), in the
    order given; the chain 01 -> 04 (or the walkthrough) when ``spec`` is empty or ``None``.

    Raises:
        ValueError: a name that is no notebook, or a ``spec`` that names none (``","``).
    """
    if spec is None or spec == "":
        return list(WALKTHROUGH if walkthrough else CHAIN)
    names = []
    for w in (n.strip() for n in spec.split(",")):
        if not w:
            continue
        match = [n for n in EVERY if n == w or n.startswith(w + "_")]
        if not match:
            raise ValueError(f"--notebooks: no notebook {w!r} (the notebooks: {', '.join(EVERY)})")
        names += match
    if not names:
        raise ValueError(f"--notebooks {spec!r} names no notebook: give e.g. 01,02 or 03")
    return names


def absolute_paths(params: dict) -> dict:
    """``params`` with the path parameters (:data:`PATH_PARAMS`) made absolute (relative to
    the current directory), so that a kernel elsewhere reads the same files."""
    out = dict(params)
    for name in PATH_PARAMS:
        if out.get(name) and isinstance(out[name], str):
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
    kernel: str | SharedKernel = "python3",
    per_notebook: dict[str, dict] | None = None,
    echo: bool = True,
    here: bool = False,
) -> Run:
    """Execute ``names`` (notebook stems) in order into one run folder; return the Run.

    The run folder is ``run_dir`` (continued: its record and files are kept) or a new one
    under ``output_root`` (default :func:`sdsam_nb.runs.default_output_root`). Each notebook
    gets the entries of ``params`` its parameters cell declares, updated by
    ``per_notebook[name]``, and runs in the current directory. Each executed notebook is
    saved in the run folder under a free name, also when it fails (papermill keeps the error
    in it). ``kernel``: a kernel name, or a :class:`sdsam_nb.kernel.SharedKernel` already
    started (shut down once the chain has run; its caller stops it if the chain refuses its
    input). ``echo``: print a line per notebook. ``here``: each notebook's cells run in this
    process instead (:func:`execute_here`: no kernel, the models loaded once; no executed
    notebook is saved).

    Raises:
        ValueError: ``names`` empty or unknown, ``run_dir`` no run folder or a damaged one,
            ``output_root`` not a folder that can be written (nothing is created).
        papermill.PapermillExecutionError: a cell raised; the chain stops there and the
            execution is marked failed with the cell's error line.
        KernelDied: the kernel died or could not start (killed, out of memory): the
            execution is marked failed with the reason.
    """

    names = list(names)
    if not names:
        raise ValueError("names: give at least one notebook to run")
    for name in names:
        declared(name, notebooks)
    notebooks = notebooks or notebooks_dir()
    if run_dir:
        try:
            run = open_run(Path(run_dir).expanduser().resolve())
        except FileNotFoundError as exc:
            raise ValueError(f"run_dir: {exc}") from None
    else:
        run = new_run(Path(output_root or default_output_root()).expanduser())
    params = absolute_paths(params)
    total = time.perf_counter()
    say = print if echo else _silent
    if here:
        shared = None
    else:
        shared = kernel if isinstance(kernel, SharedKernel) else SharedKernel(kernel)
    try:
        _chain(names, params, run, notebooks, progress, per_notebook, say, shared)
    finally:
        if shared is not None:
            shared.stop()
    say(f"run folder: {run.path}  ({time.perf_counter() - total:.1f} s)")
    return run


@functools.cache
def _engine() -> str:
    """The name of papermill's engine for the chain, registered on first use: papermill's own
    (nbclient), which writes the executed notebook when it starts and when it ends (also when a
    cell fails or the kernel dies), not before and after every cell (a write is a few ms, more
    once the notebook holds pictures: about half a second of a chain's 30 cells)."""
    from papermill.engines import NBClientEngine, papermill_engines

    class Engine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
            path, nb_man.output_path = nb_man.output_path, None  # no write per cell
            try:
                return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)
            finally:
                nb_man.output_path = path  # papermill then writes the notebook as it ended

    papermill_engines.register("sdsam-nb", Engine)
    return "sdsam-nb"


def _chain(names, params, run, notebooks, progress, per_notebook, say, shared) -> None:
    import papermill as pm

    for i, name in enumerate(names, 1):
        source = notebooks / f"{name}.ipynb"
        given = {**params, **absolute_paths((per_notebook or {}).get(name, {}))}
        given.update(run_dir=str(run.path), progress=False)
        wanted = declared(name, notebooks)
        given = {k: v for k, v in given.items() if k in wanted}
        say(f"[{i}/{len(names)}] {name}", flush=True)
        start = time.perf_counter()
        if shared is None:
            execute_here(name, given, notebooks=notebooks, quiet=True)
            say(f"      done in {time.perf_counter() - start:.1f} s", flush=True)
            continue
        executed = run.reserve(f"{name}.ipynb")
        before = len(run.record.get("executions", []))
        try:
            pm.execute_notebook(
                str(source),
                str(executed),
                parameters=given,
                engine_name=_engine(),
                kernel_name=shared.name,
                km=shared.ready(),
                cwd=os.getcwd(),
                progress_bar=progress,
                log_output=False,
            )
        except pm.PapermillExecutionError as exc:
            _note_failed(run, name, before, executed, given, one_line(exc))
            say(f"      failed: the error is shown in {executed}", flush=True)
            raise
        except Exception as exc:  # nbclient's DeadKernelError, a kernel that never started...
            line = f"{name}: the kernel stopped ({one_line(exc)}): killed, or out of memory?"
            _note_failed(run, name, before, executed, given, line)
            say(f"      failed: {line}", flush=True)
            raise KernelDied(line, executed) from exc
        _note_executed(run, name, before, executed)
        say(f"      done in {time.perf_counter() - start:.1f} s", flush=True)


def execute_here(
    name: str, params: dict, *, notebooks: Path | None = None, quiet: bool = False
) -> dict:
    """Run notebook ``name``'s code in this process, as papermill runs it in a kernel: its
    code cells in order, ``params`` set right after the cell tagged ``parameters`` (only the
    names that cell declares). The cell tagged ``colab`` (the Colab-only install) is left out;
    ``quiet``: what its cells print and display is dropped. Models stay loaded between calls (the
    process's model cache): what a batch wants from the notebooks it runs item after item.
    Returns the notebook's variables.

    Raises:
        Exception: a cell's own error, after the run the notebook started (its ``run``) has
            marked its execution failed with the error line.
    """
    import nbformat
    from IPython.utils.capture import capture_output

    notebooks = notebooks or notebooks_dir()
    wanted = declared(name, notebooks)
    given = {k: v for k, v in absolute_paths(params).items() if k in wanted}
    nb = nbformat.read(notebooks / f"{name}.ipynb", as_version=4)
    variables: dict = {"__name__": "__main__"}
    # quiet: what the cells print, and what they display when this runs in a notebook's kernel
    # (a batch started from a notebook shows no item's pictures)
    printed = capture_output(stderr=False) if quiet else contextlib.nullcontext()
    try:
        with printed:
            for number, cell in enumerate(nb.cells):
                tags = cell.metadata.get("tags", [])
                if cell.cell_type != "code" or "colab" in tags:
                    continue
                exec(compile(cell.source, f"<{name} cell {number}>", "exec"), variables)
                if "parameters" in tags:
                    variables.update(given)
    except BaseException as exc:
        run = variables.get("run")
        if isinstance(run, Run):
            run.fail(one_line(exc))  # as the kernel's failure watch does in a notebook
        deactivate()
        raise
    return variables


def _silent(*args, **kwargs) -> None:
    pass


def _note_executed(run: Run, name: str, before: int, executed: Path) -> None:
    """Name the executed notebook file in the execution(s) that notebook recorded."""

    def change(record):
        for entry in record.setdefault("executions", [])[before:]:
            if entry.get("notebook") == name:
                entry["executed_notebook"] = executed.name

    run.update(change)


def _note_failed(run: Run, name: str, before: int, executed: Path, params: dict, error: str):
    """Mark what notebook ``name`` recorded since execution ``before`` as failed with
    ``error`` (unless a cell already did), or add a failed entry where it recorded none (a bad
    parameter, a kernel that died before the setup cell)."""

    def change(record):
        executions = record.setdefault("executions", [])
        mine = [e for e in executions[before:] if e.get("notebook") == name]
        if not mine:
            mine = [{"id": len(executions), "notebook": name, "params": jsonable(params)}]
            executions.append(mine[0])
        for entry in mine:
            entry["executed_notebook"] = executed.name
            if entry.get("status") != "failed":
                entry["status"] = "failed"
                entry.setdefault("errors", []).append(error)

    run.update(change)


def replay(
    run_dir: str | os.PathLike,
    *,
    output_root=None,
    progress: bool = True,
    here: bool = False,
    kernel: str | SharedKernel = "python3",
):
    """Re-run a run folder's notebooks with their newest recorded parameters and clicks,
    with the disk caches off (every picture and embedding computed again). ``here``: in this
    process (:func:`execute_chain`'s ``here``), not in a kernel; ``kernel``: as
    :func:`execute_chain` takes it.

    Before anything runs, the original is checked: its ``run.json`` readable, and every file
    it lists present, readable and (where the record holds its sha256) unchanged.

    Returns ``(new_run, comparison)``: a :class:`Comparison` of every file the two runs list.

    Raises:
        ValueError: not a run folder, a damaged ``run.json``, no notebook to replay, or a
            file of the original missing or changed (the message names it).
    """
    try:
        original = open_run(Path(run_dir).expanduser().resolve())
    except FileNotFoundError as exc:
        raise ValueError(f"replay: {exc}") from None
    record = original.record
    names = [n for n in EVERY if n in record.get("notebooks", {})]
    if not names:
        raise ValueError(f"replay: {run_dir} records no notebook to replay")
    check_files(original)
    per_notebook = {}
    for name in names:
        params = record["notebooks"][name]["params"]
        per_notebook[name] = {k: v for k, v in params.items() if k not in NOT_REPLAYED}
        # a parameter added since the run was recorded takes the value that did what the
        # notebook did then (a newer default may differ, e.g. edge="matte")
        wanted = declared(name)
        for key, value in BEFORE_IT_EXISTED.items():
            if key not in params and key in wanted:
                per_notebook[name][key] = value
        # dtype None (the automatic choice): the dtype it gave, SD's recorded one (else the
        # execution's device report's), so that another machine computes as the run did
        execution = _execution(record, name)
        used = (execution.get("models") or {}).get("sd", {}).get("dtype")
        used = used or (execution.get("device") or {}).get("dtype")
        if "dtype" in wanted and params.get("dtype") is None and used:
            per_notebook[name]["dtype"] = used
        if record.get("clicks") and "clicks" in params:
            per_notebook[name]["clicks"] = record["clicks"]  # interactive clicks, exactly
        if original.file("input") is not None and params.get("image_path"):
            per_notebook[name]["image_path"] = str(original.file("input"))  # the kept copy
        if params.get("mask_path") and original.file("mask") is not None:
            per_notebook[name]["mask_path"] = str(original.file("mask"))  # likewise
        if "cache" in wanted:  # recomputed, not taken from the caches: a replay
            per_notebook[name]["cache"] = False  # proves the run reproduces from scratch
    new = execute_chain(
        names,
        {},
        output_root=output_root or original.path.parent,
        progress=progress,
        per_notebook=per_notebook,
        here=here,
        kernel=kernel,
    )
    return new, compare_runs(original, new)


def check_files(run: Run) -> None:
    """Check that every file ``run.json`` lists is there and, where the record holds its
    sha256 (runs recorded since the kit stored them), unchanged.

    Raises:
        ValueError: one line naming the first file missing or changed.
    """
    record = run.record
    hashes = record.get("sha256", {})
    for key, name in sorted(record.get("files", {}).items()):
        path = run.path / name
        if not path.is_file():
            raise ValueError(
                f"{run.path}: {name} ({key!r}) is missing: the run cannot be compared; "
                "restore the file, or run the notebooks again"
            )
        if name in hashes and sha256_file(path) != hashes[name]:
            raise ValueError(
                f"{run.path}: {name} ({key!r}) has changed since the run wrote it (its sha256 "
                "differs from run.json's): restore the original file to compare against it"
            )


@dataclass
class Comparison:
    """What a replay compared, by file key: ``pictures`` (PNG, compared pixel for pixel),
    ``others`` (other files, byte for byte), ``differ`` (keys whose content differs),
    ``missing`` (keys of the original the replay did not make), ``extra`` (keys only the
    replay made)."""

    pictures: list[str]
    others: list[str]
    differ: list[str]
    missing: list[str]
    extra: list[str]
    calls: list[str] = field(default_factory=list)
    """The recorded calls (:mod:`sdsam_nb.recording`) that differ, one line each, e.g. a
    cell rerun by hand with another ``seed``; empty when they agree."""
    calls_compared: int = 0
    """How many recorded calls were compared (0: the original recorded none)."""

    @property
    def identical(self) -> bool:
        """Every file of either run has its equal in the other, and every recorded call."""
        return not (self.differ or self.missing or self.extra or self.calls)

    def summary(self) -> str:
        """One line: what was compared and what differs."""
        compared = f"{len(self.pictures)} pictures pixel for pixel"
        if self.others:
            compared += f", {len(self.others)} other files byte for byte"
        if self.calls_compared:
            compared += f", {self.calls_compared} recorded calls"
        if self.identical:
            return f"identical to the original: {compared}"
        parts = []
        if self.differ:
            parts.append("differs: " + ", ".join(self.differ))
        if self.missing:
            parts.append("not made by the replay: " + ", ".join(self.missing))
        if self.extra:
            parts.append("only in the replay: " + ", ".join(self.extra))
        if self.calls:
            parts.append("calls differ: " + "; ".join(self.calls))
        return f"differs from the original ({compared}): " + "; ".join(parts)


def compare_runs(a: Run, b: Run) -> Comparison:
    """Compare every file the two runs list under the same key: PNG pictures pixel for pixel
    (size and values), any other file byte for byte; keys listed by one run only count as
    differences."""
    from PIL import Image

    files_a, files_b = a.record.get("files", {}), b.record.get("files", {})
    pictures, others, differ = [], [], []
    for key in sorted(set(files_a) & set(files_b)):
        x, y = a.path / files_a[key], b.path / files_b[key]
        if files_a[key].endswith(".png") and files_b[key].endswith(".png"):
            pictures.append(key)
            with Image.open(x) as p, Image.open(y) as q:
                same = p.size == q.size and np.array_equal(np.asarray(p), np.asarray(q))
        else:
            others.append(key)
            same = x.read_bytes() == y.read_bytes()
        if not same:
            differ.append(key)
    missing = sorted(set(files_a) - set(files_b))
    extra = sorted(set(files_b) - set(files_a))
    calls, compared = compare_calls(a.record, b.record)
    return Comparison(pictures, others, differ, missing, extra, calls, compared)


# arguments a replay changes on purpose: it computes everything again, quietly, in the dtype
# the run's automatic choice gave
REPLAY_CHANGES = ("cache", "progress", "dtype")
# calls a replay makes in another way: the click history recorded, replayed exactly
REPLAYED_AS = {
    ("ClickSegmenter.from_prompts", "ClickSegmenter.from_dict"),
    ("ClickSegmenter.from_dict", "ClickSegmenter.from_dict"),
}


def _execution(record: dict, notebook: str) -> dict:
    """The newest execution of ``notebook`` in run record ``record`` (``{}`` without one)."""
    number = record.get("notebooks", {}).get(notebook, {}).get("execution")
    executions = record.get("executions", [])
    if not isinstance(number, int) or not 0 <= number < len(executions):
        return {}
    return executions[number]


def _calls(record: dict, notebook: str) -> list[dict] | None:
    """The calls the newest execution of ``notebook`` recorded, or ``None`` without any."""
    return _execution(record, notebook).get("calls")


def compare_calls(a: dict, b: dict) -> tuple[list[str], int]:
    """The recorded calls of run record ``a`` against ``b``'s, notebook by notebook (the
    newest execution of each): ``(differences, how many calls were compared)``. A call
    differs in its name, an argument (``cache`` and ``progress`` aside: a replay sets them)
    or what it returned; a call made in one run only (a cell run twice) differs too. Nothing
    is compared for a notebook whose original recorded no calls."""
    out, compared = [], 0
    for notebook in a.get("notebooks", {}):
        mine, theirs = _calls(a, notebook), _calls(b, notebook)
        if not mine:
            continue
        theirs = theirs or []
        compared += len(mine)
        for i, (x, y) in enumerate(zip(mine, theirs, strict=False)):
            where = f"{notebook} call {i + 1} {x.get('call')}"
            if (x.get("call"), y.get("call")) in REPLAYED_AS:
                continue  # the clicks replayed exactly: the mask files are compared instead
            if x.get("call") != y.get("call"):
                out.append(f"{where}: the replay called {y.get('call')}")
                continue
            args_x, args_y = x.get("args", {}), y.get("args", {})
            changed = [
                f"{k}={_short(args_x.get(k))} (replay: {_short(args_y.get(k))})"
                for k in sorted(set(args_x) | set(args_y))
                if k not in REPLAY_CHANGES and args_x.get(k) != args_y.get(k)
            ]
            if changed:
                out.append(f"{where}: " + ", ".join(changed))
            elif x.get("returned") != y.get("returned"):
                out.append(f"{where}: same arguments, another result")
        for i, x in enumerate(mine[len(theirs) :], len(theirs)):
            out.append(f"{notebook} call {i + 1} {x.get('call')}: not made by the replay")
        for i, y in enumerate(theirs[len(mine) :], len(mine)):
            out.append(f"{notebook} call {i + 1} {y.get('call')}: only in the replay")
    return out, compared


def _short(value) -> str:
    from ..validate import short_repr

    return short_repr(value)
