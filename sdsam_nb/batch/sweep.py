"""Sweeps: one notebook over the cartesian grid of some of its parameters, one run folder per
point (``OUT/p001``...), through the batches' runner (docs/batches.md, "Sweeps").

A point runs the notebook's own cells in this process or a Ray actor's
(:func:`sdsam_nb.runs.chain.execute_here`), the models loaded once; ``OUT/index.csv`` has the
batch's columns, then one per swept parameter.
"""

from __future__ import annotations

import itertools
import json
import os

from ..runs import Run, jsonable
from ..runs.chain import absolute_paths, declared, execute_here
from ..validate import short_repr
from .runner import Jobs, Result, run_jobs

MAX_POINTS = 10_000  # a sweep's grid at most: a larger one is refused before it is built


def grid(values: dict[str, list]) -> list[dict]:
    """The cartesian product of ``values`` (name -> its values), the last name varying
    fastest: ``{"a": [1, 2], "b": [3, 4]}`` -> ``[{a:1,b:3}, {a:1,b:4}, {a:2,b:3}, {a:2,b:4}]``.

    Raises:
        ValueError: a name with no values, or with the same value twice, or a grid of more
            than :data:`MAX_POINTS` points.
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
    return [dict(zip(values, combo, strict=True)) for combo in itertools.product(*values.values())]


class Points(Jobs):
    """A sweep's points as the runner's jobs (named ``p001``...): ``notebook`` with ``fixed``
    and each point's values (which win)."""

    key, unit = "sweep", "point"

    def __init__(self, notebook: str, points: list[dict], fixed: dict):
        self.notebook, self.columns = notebook, tuple(points[0])
        width = max(3, len(str(len(points))))
        self.points = {f"p{i:0{width}d}": point for i, point in enumerate(points, 1)}
        # relative paths: to the current directory here, not to a worker's
        self.params = {name: absolute_paths({**fixed, **p}) for name, p in self.points.items()}
        specs = {
            name: json.loads(json.dumps(jsonable({"notebook": notebook, "params": params})))
            for name, params in self.params.items()
        }
        super().__init__(list(self.points), specs)

    def entry(self, name: str) -> dict:
        return {"point": name, "values": jsonable(self.points[name])}

    def execute(self, name: str, run: Run, prepared) -> None:
        params = {**self.params[name], "run_dir": str(run.path), "progress": False}
        execute_here(self.notebook, params, quiet=True)

    def values(self, name: str) -> dict:
        """A swept value in the index: text as it is, anything else as JSON."""
        return {
            n: v if isinstance(v, str) else json.dumps(jsonable(v))
            for n, v in self.points[name].items()
        }


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
    of ``values`` (:func:`grid`) into ``out_dir/p001``, ``p002``...; write
    ``out_dir/index.csv``. A point that fails is recorded with its one-line error.

    Args:
        fixed: parameters every point gets (a point's own values win).
        ray, workers, progress: as :func:`sdsam_nb.batch.runner.run_jobs` takes them.

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
    jobs = Points(notebook, grid(values), fixed or {})
    return run_jobs(jobs, out_dir, progress=progress, ray=ray, workers=workers)
