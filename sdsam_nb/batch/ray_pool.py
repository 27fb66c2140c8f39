"""A batch or sweep on Ray: its jobs (items, points) through a Ray Data actor pool, each actor
holding the models.

:func:`ray_rows` is what :func:`sdsam_nb.batch.runner.run_jobs` uses with ``ray=``: the jobs
still to do go into a Ray Dataset (one job per row, one row per batch), which
``map_batches`` sends through a pool of :class:`JobWorker` actors. An actor is one process:
the models it loads for its first item (:data:`sdsam_nb.models.MODELS`) serve all the items it
gets after, as in a local batch. On a cluster with GPUs each actor asks for one GPU
(``num_gpus=1``), so the pool is one actor per GPU; without GPUs each asks for one CPU.

Every actor writes its item's run folder into the batch's folder itself (on a cluster that
folder must be on storage every node sees, e.g. NFS); the driver, where the command runs,
only plans the batch, collects each item's index row as it comes back, writes ``index.csv``
and shows the progress bar. An item's pictures come from its own parameters and seed, never
from which actor ran it or when, so a batch on Ray gives the pictures of a local batch on the
same kind of device.

A worker that dies (killed, out of memory, a lost node) is replaced and its item given to an
actor again (Ray Data's actor pools restart actors and retry their work): the item finds its
unfinished run folder, moves it aside as ``<id>.incomplete-<time>`` and runs again. An item
whose worker died :data:`ATTEMPTS` times in one pass is recorded as failed instead, so that one
item that always kills its worker cannot hold the batch for ever.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from .jobs import Jobs

INSTALL = 'pip install "sdsam-nb[ray]"'
ATTEMPTS = 3  # an item whose worker died this many times in one pass fails instead


# Ray's switch between a single-machine instance on the loopback address and a cluster node
# on the machine's network address (read when ray is imported)
LOOPBACK = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def import_ray(address: str | None = None):
    """``ray`` (and ``ray.data``), or a ``ValueError`` that says how to install it.

    With ``address="local"`` and ray not imported yet, the instance this process starts
    listens on the loopback address only (127.0.0.1): nothing outside the machine reaches it.
    """
    if address == "local" and "ray" not in sys.modules:
        os.environ.setdefault(LOOPBACK, "0")
    try:
        import ray
        import ray.data  # noqa: F401  (the ``data`` extra: pyarrow, pandas)
    except ImportError as exc:
        raise ValueError(
            f"--ray needs Ray Data, which is not installed ({exc.name}): {INSTALL} "
            '(or pip install "ray[data]")'
        ) from None
    return ray


class JobWorker:
    """One actor of the pool: runs the jobs it is given (:meth:`Jobs.run_one`), in its own
    process.

    Args:
        jobs: the batch's (sweep's) jobs.
        out: its folder.
        threads: torch's CPU threads in this actor (``None``: as Ray set them).
        since: when this pass began (:func:`time.time`): the unfinished attempts made since
            then are the ones whose worker died.
    """

    def __init__(self, jobs: Jobs, out: str, threads: int | None, since: float):
        if threads:
            torch.set_num_threads(threads)
        self.jobs, self.out, self.since = jobs, Path(out), since

    def __call__(self, batch: dict) -> dict:
        """``{"name": [a job's name]...}`` -> ``{"row": [JSON of its index row]...}``."""
        rows = []
        for name in map(str, batch["name"]):
            died = self._attempts(name)
            if died >= ATTEMPTS:
                row = self.jobs.row(
                    name,
                    status="failed",
                    error=f"RuntimeError: its worker died {died} times running it (out of "
                    f"memory?); the attempts are kept as {name}.incomplete-*",
                )
            else:
                row = self.jobs.run_one(name, self.out)
            rows.append(json.dumps(row))
        return {"row": rows}

    def _attempts(self, name: str) -> int:
        """How many runs of job ``name`` this pass left unfinished (a worker died in each)."""
        aside = self.out.glob(f"{name}.incomplete-*")
        died = sum(1 for p in aside if p.stat().st_mtime >= self.since)
        if (self.out / name).is_dir() and (self.out / name).stat().st_mtime >= self.since:
            died += 1  # the attempt still under its own name
        return died


def ray_rows(
    jobs: Jobs,
    todo: list[str],
    out: Path,
    *,
    address: str = "local",
    workers: int | None = None,
) -> Iterator[dict]:
    """Run the jobs named ``todo`` on Ray; yield each one's index row as it finishes (in any
    order).

    ``address``: ``"local"`` joins the Ray instance this process already started
    (``ray.init``) or starts one on this machine and stops it at the end; ``"auto"`` joins the
    cluster running here (``ray start --head``); anything else is a cluster's address
    (``ray://host:10001`` or ``host:6379``).

    Raises:
        ValueError: Ray is not installed, ``workers`` is not a positive number, or the
            cluster cannot be reached.
    """
    ray = check_ray(address, workers)
    return _rows(ray, jobs, todo, out, address, workers)


def check_ray(address: str, workers: int | None):
    """``ray``, once ``workers`` is checked; ``ValueError`` (one line) when it is wrong or
    Ray is not installed."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)):
        raise ValueError(f"workers must be a whole number, not {workers!r}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    return import_ray(address)


def _rows(ray, jobs: Jobs, todo: list[str], out: Path, address, workers) -> Iterator[dict]:
    if not todo:
        return
    started = connect(ray, address, workers)
    try:
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), float(resources.get("CPU", 1))
        size = min(workers or (gpus if gpus else 2), len(todo))
        # Each actor asks for a CPU, or less when the pool would hold every CPU: Ray Data's own
        # tasks need one free, or the batch waits for ever (a 2-CPU instance, 2 actors).
        each = {"num_cpus": min(1.0, max(cpus - 1, 0.1) / size)}
        if gpus:
            each["num_gpus"] = 1  # the pool: one actor per GPU
        # torch's CPU results depend on its thread count (the order of its sums): each actor
        # uses the threads a local batch here uses, so that its pictures are the same bits
        threads = torch.get_num_threads()
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the batch has its own
        context.execution_options.preserve_order = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        names = ray.data.from_items(  # one block per job: any actor can take any job
            [{"name": name} for name in todo], override_num_blocks=len(todo)
        )
        rows = names.map_batches(
            JobWorker,
            fn_constructor_kwargs={
                "jobs": jobs,
                "out": str(out),
                "threads": threads,
                "since": time.time(),
            },
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=size),
            **each,
        )
        for row in rows.iter_rows():
            yield json.loads(row["row"])
    finally:
        if started:
            ray.shutdown()


def connect(ray, address: str, workers: int | None) -> bool:
    """Join or start Ray; ``True`` when this call started an instance (to stop it after)."""
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": True, "logging_level": "WARNING"}
    if address == "local":
        # a logical CPU more than the pool takes: with every CPU held by an actor, Ray Data's
        # own tasks would wait for ever (logical CPUs may exceed the cores)
        cpus = max(os.cpu_count() or 1, (workers or 2) + 1)
        ray.init(num_cpus=cpus, **quiet)
        return True
    try:
        ray.init(address=address, logging_level="WARNING", log_to_driver=True)
    except (ConnectionError, RuntimeError) as exc:
        raise ValueError(f"--ray {address}: no Ray cluster reached ({exc})") from None
    return True
