"""A batch: every item of a manifest into its own run folder, through the runner that batches
and sweeps share (:func:`sdsam_nb.batch.runner.run_jobs`; docs/batches.md).

An item runs the notebooks ``sdsam-nb run`` would chain for it, in this process or a Ray
worker (:func:`sdsam_nb.runs.chain.execute_here`): ``01_generate_subject`` for a
``subject_prompt``, ``02_click_to_mask`` for prompts, then ``03_inpaint_background`` or
``04_composite_background`` (its ``method``). Each notebook's parameters are its ``parameters``
cell's defaults, updated by the batch's defaults, then by the item. The one step of the
batch's own is the mask it makes (``mask: auto``) or takes (a file), kept as the run's
``mask.png`` for 03 or 04 (``mask_path``).
"""

from __future__ import annotations

import ast
import copy
import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .. import runs
from ..images import check_subject, to_mask, to_rgb
from ..models import load_sam, sha256_file
from ..runs import SPEC, Run, check_params, jsonable
from ..runs.chain import declared, execute_here
from .manifest import METHODS, PROMPTS, Manifest, check_item, read_manifest
from .runner import Jobs, Result, run_jobs

GENERATE, CLICK = "01_generate_subject", "02_click_to_mask"
NO_PROMPT = {"points": [], "box": None, "text_prompt": None, "clicks": None}
# mask="auto" is segment_anything's SamAutomaticMaskGenerator: vit_b unless the item names a SAM
AUTO_SAM = "vit_b"


@functools.cache
def _notebook_defaults(name: str) -> dict:
    """The values notebook ``name``'s ``parameters`` cell assigns (read once per process)."""
    return {k: ast.literal_eval(p["default"]) for k, p in declared(name).items()}


@dataclass
class Plan:
    """One item's work.

    Attributes:
        id: the item's id (its run folder's name).
        notebooks: notebook name -> its checked parameters, in the order they run (the run
            folder not yet among them).
        image: the item's picture (absolute), or ``None`` when the subject is generated.
        mask: ``None`` (notebook 02's prompts make it), ``"auto"``, or a mask file (absolute).
        auto_mask: :func:`sdsam_nb.segment.auto_subject_mask`'s settings for ``mask="auto"``.
        sam_model: the SAM of ``mask="auto"``.
    """

    id: str
    notebooks: dict[str, dict]
    image: Path | None
    mask: str | Path | None
    auto_mask: dict = field(default_factory=dict)
    sam_model: str = AUTO_SAM


def plan_item(item: dict, defaults: dict, base: Path) -> Plan:
    """The :class:`Plan` of ``item`` (a manifest entry, with its ``id``); only the picture's
    header is read.

    Args:
        defaults: the batch's checked defaults (:func:`check_item` with ``defaults=True``,
            paths absolute).
        base: what the item's relative paths are relative to.

    Raises:
        ValueError, FileNotFoundError: one line: a bad key or value, an unreadable picture, a
            missing mask file, or prompts that contradict each other.
    """
    given = check_item(item)
    files = input_files(given, defaults, base)
    image = files.get("image")
    if image is not None and "subject_prompt" in given:
        raise ValueError("give image or subject_prompt, not both")
    if image is None and "subject_prompt" not in given and "subject_prompt" not in defaults:
        raise ValueError("the item needs an image or a subject_prompt")
    if image is not None:  # before a run folder is made for it
        if not _is_file(image, "image"):
            raise FileNotFoundError(f"image: no image file at {str(image)!r}")
        try:
            Image.open(image).close()
        except (OSError, Image.DecompressionBombError) as exc:
            raise ValueError(
                f"image: {str(image)!r} is not an image PIL can read ({exc})"
            ) from None
    # the mask: the item's own prompts or mask, else the defaults', else automatic
    prompts, mask = _mask_source(given)
    if not prompts and mask is None:
        prompts, mask = _mask_source(defaults)
    if not prompts and mask is None:
        mask = "auto"
    if mask not in (None, "auto"):
        mask = files["mask"]
        if not _is_file(mask, "mask"):
            raise FileNotFoundError(f"mask: no mask file at {str(mask)!r}")
    spec = {k: v for k, v in {**defaults, **given}.items() if k in SPEC}
    names = ([GENERATE] if image is None else []) + ([CLICK] if prompts else [])
    names.append(METHODS[given.get("method", defaults.get("method", "inpaint"))])
    notebooks = {}
    for name in names:
        params = copy.deepcopy(_notebook_defaults(name))  # one item's values never reach another
        params.update({k: v for k, v in spec.items() if k in params})
        if name == CLICK:
            params.update({**NO_PROMPT, **prompts})
        if "image_path" in params:
            params["image_path"] = str(image) if image is not None else ""
        notebooks[name] = check_params(**params)
    auto = {**defaults.get("auto_mask", {}), **given.get("auto_mask", {})}
    return Plan(str(item["id"]), notebooks, image, mask, auto, spec.get("sam_model", AUTO_SAM))


