"""A batch: every item of a manifest into its own run folder (:func:`run_batch`), through the
runner batches and sweeps share (:func:`sdsam_nb.batch.runner.run_jobs`).

An item runs its notebooks themselves, in the batch's process or a Ray worker
(:mod:`sdsam_nb.batch.execute`). A failing item (a bad parameter, an unreadable picture, an
error in a cell) is recorded in its ``run.json`` and its index row, never raised, so that the
batch goes on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..models import sha256_file
from ..runs import Run, jsonable
from .execute import execute
from .index import Result
from .jobs import Jobs
from .manifest import Manifest, check_item, read_manifest
from .plan import input_files, plan_item
from .runner import run_jobs


class Items(Jobs):
    """A manifest's items as the runner's jobs (named by their ids).

    Args:
        manifest: the batch's manifest (for the items' relative paths).
        defaults: the batch's checked defaults.
    """

    key, unit = "batch", "item"

    def __init__(self, manifest: Manifest, defaults: dict):
        self.manifest, self.defaults = manifest, defaults
        self.items = {item["id"]: item for item in manifest.items}
        hashes: dict[Path, str | None] = {}
        specs = {rid: item_spec(item, defaults, manifest.base, hashes)
                 for rid, item in self.items.items()}  # fmt: skip
        super().__init__(list(self.items), specs)

    def prepare(self, name: str):
        return plan_item(self.items[name], self.defaults, self.manifest.base)

    def entry(self, name: str) -> dict:
        return {"id": name, "manifest": self.manifest.source}

    def execute(self, name: str, run: Run, prepared, before_done) -> None:
        execute(run, prepared, before_done=before_done)


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
        out_dir: the batch's folder (created). Run again into it to resume: the items done
            from the same item, defaults and input files are skipped
            (:mod:`sdsam_nb.batch.runner`).
        params: defaults for every item (an item's own values win): notebook parameters
            and ``method``, ``mask`` (a relative file: to the current directory),
            ``auto_mask``.
        progress, ray, workers: as :func:`sdsam_nb.batch.runner.run_jobs` takes them: a
            progress bar; ``None`` here, else ``"local"``, ``"auto"`` or a Ray cluster's
            address; the Ray actor pool's size.

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
    return run_jobs(Items(manifest, defaults), out_dir, progress=progress, ray=ray,
                    workers=workers)  # fmt: skip


def item_spec(item: dict, defaults: dict, base: Path, hashes: dict | None = None) -> dict:
    """What an item's run is made from, as ``run.json`` stores it (compared on resume): the
    item, the batch's defaults, and ``sha256``: the hex sha256 of each file the item reads
    (``image``, ``mask``; ``None`` when it cannot be read: the item fails when it runs).
    ``hashes`` keeps each file's hash for the other items that read it."""
    hashes = {} if hashes is None else hashes
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
