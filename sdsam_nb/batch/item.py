"""One item of a batch run into its own run folder, where this process is: one after the other
in the batch's process, or in a Ray worker (:mod:`sdsam_nb.batch.ray_pool`).

:func:`run_item` returns the item's index row; a failing item (a bad parameter, an unreadable
picture, an error in a step) is recorded in its ``run.json`` and its row, never raised, so
that the batch goes on.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
from pathlib import Path

from tqdm.auto import tqdm

from ..runs import new_run, open_run
from ..runs.chain import one_line
from . import folders, index
from .execute import execute
from .manifest import Manifest
from .plan import plan_item


def run_item(
    item: dict,
    out: Path,
    manifest: Manifest,
    defaults: dict,
    spec: dict,
    state: str | None = None,
) -> dict:
    """Run one item into ``out/<id>/``; its index row (failed with its error line, never
    raised).

    Args:
        item: the manifest's item (checked).
        out: the batch's folder.
        manifest: the batch's manifest (for the item's relative paths).
        defaults: the batch's checked defaults.
        spec: what the item's run is made from (stored in ``run.json``, compared on resume).
        state: the item's folder as the batch found it (:func:`folders.state`). ``None``
            looks at it here (a Ray worker), not where the batch was planned: a retried item
            (its worker died) finds its own unfinished attempt and moves it aside, and an item
            that had finished before its worker died is not run again.
    """
    rid = item["id"]
    if state is None:
        state = folders.state(out / rid, spec)
    if state == "done":
        return index.done(open_run(out / rid), rid, skipped=False)
    start = time.perf_counter()
    if state == "foreign":  # appeared since the batch was planned: left alone
        message = folders.foreign(out, [rid])
        return index.failed(rid, f"ValueError: {message}", seconds=folders.since(start))
    try:
        plan = plan_item(item, defaults, manifest.base)
    except Exception as exc:  # a bad item: recorded, no run folder, the batch goes on
        return index.failed(rid, one_line(exc), seconds=folders.since(start))
    if state != "new":
        moved = folders.move_aside(out / rid, "previous" if state == "changed" else "incomplete")
        why = "made with other settings" if state == "changed" else "unfinished or failed"
        tqdm.write(f"{rid}: the earlier run was {why}; it is now {moved.name}", file=sys.stderr)
    run = new_run(out, run_id=rid)
    folders.mark(run.path)
    # the worker (host:pid) from the start: a running item says which process runs it
    worker = _worker()["worker"]
    run.set("batch", {"id": rid, "manifest": manifest.source, "spec": spec, "worker": worker})

    def seconds() -> None:  # recorded before the run reads done: nothing changes it after
        took = folders.since(start)
        run.update(lambda r: r["batch"].update(seconds=took, **_worker()))

    try:
        execute(run, plan, before_done=seconds)
    except Exception as exc:  # recorded in run.json and the index; the batch goes on
        line, trace, took = one_line(exc), traceback.format_exc(), folders.since(start)
        worker = _worker()
        run.update(lambda r: r["batch"].update(error=line, traceback=trace, seconds=took, **worker))
        return index.failed(rid, line, run_dir=rid, seconds=took, **worker)
    return index.done(run, rid, skipped=False)


def _worker() -> dict:
    """Which process ran the item (``host:pid``) and its peak memory so far (MB): a
    process's models stay loaded, so the peak is the worker's, not the item's own."""
    worker = {"worker": f"{socket.gethostname()}:{os.getpid()}", "peak_memory_mb": None}
    try:
        import resource
    except ImportError:  # Windows: no peak memory
        return worker
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB; bytes on macOS
    worker["peak_memory_mb"] = round(peak / (2**20 if sys.platform == "darwin" else 2**10))
    return worker
