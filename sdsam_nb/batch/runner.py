"""Run a batch: every item of a manifest into its own run folder, models loaded once, resumable.

``<out>/<id>/`` is item ``id``'s run folder, the layout the notebooks write (``run.json``
with one execution per notebook, the pictures), plus ``batch`` in its ``run.json``: the item
and the batch's defaults it was made with, its seconds, and the error and traceback of a
failed item. ``<out>/index.csv`` lists every item (:mod:`sdsam_nb.batch.index`).

The models are loaded once per process: the steps call :func:`sdsam_nb.load_sd`,
:func:`sdsam_nb.load_sam` and the text detector, which keep what they loaded
(:data:`sdsam_nb.models.MODELS`); the first item that needs a model pays for loading it.

Resume: running a batch again into the same folder skips each item whose run folder is done
(``run.status == "done"``) and was made from the same item and defaults. Any other folder
under the item's id is moved aside, never deleted: an unfinished or failed one to
``<id>.incomplete-<time>``, a finished one made with other settings to ``<id>.previous-<time>``;
the item is then run again. A run's pictures depend on its item alone (its own ``seed``), never
on its position, so a subset or a reordered manifest gives the same pictures per item.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from ..runs import RUN_JSON, jsonable, new_run, open_run
from . import index
from .execute import execute, one_line
from .manifest import Manifest, check_item, read_manifest
from .plan import plan_item

LOCK = ".batch.lock"


@dataclass
class BatchResult:
    """What a batch did.

    Attributes:
        out_dir: the batch's folder.
        rows: one dict per item, in manifest order (the index's rows, :data:`index.COLUMNS`).
        index: the path of ``index.csv``.
    """

    out_dir: Path
    rows: list[dict]
    index: Path

    @property
    def done(self) -> list[str]:
        """Ids of the items done (in this pass or an earlier one)."""
        return [r["id"] for r in self.rows if r["status"] == "done"]

    @property
    def failed(self) -> list[str]:
        return [r["id"] for r in self.rows if r["status"] == "failed"]

    @property
    def skipped(self) -> list[str]:
        """Ids of the items an earlier pass had done."""
        return [r["id"] for r in self.rows if r["skipped"]]

    @property
    def exit_code(self) -> int:
        """The command's exit status: 0 every item done, 1 some failed."""
        return 1 if self.failed else 0


def run_batch(
    manifest: Manifest | str | os.PathLike | list,
    *,
    out_dir: str | os.PathLike,
    params: dict | None = None,
    progress: bool = True,
    ray: str | None = None,
    workers: int | None = None,
) -> BatchResult:
    """Run every item of ``manifest`` into ``out_dir/<id>/``; write ``out_dir/index.csv``.

    Args:
        manifest: a :class:`Manifest`, or what :func:`read_manifest` reads.
        out_dir: the batch's folder (created). Run again into it to resume.
        params: defaults for every item (an item's own values win): notebook parameters
            and ``method``, ``mask`` (a relative file: to the current directory),
            ``auto_mask``.
        progress: a tqdm progress bar on stderr (done, failed, items per minute, time left).
        ray: ``None`` runs the items here, one after the other. Else they run on Ray
            (:mod:`sdsam_nb.batch.ray_pool`): ``"local"`` a Ray instance on this machine (or
            the one this process already joined), ``"auto"`` the running cluster,
            or a cluster's address. Needs the ``ray`` extra.
        workers: with ``ray``, the actor pool's size (default: one per GPU of the cluster,
            else 2 CPU workers).

    A failing item (an unreadable picture, nothing found for its text, a bad parameter) is
    recorded with its one-line error and the batch goes on.

    Raises:
        ValueError: a bad default (one line, naming it), or another batch writing into
            ``out_dir``.
    """
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest)
    defaults = check_item(params or {}, defaults=True)
    if defaults.get("mask") not in (None, "auto"):
        defaults["mask"] = str(Path(defaults["mask"]).expanduser().resolve())
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out / LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ValueError(
            f"another batch is writing into {out}: wait for it, or use another -o"
        ) from None
    try:
        return _run(manifest, out, defaults, progress, ray, workers)
    finally:
        lock.release()


