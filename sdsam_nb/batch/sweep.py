"""Sweeps: one notebook over the cartesian grid of some of its parameters, one run folder per
point, through the runner batches use (:func:`sdsam_nb.batch.runner.run_jobs`): here one point
after the other, or on a Ray actor pool.

``sdsam-nb sweep NOTEBOOK -p seed 1 2 3 -p guidance 5 7.5 -o OUT`` (or :func:`run_sweep`)
executes the notebook once per point of the grid (here 3 x 2 = 6) into ``OUT/<point>/``, a run
folder like any other (``sdsam-nb replay`` replays it), and lists the points in
``OUT/index.csv``: the batch's columns (``id`` is the point's name), then one column per swept
parameter.

A point is its values and the fixed parameters; its folder is named after its position in
the grid (``p001``...). Running a sweep again into the same folder skips the points done with
the same values and redoes the others, moving their old folders aside (``<point>.incomplete-*``
or ``.previous-*``), never deleting them.

Each point runs the notebook's own cells in this process (or a Ray actor's), as a batch item
does (:func:`sdsam_nb.runs.chain.execute_here`): the models stay loaded from one point to the
next. The notebooks' pictures depend on their parameters and seeds alone, so a point gives the
same pictures here and on Ray, on the same kind of device.
"""

from __future__ import annotations

import itertools
import json
import os

from ..runs import Run, jsonable
from ..runs.chain import absolute_paths, declared, execute_here
from ..validate import short_repr
from .index import Result
from .jobs import Jobs
from .runner import run_jobs

MAX_POINTS = 10_000  # a sweep's grid at most: a larger one is refused before it is built


def grid(values: dict[str, list]) -> list[dict]:
    """The cartesian product of ``values`` (name -> its values), the last name varying
    fastest: ``{"a": [1, 2], "b": [3, 4]}`` -> ``[{a:1,b:3}, {a:1,b:4}, {a:2,b:3}, {a:2,b:4}]``.

    Raises:
        ValueError: a name with no values, or with the same value twice, or a grid of more
            than :data:`MAX_POINTS` points (refused before it is built).
    """
    points = 1
    for name, options in values.items():
        if not isinstance(options, list) or not options:
            raise ValueError(
                f"{name}: give a list of one or more values to sweep, not {short_repr(options)}"
            )
        texts = [json.dumps(jsonable(v), sort_keys=True) for v in options]
        if len(set(texts)) != len(texts):
            raise ValueError(f"{name}: a value appears twice in {short_repr(options)}")
        points *= len(options)
        if points > MAX_POINTS:
            raise ValueError(
                f"sweep: the grid has more than {MAX_POINTS:,} points (at {name}): sweep fewer "
                "values, or split it into several sweeps"
            )
    names = list(values)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values.values())]


class Points(Jobs):
    """A sweep's points as the runner's jobs (named ``p001``...).

    Args:
        notebook: the notebook's name.
        points: the grid's points (name -> value).
        fixed: the parameters every point gets (a point's own values win).
    """

    key, unit = "sweep", "point"

    def __init__(self, notebook: str, points: list[dict], fixed: dict):
        self.notebook, self.columns = notebook, tuple(points[0]) if points else ()
        width = max(3, len(str(len(points))))
        self.points = {f"p{i:0{width}d}": point for i, point in enumerate(points, 1)}
        # relative paths: to the current directory here, not to a worker's
        self.params = {name: absolute_paths({**fixed, **point})
                       for name, point in self.points.items()}  # fmt: skip
        specs = {
            name: json.loads(json.dumps(jsonable({"notebook": notebook, "params": params})))
            for name, params in self.params.items()
        }
        super().__init__(list(self.points), specs)

    def entry(self, name: str) -> dict:
        return {"point": name, "values": jsonable(self.points[name])}

    def execute(self, name: str, run: Run, prepared, before_done) -> None:
        params = {**self.params[name], "run_dir": str(run.path), "progress": False}
        execute_here(self.notebook, params, quiet=True)
        before_done()

    def values(self, name: str) -> dict:
        return {n: _cell(v) for n, v in self.points[name].items()}


def run_sweep(
    notebook: str,
    values: dict[str, list],
    *,
    out_dir: str | os.PathLike,
    fixed: dict | None = None,
    ray: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> Result:
    """Run ``notebook`` (its name, e.g. ``"01_generate_subject"``) once per point of the grid
    of ``values`` into ``out_dir/p001``, ``p002``...; write ``out_dir/index.csv``.

    Args:
        values: parameter name -> the values to sweep (:func:`grid`).
        fixed: parameters every point gets (a point's own values win).
        ray, workers, progress: as :func:`sdsam_nb.batch.runner.run_jobs` takes them:
            ``None`` runs the points here, one after the other; ``"local"``, ``"auto"`` or an
            address runs them on a Ray actor pool of ``workers`` actors.

    A point whose notebook fails is recorded with its one-line error; the sweep goes on.

    Raises:
        ValueError: a bad grid, a name the notebook does not declare or one a point cannot
            take (``run_dir``, ``progress``), Ray missing or a bad pool size, or another
            batch or sweep writing into ``out_dir``.
    """
    wanted = declared(notebook)
    for name in values:
        if name not in wanted:
            raise ValueError(f"{name}: {notebook} has no such parameter")
        if name in ("run_dir", "progress"):
            raise ValueError(f"{name}: each point makes its own run folder: it cannot be swept")
    points = grid(values)
    return run_jobs(Points(notebook, points, fixed or {}), out_dir, progress=progress, ray=ray,
                    workers=workers)  # fmt: skip


def _cell(value) -> str:
    """A swept value in the index: text as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(jsonable(value))
