"""Run a batch's items or a sweep's points (:class:`~sdsam_nb.batch.jobs.Jobs`), each into its
own run folder, models loaded once, resumable: one runner for both.

``<out>/<name>/`` is a job's run folder, the layout the notebooks write (``run.json`` with one
execution per notebook, the pictures), plus its entry (``batch`` or ``sweep``) in ``run.json``:
what it was made from, its seconds, the worker, and the error and traceback of a failed job.
``<out>/index.csv`` lists every job (:mod:`sdsam_nb.batch.index`).

The models are loaded once per process: the notebooks call :func:`sdsam_nb.load_sd`,
:func:`sdsam_nb.load_sam` and the text detector, which keep what they loaded
(:data:`sdsam_nb.models.MODELS`); the first job that needs a model pays for loading it.

Resume: running again into the same folder skips each job whose run folder is done
(``run.status == "done"``) and was made from the same spec (for a batch item: the item, the
defaults and the sha256 of its picture and mask file; for a sweep point: the notebook and its
parameters). Any other run folder the batch made under the job's name is moved aside, never
deleted: an unfinished or failed one to ``<name>.incomplete-<time>``, a finished one made from
another spec to ``<name>.previous-<time>``; the job then runs again. A run's pictures depend on
its own parameters (its ``seed``) alone, never on its position, so a subset or a reordered
manifest gives the same pictures per item.

The run folders a batch or sweep makes hold a :data:`~sdsam_nb.batch.folders.MARKER` file,
written as each is made (a folder whose ``run.json`` has a ``batch`` or ``sweep`` entry, from
before the marker, counts too). Anything else under a job's name in the folder (a file, a
link, the user's own folder) is never moved, renamed or written into: the run refuses to
start, naming them (:mod:`sdsam_nb.batch.folders`).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from ..runs import ensure_folder, open_run
from . import index
from .folders import owned, refuse, state
from .index import Result
from .jobs import Jobs
from .ray_pool import check_ray, ray_rows

LOCK = ".batch.lock"


def run_jobs(
    jobs: Jobs,
    out_dir: str | os.PathLike,
    *,
    progress: bool = True,
    ray: str | None = None,
    workers: int | None = None,
) -> Result:
    """Run ``jobs`` into ``out_dir/<name>/``, skipping those done; write ``out_dir/index.csv``.

    Args:
        jobs: a batch's items or a sweep's points.
        out_dir: the folder (created). Run again into it to resume.
        progress: a tqdm progress bar on stderr (done, failed, jobs per minute, time left);
            without it a line per job done.
        ray: ``None`` runs the jobs here, one after the other. Else they run on Ray
            (:mod:`sdsam_nb.batch.ray_pool`): ``"local"`` a Ray instance on this machine (or
            the one this process already joined), ``"auto"`` the running cluster, or a
            cluster's address. Needs the ``ray`` extra.
        workers: with ``ray``, the actor pool's size (default: one per GPU of the cluster,
            else 2 CPU workers).

    Raises:
        ValueError: one line, before anything is written: another batch or sweep writing
            into ``out_dir``, a name that names something there no batch made, Ray missing or
            a bad pool size.
    """
    out = Path(os.path.expanduser(out_dir)).resolve()
    taken = [n for n in jobs.names if os.path.lexists(out / n) and not owned(out / n, jobs.key)]
    refuse(out, taken)
    if ray is not None:  # Ray's absence or a bad pool size: said before anything is written
        check_ray(ray, workers)
    out = ensure_folder(out, name="-o")
    lock = FileLock(str(out / LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ValueError(
            f"another batch or sweep is writing into {out}: wait for it, or use another -o"
        ) from None
    try:
        return _run(jobs, out, progress, ray, workers)
    finally:
        lock.release()


def _run(jobs: Jobs, out: Path, progress: bool, ray: str | None, workers: int | None) -> Result:
    states = {name: state(out / name, jobs.specs[name], key=jobs.key) for name in jobs.names}
    refuse(out, [name for name, found in states.items() if found == "foreign"])
    rows = {}
    for name in jobs.names:
        if states[name] == "done":
            rows[name] = jobs.done_row(open_run(out / name), name, skipped=True)
        else:
            rows[name] = jobs.row(name, status="pending")
    path = index.write(out, list(rows.values()), jobs.columns)
    todo = [name for name in jobs.names if states[name] != "done"]
    before = len(jobs.names) - len(todo)
    counts = {"done": 0, "failed": 0}
    if ray is not None:
        finished = ray_rows(jobs, todo, out, address=ray, workers=workers)
    else:
        finished = (jobs.run_one(name, out, states[name]) for name in todo)
    bar = tqdm(
        total=len(todo),
        desc=f"{jobs.key} ({before} done before)" if before else jobs.key,
        unit=jobs.unit,
        disable=not progress,
        file=sys.stderr,
        bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {elapsed}<{remaining}{postfix}",
    )
    start = time.perf_counter()
    try:
        for row in finished:
            name = row["id"]
            rows[name] = row
            path = index.write(out, list(rows.values()), jobs.columns)
            counts[row["status"]] += 1
            if row["status"] == "failed":
                tqdm.write(f"{name}: failed: {row['error']}", file=sys.stderr)
            elif not progress:
                print(f"{name}: done in {row['seconds']:.1f} s", flush=True)
            minutes = (time.perf_counter() - start) / 60
            rate = (counts["done"] + counts["failed"]) / minutes if minutes > 0 else 0.0
            bar.set_postfix_str(
                f"done {counts['done']}, failed {counts['failed']}, {rate:.1f} {jobs.unit}s/min",
                refresh=False,
            )
            bar.update(1)
    finally:
        bar.close()
    return Result(out, list(rows.values()), path)