def _run(
    manifest: Manifest,
    out: Path,
    defaults: dict,
    progress: bool,
    ray: str | None,
    workers: int | None,
) -> BatchResult:
    specs = {item["id"]: _spec(item, defaults) for item in manifest.items}
    if ray is not None:  # Ray's absence or a bad pool size: said before anything is written
        from .ray_pool import check_ray

        check_ray(ray, workers)
    states = {rid: _state(out / rid, spec) for rid, spec in specs.items()}
    rows = {}
    for item in manifest.items:
        rid = item["id"]
        if states[rid] == "done":
            rows[rid] = index.done(open_run(out / rid), rid, skipped=True)
        else:
            rows[rid] = index.pending(rid)
    path = index.write(out, list(rows.values()))
    todo = [item for item in manifest.items if states[item["id"]] != "done"]
    before = len(manifest.items) - len(todo)
    counts = {"done": 0, "failed": 0}
    if ray is not None:  # Ray's absence or a bad pool size: said before anything runs
        from .ray_pool import ray_rows

        finished = ray_rows(todo, out, manifest, defaults, specs, address=ray, workers=workers)
    else:
        finished = (
            _item(item, out, manifest, defaults, specs[item["id"]], states[item["id"]])
            for item in todo
        )
    bar = tqdm(
        total=len(todo),
        desc=f"batch ({before} done before)" if before else "batch",
        unit="item",
        disable=not progress,
        file=sys.stderr,
        bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {elapsed}<{remaining}{postfix}",
    )
    start = time.perf_counter()
    try:
        for row in finished:
            rid = row["id"]
            rows[rid] = row
            path = index.write(out, list(rows.values()))
            counts[row["status"]] += 1
            if row["status"] == "failed":
                tqdm.write(f"{rid}: failed: {row['error']}", file=sys.stderr)
            elif not progress:
                print(f"{rid}: done in {row['seconds']:.1f} s", flush=True)
            minutes = (time.perf_counter() - start) / 60
            rate = (counts["done"] + counts["failed"]) / minutes if minutes > 0 else 0.0
            bar.set_postfix_str(
                f"done {counts['done']}, failed {counts['failed']}, {rate:.1f} items/min",
                refresh=False,
            )
            bar.update(1)
    finally:
        bar.close()
    return BatchResult(out, list(rows.values()), path)


def run_item(item: dict, out: Path, manifest: Manifest, defaults: dict, spec: dict) -> dict:
    """Run one item where this process is (a Ray worker); its index row.

    The item's folder is looked at here, not where the batch was planned: a retried item (its
    worker died) finds its own unfinished attempt and moves it aside, and an item that had
    finished before its worker died is not run again.
    """
    state = _state(out / item["id"], spec)
    if state == "done":
        return index.done(open_run(out / item["id"]), item["id"], skipped=False)
    return _item(item, out, manifest, defaults, spec, state)


def _item(
    item: dict, out: Path, manifest: Manifest, defaults: dict, spec: dict, state: str
) -> dict:
    """Run one item; its index row (failed with its error line, never raised)."""
    rid, start = item["id"], time.perf_counter()
    try:
        plan = plan_item(item, defaults, manifest.base)
    except Exception as exc:  # a bad item: recorded, no run folder, the batch goes on
        return index.failed(rid, one_line(exc), seconds=_since(start))
    if state != "new":
        moved = _move_aside(out / rid, "previous" if state == "changed" else "incomplete")
        why = "made with other settings" if state == "changed" else "unfinished or failed"
        tqdm.write(f"{rid}: the earlier run was {why}; it is now {moved.name}", file=sys.stderr)
    run = new_run(out, run_id=rid)
    run.set("batch", {"id": rid, "manifest": manifest.source, "spec": spec})

    def seconds() -> None:  # recorded before the run reads done: nothing changes it after
        took = _since(start)
        run.update(lambda r: r["batch"].update(seconds=took, **_worker()))

    try:
        execute(run, plan, before_done=seconds)
    except Exception as exc:  # recorded in run.json and the index; the batch goes on
        line, trace, took = one_line(exc), traceback.format_exc(), _since(start)
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


def _since(start: float) -> float:
    return round(time.perf_counter() - start, 2)


def _spec(item: dict, defaults: dict) -> dict:
    """What an item's run is made from, as ``run.json`` stores it (compared on resume)."""
    return json.loads(json.dumps(jsonable({"item": item, "defaults": defaults})))


def _state(folder: Path, spec: dict, key: str = "batch") -> str:
    """``"new"`` (no folder), ``"done"`` (finished, from ``spec``), ``"changed"`` (finished
    from another item or other defaults) or ``"incomplete"`` (anything else there).
    ``key``: where ``run.json`` keeps the spec (``"batch"``, ``"sweep"``)."""
    if not os.path.lexists(folder):
        return "new"
    if not (folder / RUN_JSON).is_file():
        return "incomplete"
    try:
        run = open_run(folder)
        status, record = run.status, run.record
    except (OSError, ValueError, KeyError, TypeError):
        return "incomplete"
    if status != "done":
        return "incomplete"
    return "done" if record.get(key, {}).get("spec") == spec else "changed"


def _move_aside(folder: Path, kind: str) -> Path:
    """Rename ``folder`` to ``<name>.<kind>-<time>`` (a free name); returns the new path."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target = folder.with_name(f"{folder.name}.{kind}-{stamp}")
    n = 1
    while os.path.lexists(target):
        n += 1
        target = folder.with_name(f"{folder.name}.{kind}-{stamp}-{n}")
    os.rename(folder, target)
    return target