def input_files(item: dict, defaults: dict, base: Path) -> dict[str, Path]:
    """The files ``item`` reads, absolute: ``"image"`` and ``"mask"`` (the defaults' when the
    item gives neither a mask nor prompts), each only when there is one; nothing is opened."""
    files = {}
    image = item.get("image")
    if isinstance(image, (str, os.PathLike)) and str(image).strip():
        files["image"] = (base / os.path.expanduser(image)).resolve()
    mask = item.get("mask")
    if mask is None and not _prompts(item):
        mask = defaults.get("mask")  # absolute: run_batch makes it so
    if isinstance(mask, (str, os.PathLike)) and str(mask).strip() and mask != "auto":
        files["mask"] = (base / os.path.expanduser(mask)).resolve()
    return files


def _is_file(path: Path, name: str) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte
        raise ValueError(f"{name}: {str(path)[:200]!r} cannot be a file's path ({exc})") from None


def _prompts(given: dict) -> dict:
    """The prompts of notebook 02 that ``given`` gives (an empty one is none)."""
    return {k: given[k] for k in PROMPTS if given.get(k) not in (None, [], "")}


def _mask_source(given: dict) -> tuple[dict, str | None]:
    prompts = _prompts(given)
    mask = given.get("mask")
    if prompts and mask is not None:
        raise ValueError(
            f"give mask or {' / '.join(prompts)}, not both: mask is a file or 'auto', "
            "the others are notebook 02's prompts"
        )
    if "clicks" in prompts and len(prompts) > 1:
        raise ValueError("clicks replays a recorded session: give it without points, box, text")
    if "text_prompt" in prompts and "box" in prompts:
        raise ValueError("give text_prompt or box, not both: the text prompt finds the box")
    return prompts, mask


def item_spec(item: dict, defaults: dict, base: Path, hashes: dict | None = None) -> dict:
    """What an item's run is made from, as ``run.json`` stores it (compared on resume): the
    item, the batch's defaults, and ``sha256``: the hex sha256 of each file the item reads
    (``None`` when it cannot be read: the item fails when it runs). ``hashes`` (path -> hash)
    keeps each file's hash for the other items that read it."""
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


class Items(Jobs):
    """A manifest's items as the runner's jobs, with the batch's checked ``defaults``."""

    key, unit = "batch", "item"

    def __init__(self, manifest: Manifest, defaults: dict):
        self.manifest, self.defaults = manifest, defaults
        self.items = {item["id"]: item for item in manifest.items}
        hashes = {}
        specs = {
            i: item_spec(item, defaults, manifest.base, hashes) for i, item in self.items.items()
        }
        super().__init__(list(self.items), specs)

    def prepare(self, name: str) -> Plan:
        return plan_item(self.items[name], self.defaults, self.manifest.base)

    def entry(self, name: str) -> dict:
        return {"id": name, "manifest": self.manifest.source}

    def execute(self, name: str, run: Run, plan: Plan) -> None:
        for notebook, params in plan.notebooks.items():
            params = {**params, "run_dir": str(run.path)}
            if "progress" in params:  # the notebooks that load SD declare it
                params["progress"] = False  # the batch shows its own
            if plan.mask is not None and notebook in METHODS.values():
                params["mask_path"] = str(_keep_mask(run, params["image_path"], plan))
            execute_here(notebook, check_params(**params), quiet=True)


def _keep_mask(run: Run, image_path: str, plan: Plan) -> Path:
    """Keep the mask the batch makes (``mask: auto``) or takes (a file) in ``run`` as
    ``mask.png``, with how it was made (``mask_made_by``); returns its path."""
    if image_path:
        subject = to_rgb(image_path, name="image_path")
    else:  # generated by 01, which ran before
        subject = to_rgb(run.file("subject"), name="subject")
    if plan.mask == "auto":
        from ..segment import auto_subject_mask

        with run.step("load_sam"):
            predictor = load_sam(plan.sam_model)
        run.log_loaded("sam", predictor, plan.sam_model)
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
    return run.save_mask("mask", mask)


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
