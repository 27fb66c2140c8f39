"""Sweeps: one notebook over the cartesian grid of some of its parameters, one run folder per
point, run with papermill locally (a pool of kernels) or as Ray tasks.

``sdsam-nb sweep NOTEBOOK -p seed 1 2 3 -p guidance 5 7.5 -o OUT`` (or :func:`run_sweep`)
executes the notebook once per point of the grid (here 3 x 2 = 6) into ``OUT/<point>/``, a run
folder like any other (``sdsam-nb replay`` replays it), and lists the points in
``OUT/index.csv``: the point's name, its status, error, run folder, files and seconds, then one
column per swept parameter.

A point is its values and the fixed parameters; its folder is named after its position in
the grid (``p001``...). Running a sweep again into the same folder skips the points done with
the same values and redoes the others, moving their old folders aside (``<point>.incomplete-*``
or ``.previous-*``), never deleting them.

Each point is one kernel, a whole notebook run: on Ray each is a task asking for one CPU (or
one GPU on a cluster with GPUs; ``num_gpus=1``), retried on another worker if its worker dies.
The notebooks' pictures depend on their parameters and seeds alone, so a point gives the same
pictures locally and on Ray, on the same kind of device.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from ..runs import ensure_folder, jsonable, new_run, open_run
from ..runs.chain import absolute_paths, execute_chain, one_line
from ..validate import short_repr
from . import folders
from .index import Result, write_csv
from .ray_pool import connect, import_ray

LOCK = ".sweep.lock"
INDEX = "index.csv"
COLUMNS = ("point", "status", "error", "run_dir", "files", "seconds", "skipped")


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


def run_sweep(
    notebook: str,
    values: dict[str, list],
    *,
    out_dir: str | os.PathLike,
    fixed: dict | None = None,
    workers: int = 1,
    ray: str | None = None,
    progress: bool = True,
    kernel: str = "python3",
) -> Result:
    """Run ``notebook`` (its name, e.g. ``"01_generate_subject"``) once per point of the grid
    of ``values`` into ``out_dir/p001``, ``p002``...; write ``out_dir/index.csv``.

    Args:
        values: parameter name -> the values to sweep (:func:`grid`).
        fixed: parameters every point gets (a point's own values win).
        workers: locally, how many kernels run at once; with ``ray``, how many tasks (default
            there: as many as the cluster runs).
        ray: ``None`` here; ``"local"``, ``"auto"`` or an address: Ray tasks
            (:func:`sdsam_nb.batch.ray_pool.ray_rows` explains the three).
        progress: a tqdm progress bar on stderr.
        kernel: the Jupyter kernel's name.

    A point whose notebook fails is recorded with its one-line error; the sweep goes on.

    Raises:
        ValueError: a bad grid, ``workers`` < 1, Ray missing, or another sweep writing into
            ``out_dir``.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a whole number of at least 1, not {workers!r}")
    points = grid(values)
    out = ensure_folder(out_dir, name="out_dir (-o)")
    lock = FileLock(str(out / LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ValueError(
            f"another sweep is writing into {out}: wait for it, or use another -o"
        ) from None
    try:
        return _sweep(notebook, points, list(values), fixed or {}, out, workers, ray, progress,
                      kernel)  # fmt: skip
    finally:
        lock.release()


def _sweep(notebook, points, names, fixed, out, workers, ray, progress, kernel) -> Result:
    width = max(3, len(str(len(points))))
    jobs = []
    for i, point in enumerate(points, 1):
        # relative paths: to the current directory here, not to a worker's
        params = absolute_paths({**fixed, **point})
        spec = json.loads(json.dumps(jsonable({"notebook": notebook, "params": params})))
        jobs.append((f"p{i:0{width}d}", point, params, spec))
    states = {name: folders.state(out / name, spec, key="sweep") for name, _, _, spec in jobs}
    folders.refuse(out, [name for name, state in states.items() if state == "foreign"])
    rows = {}
    for name, point, _params, _spec in jobs:
        if states[name] == "done":
            rows[name] = _done_row(out / name, name, point, skipped=True)
        else:
            rows[name] = {**_row(name, point), "status": "pending"}
    index = _write(out, list(rows.values()), names)
    todo = [job for job in jobs if not rows[job[0]]["skipped"]]
    if ray is not None:
        finished = _on_ray(notebook, todo, out, kernel, ray, workers)
    else:
        finished = _here(notebook, todo, out, kernel, workers)
    bar = tqdm(total=len(todo), desc="sweep", unit="point", disable=not progress,
               file=sys.stderr)  # fmt: skip
    try:
        for row in finished:
            rows[row["point"]] = row
            index = _write(out, list(rows.values()), names)
            if row["status"] == "failed":
                tqdm.write(f"{row['point']}: failed: {row['error']}", file=sys.stderr)
            bar.update(1)
    finally:
        bar.close()
    return Result(out, list(rows.values()), index, key="point")


def run_point(notebook: str, name: str, point: dict, params: dict, spec: dict, out: str,
              kernel: str = "python3") -> dict:  # fmt: skip
    """Run one point's notebook into ``out/name`` (where this process is: a thread here, a Ray
    worker there); its index row, failed with the one-line error rather than raised."""
    folder, start = Path(out) / name, time.perf_counter()
    state = folders.state(folder, spec, key="sweep")
    if state == "done":  # a retried task whose point had finished
        return _done_row(folder, name, point, skipped=False)
    if state == "foreign":  # appeared since the sweep began: never moved, never written
        error = folders.foreign(Path(out), [name])
        row = {**_row(name, point), "status": "failed", "error": error}
        return {**row, "seconds": folders.since(start)}
    if state != "new":
        folders.move_aside(folder, "previous" if state == "changed" else "incomplete")
    run = new_run(out, run_id=name)
    folders.mark(run.path)
    run.set("sweep", {"point": name, "values": jsonable(point), "spec": spec})
    try:
        execute_chain(
            [notebook], params, run_dir=run.path, progress=False, kernel=kernel, echo=False
        )
    except Exception as exc:  # a cell's error, a dead kernel, a bad value: this point only
        row = {**_row(name, point), "status": "failed", "error": one_line(exc)}
        return {**row, "run_dir": name, "seconds": folders.since(start)}
    run.update(lambda r: r["sweep"].update(seconds=folders.since(start)))
    return _done_row(folder, name, point, skipped=False)


def _here(notebook, todo, out, kernel, workers) -> Iterator[dict]:
    """The points in a pool of ``workers`` threads, each driving its own kernel."""
    if not todo:
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            pool.submit(run_point, notebook, name, point, params, spec, str(out), kernel): (
                name,
                point,
            )
            for name, point, params, spec in todo
        }
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as exc:  # the point's folder could not even be set up
                name, point = futures[future]
                yield {**_row(name, point), "status": "failed", "error": one_line(exc)}


def _on_ray(notebook, todo, out, kernel, address, workers) -> Iterator[dict]:
    """The points as Ray tasks (one kernel each), ``workers`` at most at once."""
    ray = import_ray(address)
    return _ray_tasks(ray, connect, notebook, todo, out, kernel, address, workers)


def _ray_tasks(ray, connect: Callable, notebook, todo, out, kernel, address, workers):
    if not todo:
        return
    started = connect(ray, address, workers)
    try:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        cpus = float(ray.cluster_resources().get("CPU", 1))
        size = min(workers or len(todo), len(todo))
        options = {"num_gpus": 1} if gpus else {"num_cpus": min(1.0, cpus / size)}
        task = ray.remote(**options)(run_point)
        waiting = list(todo)
        running = []
        while waiting or running:
            while waiting and len(running) < size:
                name, point, params, spec = waiting.pop(0)
                running.append(task.remote(notebook, name, point, params, spec, str(out), kernel))
            ready, running = ray.wait(running, num_returns=1)
            yield ray.get(ready[0])
    finally:
        if started:
            ray.shutdown()


def _row(name: str, point: dict) -> dict:
    row = dict.fromkeys(COLUMNS, "")
    row.update(point=name, skipped=False, seconds=None, values=point)
    return row


def _done_row(folder: Path, name: str, point: dict, *, skipped: bool) -> dict:
    record = open_run(folder).record
    row = _row(name, point)
    row.update(
        status="done",
        run_dir=name,
        files=";".join(record.get("files", {}).values()),
        seconds=record.get("sweep", {}).get("seconds"),
        skipped=skipped,
    )
    return row


def _cell(value) -> str:
    """A swept value in the index: text as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(jsonable(value))


def _write(out: Path, rows: list[dict], names: list[str]) -> Path:
    """``index.csv``: :data:`COLUMNS`, then each swept parameter's value."""
    cells = [{**row, **{n: _cell(row["values"].get(n)) for n in names}} for row in rows]
    return write_csv(out / INDEX, [*COLUMNS, *names], cells)
