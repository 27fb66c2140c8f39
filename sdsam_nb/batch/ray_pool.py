"""A batch's or sweep's jobs on a Ray Data actor pool (docs/batches.md, "On Ray").

Each actor is one process that keeps the models its first job loaded and writes its jobs' run
folders itself (on a cluster ``-o`` must be storage every node sees); the driver collects the
index rows. A worker that dies is replaced and its job retried (Ray Data's actor pools do it):
the job moves its unfinished folder aside and runs again, or fails after :data:`ATTEMPTS`
deaths.
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

ATTEMPTS = 3  # a job whose worker died this many times in one pass fails instead


def import_ray(address: str | None = None, workers: int | None = None):
    """``ray``, with ``ray.data`` imported, once ``workers`` (the pool's size, if given) is
    checked. With ``address="local"`` and ray not imported yet, the instance this process
    starts listens on 127.0.0.1 only.

    Raises:
        ValueError: one line: ``workers`` is not a whole number >= 1, or Ray Data is not
            installed (saying how to install it).
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)):
        raise ValueError(f"workers must be a whole number, not {workers!r}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    if address == "local" and "ray" not in sys.modules:
        # read when ray is imported: a single-machine instance on the loopback address
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
        import ray.data  # noqa: F401  (the ``data`` extra: pyarrow, pandas)
    except ImportError as exc:
        raise ValueError(
            f"--ray needs Ray Data, which is not installed ({exc.name}): "
            'pip install "sdsam-nb[ray]" (or pip install "ray[data]")'
        ) from None
    return ray


class JobWorker:
    """One actor: runs the jobs (:class:`~sdsam_nb.batch.runner.Jobs`) it is given into
    ``out`` with ``threads`` torch CPU threads; ``since`` (:func:`time.time`) is when this pass
    began."""

    def __init__(self, jobs, out: str, threads: int, since: float):
        torch.set_num_threads(threads)
        self.jobs, self.out, self.since = jobs, Path(out), since

    def __call__(self, batch: dict) -> dict:
        """``{"name": [job names]}`` -> ``{"row": [the JSON of each one's index row]}``."""
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
    jobs, todo: list[str], out: Path, *, address: str = "local", workers: int | None = None
) -> Iterator[dict]:
    """Run the jobs named ``todo`` on Ray; yields each one's index row as it finishes (in any
    order).

    ``address``: ``"local"`` joins the Ray instance this process started, or starts one here
    (stopped at the end); ``"auto"`` joins the cluster running here; anything else is a
    cluster's address (``ray://host:10001``, ``host:6379``). The pool has ``workers`` actors
    (default: one per GPU, each asking for one, else 2).

    Raises:
        ValueError: as :func:`import_ray`, or the cluster cannot be reached.
    """
    ray = import_ray(address, workers)
    if not todo:
        return
    started = False
    if not ray.is_initialized():
        if address == "local":  # a logical CPU more than the pool takes
            cpus = max(os.cpu_count() or 1, (workers or 2) + 1)
            ray.init(num_cpus=cpus, include_dashboard=False, logging_level="WARNING")
        else:
            try:
                ray.init(address=address, logging_level="WARNING")
            except (ConnectionError, RuntimeError) as exc:
                raise ValueError(f"--ray {address}: no Ray cluster reached ({exc})") from None
        started = True
    try:
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), float(resources.get("CPU", 1))
        size = min(workers or gpus or 2, len(todo))
        # Each actor asks for a CPU, or less when the pool would hold every CPU: Ray Data's own
        # tasks need one free, or the batch waits for ever (a 2-CPU instance, 2 actors).
        each = {"num_cpus": min(1.0, max(cpus - 1, 0.1) / size)}
        if gpus:
            each["num_gpus"] = 1
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
                # torch's CPU sums depend on its thread count: an actor uses a local batch's,
                # so that its pictures are the same bits
                "threads": torch.get_num_threads(),
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
