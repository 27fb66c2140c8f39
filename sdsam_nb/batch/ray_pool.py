"""A batch on Ray: the items through a Ray Data actor pool, each actor holding the models.

:func:`ray_rows` is what :func:`sdsam_nb.batch.run_batch` uses with ``ray=``: the items still
to do go into a Ray Dataset (one item per row, one row per batch), which
``map_batches`` sends through a pool of :class:`ItemWorker` actors. An actor is one process:
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

from . import index
from .item import run_item
from .manifest import Manifest

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


class ItemWorker:
    """One actor of the pool: runs the items it is given, in its own process.

    Args:
        out: the batch's folder.
        manifest: the batch's manifest (for the items' relative paths).
        defaults: the batch's checked defaults.
        specs: item id -> what its run is made from (compared with a finished run).
        threads: torch's CPU threads in this actor (``None``: as Ray set them).
    """

    def __init__(
        self,
        out: str,
        manifest: Manifest,
        defaults: dict,
        specs: dict,
        threads: int | None,
        since: float,
    ):
        if threads:
            torch.set_num_threads(threads)
        self.out, self.manifest = Path(out), manifest
        self.defaults, self.specs, self.since = defaults, specs, since

    def __call__(self, batch: dict) -> dict:
        """``{"item": [JSON of an item]...}`` -> ``{"row": [JSON of its index row]...}``."""
        rows = []
        for text in batch["item"]:
            item = json.loads(str(text))
            died = self._attempts(item["id"])
            if died >= ATTEMPTS:
                row = index.failed(
                    item["id"],
                    f"RuntimeError: its worker died {died} times running it (out of memory?); "
                    f"the attempts are kept as {item['id']}.incomplete-*",
                )
            else:
                spec = self.specs[item["id"]]
                row = run_item(item, self.out, self.manifest, self.defaults, spec)
            rows.append(json.dumps(row))
        return {"row": rows}

    def _attempts(self, rid: str) -> int:
        """How many runs of item ``rid`` this pass left unfinished (a worker died in each)."""
        aside = self.out.glob(f"{rid}.incomplete-*")
        died = sum(1 for p in aside if p.stat().st_mtime >= self.since)
        if (self.out / rid).is_dir() and (self.out / rid).stat().st_mtime >= self.since:
            died += 1  # the attempt still under its own name
        return died


def ray_rows(
    todo: list[dict],
    out: Path,
    manifest: Manifest,
    defaults: dict,
    specs: dict,
    *,
    address: str = "local",
    workers: int | None = None,
) -> Iterator[dict]:
    """Run ``todo`` on Ray; yield each item's index row as it finishes (in any order).

    ``address``: ``"local"`` joins the Ray instance this process already started
    (``ray.init``) or starts one on this machine and stops it at the end; ``"auto"`` joins the
    cluster running here (``ray start --head``); anything else is a cluster's address
    (``ray://host:10001`` or ``host:6379``).

    Raises:
        ValueError: Ray is not installed, ``workers`` is not a positive number, or the
            cluster cannot be reached.
    """
    ray = check_ray(address, workers)
    return _rows(ray, todo, out, manifest, defaults, specs, address, workers)


def check_ray(address: str, workers: int | None):
    """``ray``, once ``workers`` is checked; ``ValueError`` (one line) when it is wrong or
    Ray is not installed."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)):
        raise ValueError(f"workers must be a whole number, not {workers!r}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    return import_ray(address)


def _rows(ray, todo, out, manifest, defaults, specs, address, workers) -> Iterator[dict]:
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
        items = ray.data.from_items(  # one block per item: any actor can take any item
            [{"item": json.dumps(item)} for item in todo], override_num_blocks=len(todo)
        )
        rows = items.map_batches(
            ItemWorker,
            fn_constructor_kwargs={
                "out": str(out),
                "manifest": manifest,
                "defaults": defaults,
                "specs": {item["id"]: specs[item["id"]] for item in todo},
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
