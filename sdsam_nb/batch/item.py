"""A batch: every item of a manifest into its own run folder, through the runner batches and
sweeps share (:func:`sdsam_nb.batch.runner.run_jobs`).

An item runs its notebooks themselves in this process (or a Ray worker):
:func:`sdsam_nb.runs.chain.execute_here` runs each notebook's cells with the parameters
``sdsam-nb run`` would inject, so the run records what a kernel would and ``sdsam-nb replay``
re-runs it. The one step a batch adds is the mask it makes (``mask: auto``) or takes (a file),
kept as ``mask.png`` before notebook 03 or 04 reads it through ``mask_path``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from PIL import Image

from .. import runs
from ..images import check_subject, to_mask, to_rgb
from ..models import load_sam, sha256_file
from ..runs import Run, jsonable
from ..runs.chain import execute_here
from .index import Result
from .manifest import METHODS, Manifest, check_item, read_manifest
from .plan import Plan, input_files, plan_item
from .runner import Jobs, run_jobs


class Items(Jobs):
    """A manifest's items as the runner's jobs (named by their ids), with the batch's checked
    ``defaults``."""

    key, unit = "batch", "item"

    def __init__(self, manifest: Manifest, defaults: dict):
        self.manifest, self.defaults = manifest, defaults
        self.items = {item["id"]: item for item in manifest.items}
        base, hashes = manifest.base, {}
        specs = {rid: item_spec(item, defaults, base, hashes) for rid, item in self.items.items()}
        super().__init__(list(self.items), specs)

    def prepare(self, name: str) -> Plan:
        return plan_item(self.items[name], self.defaults, self.manifest.base)

    def entry(self, name: str) -> dict:
        return {"id": name, "manifest": self.manifest.source}

    def execute(self, name: str, run: Run, plan: Plan, before_done) -> None:
        """Run ``plan``'s notebooks in ``run``; the first error (a cell's, or the mask's) is
        raised."""
        for notebook, params in plan.params_for(run.path).items():
            if plan.mask is not None and notebook in METHODS.values():
                _keep_mask(run, params, plan)
            execute_here(notebook, params, quiet=True)  # the batch prints its own progress
        before_done()


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
            from the same item, defaults and input files are skipped.
        params: defaults for every item (an item's own values win): notebook parameters
            and ``method``, ``mask`` (a relative file: to the current directory),
            ``auto_mask``.
        progress, ray, workers: as :func:`sdsam_nb.batch.runner.run_jobs` takes them.

    Raises:
        ValueError: one line, before anything is written: a bad default (naming it), another
            batch writing into ``out_dir``, or an item id that names something in ``out_dir``
            the batch did not make.
    """
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest)
    defaults = check_item(params or {}, defaults=True)
    if defaults.get("mask") not in (None, "auto"):
        defaults["mask"] = str(Path(os.path.expanduser(defaults["mask"])).resolve())
    jobs = Items(manifest, defaults)
    return run_jobs(jobs, out_dir, progress=progress, ray=ray, workers=workers)


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
            try:
                hashes[path] = sha256_file(path) if path.is_file() else None
            except OSError:
                hashes[path] = None
    sha = {name: hashes[path] for name, path in files.items()}
    return json.loads(json.dumps(jsonable({"item": item, "defaults": defaults, "sha256": sha})))


def _keep_mask(run: Run, params: dict, plan: Plan) -> None:
    """The mask the batch makes (``mask: auto``) or takes (a file), kept in the run as
    ``mask.png`` (``params["mask_path"]``) with how it was made (``mask_made_by``)."""
    if params["image_path"]:
        subject = to_rgb(params["image_path"], name="image_path")
    else:  # generated by 01, which ran before
        subject = to_rgb(run.file("subject"), name="subject")
    if plan.mask == "auto":
        from ..segment import auto_subject_mask

        with run.step("load_sam"):
            predictor = load_sam(plan.sam_model)
        run.log_model("sam", runs.model_info(predictor, plan.sam_model))
        with run.step("auto_mask"):
            result = auto_subject_mask(predictor, subject, **plan.auto_mask)
        run.set("auto_mask", result.to_dict())
        if not result.found:
            raise ValueError(f"mask: auto: {result.message}")
        mask = result.mask
        runs.record_mask_made(run, "automatic")
    else:
        with Image.open(plan.mask) as opened:
            mask = to_mask(opened, subject.size, name="mask")
        check_subject(mask, name="mask")
        runs.record_mask_made(run, "file", path=str(plan.mask), sha256=sha256_file(plan.mask))
    if run.file("mask") is None:  # kept once: 03 and 04 would read the same
        path = run.save_mask("mask", mask)
        if str(path) != params["mask_path"]:  # a new run folder: the first mask is mask.png
            raise RuntimeError(f"the batch's mask went to {path}, not {params['mask_path']}")
