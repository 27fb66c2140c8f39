"""The one setup call of every notebook: check the parameters, open the run, watch for errors."""

from __future__ import annotations

from pathlib import Path

from ..recording import activate, active_run
from ..validate import one_line
from .inputs import default_output_root, drive_root
from .params import SPEC, check_params
from .record import Run, new_run, open_run


def start(notebook: str, namespace: dict, *, echo: bool = True) -> Run:
    """Set up a notebook from its parameters cell; returns the run, now the active run.

    Call it as ``run = sdsam_nb.start("02_click_to_mask", globals())`` right after the cell
    tagged ``parameters``. It

    1. checks the parameters in ``namespace`` (the names of :data:`sdsam_nb.runs.SPEC` the
       notebook defines) and writes back list / dict parameters parsed from YAML text;
    2. opens ``run_dir``, or starts a new run folder under ``output_root`` (empty:
       :func:`sdsam_nb.runs.default_output_root`), or on Google Drive with ``use_drive``;
       run again in the same kernel before ``run.finish()``, it goes on in the same folder;
    3. records the parameters and the device as a new execution of ``notebook``;
    4. makes the run the active run (:mod:`sdsam_nb.recording`) until ``run.finish()``;
    5. in IPython, marks the execution ``"failed"`` when a later cell fails;
    6. prints the run folder and the device (``echo``).

    Raises:
        ValueError: a parameter that is not what it must be (the message names it).
    """
    from ..models import device_report

    if not isinstance(notebook, str) or not notebook:
        raise ValueError(f"notebook must be the notebook's name, got {notebook!r}")
    if not isinstance(namespace, dict):
        raise ValueError("namespace must be the notebook's globals(): start(name, globals())")
    params = check_params(**{name: namespace[name] for name in namespace if name in SPEC})
    namespace.update(params)
    root = params.get("output_root") or default_output_root()
    if params.get("use_drive"):
        root = drive_root()
    active = active_run()
    again = (
        active is not None
        and not params.get("run_dir")
        and active.notebook == notebook
        and active.path.parent == Path(root).expanduser().resolve()
    )
    if again:
        run = active
    elif params.get("run_dir"):
        run = open_run(params["run_dir"])
    else:
        run = new_run(root)
    run.log_params(notebook, params)
    activate(run)
    _watch_failures(run)
    if echo:
        if again:
            print(
                f"the setup cell ran again: run folder {run.path} goes on (a new execution in "
                "its run.json); run.finish() first starts a new folder"
            )
        else:
            print("run folder:", run.path)
        print(device_report())
    return run


class _FailureWatch:
    """IPython ``post_run_cell`` callback: a cell that raised marks the run's execution failed."""

    def __init__(self, run: Run):
        self.run = run

    def __call__(self, result) -> None:
        error = result.error_before_exec or result.error_in_exec
        if error is None:
            return
        line = one_line(error)
        self.run.fail(line)
        print(f"run {self.run.path} is marked failed in run.json: {line}")


def _watch_failures(run: Run) -> None:
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python: nothing to watch
        return
    shell = get_ipython()
    if shell is None:
        return
    for callback in list(shell.events.callbacks["post_run_cell"]):
        if isinstance(callback, _FailureWatch):  # the setup cell run again: watch the new run
            shell.events.unregister("post_run_cell", callback)
    shell.events.register("post_run_cell", _FailureWatch(run))
