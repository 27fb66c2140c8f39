"""Run a batch: every item of a manifest into its own run folder, models loaded once, resumable.

``<out>/<id>/`` is item ``id``'s run folder, the layout the notebooks write (``run.json``
with one execution per notebook, the pictures), plus ``batch`` in its ``run.json``: the item
and the batch's defaults it was made with, its seconds, and the error and traceback of a
failed item. ``<out>/index.csv`` lists every item (:mod:`sdsam_nb.batch.index`).

The models are loaded once per process: the steps call :func:`sdsam_nb.load_sd`,
:func:`sdsam_nb.load_sam` and the text detector, which keep what they loaded
(:data:`sdsam_nb.models.MODELS`); the first item that needs a model pays for loading it.

Resume: running a batch again into the same folder skips each item whose run folder is done
(``run.status == "done"``) and was made from the same item, defaults and input files (the
sha256 of its picture and mask file). Any other run folder the batch made under the item's id
is moved aside, never deleted: an unfinished or failed one to ``<id>.incomplete-<time>``, a
finished one made with other settings or files to ``<id>.previous-<time>``; the item is then
run again. A run's pictures depend on its item alone (its own ``seed``), never on its
position, so a subset or a reordered manifest gives the same pictures per item.

The batch's own run folders hold a :data:`~sdsam_nb.batch.folders.MARKER` file, written as
each is made (a folder whose ``run.json`` has a ``batch`` entry, from before the marker, counts
too). Anything else under an item's id in the batch's folder (a file, a link, the user's own
folder) is never moved, renamed or written into: the batch refuses to start, naming the ids
(:mod:`sdsam_nb.batch.folders`). One item runs in :func:`sdsam_nb.batch.item.run_item`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from ..models import sha256_file
from ..runs import ensure_folder, jsonable, open_run
from . import index
from .folders import owned, refuse, state
from .index import Result
from .item import run_item
from .manifest import Manifest, check_item, read_manifest
from .plan import input_files
from .ray_pool import check_ray, ray_rows

LOCK = ".batch.lock"


def run_batch(
    manifest: Manifest | str | os.PathLike | list,
    *,
    out_dir: str | os.PathLike,
    params: dict | None = None,
    progress: bool = True,
    ray: str | None = None,
    workers: int | None = None,
) -> Result:
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
        ValueError: one line, before anything is written: a bad default (naming it), another
            batch writing into ``out_dir``, or an item id that names something in ``out_dir``
            the batch did not make (a file, a link, a folder without
            :data:`~sdsam_nb.batch.folders.MARKER`).
    """
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest)
    defaults = check_item(params or {}, defaults=True)
    if defaults.get("mask") not in (None, "auto"):
        defaults["mask"] = str(Path(os.path.expanduser(defaults["mask"])).resolve())
    out = Path(os.path.expanduser(out_dir)).resolve()
    ids = [item["id"] for item in manifest.items]
    refuse(out, [rid for rid in ids if os.path.lexists(out / rid) and not owned(out / rid)])
    out = ensure_folder(out, name="-o")
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
) -> Result:
    hashes: dict[Path, str | None] = {}
    specs = {item["id"]: _spec(item, defaults, manifest.base, hashes) for item in manifest.items}
    if ray is not None:  # Ray's absence or a bad pool size: said before anything is written
        check_ray(ray, workers)
    states = {rid: state(out / rid, spec) for rid, spec in specs.items()}
    refuse(out, [rid for rid, found in states.items() if found == "foreign"])
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
        finished = ray_rows(todo, out, manifest, defaults, specs, address=ray, workers=workers)
    else:
        finished = (
            run_item(item, out, manifest, defaults, specs[item["id"]], states[item["id"]])
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
    return Result(out, list(rows.values()), path)


def _spec(item: dict, defaults: dict, base: Path, hashes: dict[Path, str | None]) -> dict:
    """What an item's run is made from, as ``run.json`` stores it (compared on resume): the
    item, the batch's defaults, and ``sha256``: the hex sha256 of each file the item reads
    (``image``, ``mask``; ``None`` when it cannot be read: the item fails when it runs).
    ``hashes`` keeps each file's hash for the other items that read it."""
    try:
        files = input_files(check_item(item), defaults, base)
    except Exception:  # a bad item: it fails alone, when the batch reaches it
        files = {}
    for path in files.values():
        if path not in hashes:
            hashes[path] = _sha256(path)
    sha = {name: hashes[path] for name, path in files.items()}
    return json.loads(json.dumps(jsonable({"item": item, "defaults": defaults, "sha256": sha})))


def _sha256(path: Path) -> str | None:
    try:
        return sha256_file(path) if path.is_file() else None
    except OSError:
        return None
