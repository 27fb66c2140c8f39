"""What one batch item runs: which notebooks, each with the parameters that notebook would
record for it.

An item runs up to three notebooks into its run folder, as ``sdsam-nb run`` chains them:
``01_generate_subject`` (a ``subject_prompt`` instead of an ``image``), ``02_click_to_mask``
(``points`` / ``box`` / ``text_prompt`` / ``clicks``), then ``03_inpaint_background`` or
``04_composite_background`` (its ``method``). Each notebook's parameters are its
``parameters`` cell's defaults, updated by the batch's defaults and then by the item (the names
that notebook declares), checked with :func:`sdsam_nb.runs.check_params`.
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

from ..runs import SPEC, check_params, kit_dir
from .manifest import METHODS, PROMPTS, check_item

GENERATE = "01_generate_subject"
CLICK = "02_click_to_mask"
MASK_FILE = "mask.png"  # the mask a batch keeps in a new run folder (mask: auto or a file)
NO_PROMPT = {"points": [], "box": None, "text_prompt": None, "clicks": None}
# automatic masks are segment_anything's (SamAutomaticMaskGenerator): unless the item names a
# SAM, mask="auto" uses vit_b whatever notebook 02's click default is
AUTO_SAM = "vit_b"


@functools.cache
def _notebook_defaults(name: str) -> dict:
    """The values notebook ``name``'s ``parameters`` cell assigns (read once per process)."""
    path = kit_dir("notebooks") / f"{name}.ipynb"
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    source = next(
        "".join(c["source"]) for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])
    )
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                out[target.id] = ast.literal_eval(node.value)
    return out


@dataclass
class Plan:
    """One item's work.

    Attributes:
        id: the item's id (its run folder's name).
        notebooks: notebook name -> its checked parameters, in the order they run (without
            the run folder: :meth:`params_for`).
        image: the item's picture (absolute), or ``None`` when the subject is generated.
        mask: ``None`` (notebook 02's prompts make it), ``"auto"``, or a mask file (absolute).
        auto_mask: :func:`sdsam_nb.segment.auto_subject_mask` settings for ``mask="auto"``.
        sam_model: the SAM model of ``mask="auto"``.
    """

    id: str
    notebooks: dict[str, dict]
    image: Path | None
    mask: str | Path | None
    auto_mask: dict = field(default_factory=dict)
    sam_model: str = AUTO_SAM

    def params_for(self, run_path: Path) -> dict[str, dict]:
        """Each notebook's parameters in run folder ``run_path``, as ``sdsam-nb run`` gives
        them (``run_dir`` that folder, ``progress`` off); 03 / 04 read a mask the batch keeps
        through ``mask_path``."""
        out = {}
        for name, params in self.notebooks.items():
            params = {**params, "run_dir": str(run_path)}
            if "progress" in params:  # the notebooks that load SD declare it
                params["progress"] = False
            if self.mask is not None and name in METHODS.values():
                params["mask_path"] = str(run_path / MASK_FILE)
            out[name] = check_params(**params)
        return out


def plan_item(item: dict, defaults: dict, base: Path) -> Plan:
    """The :class:`Plan` of ``item`` (a manifest entry, with its ``id``).

    ``defaults`` are the batch's checked defaults (:func:`check_item` with ``defaults=True``,
    paths absolute); ``base`` is what the item's relative paths are relative to. Only the
    picture's header is read here.

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
    if image is not None:
        _check_picture(image)  # before a run folder is made for it
    # the mask: the item's own prompts or mask, else the defaults', else automatic
    prompts, mask = _mask_source(given)
    if not prompts and mask is None:
        prompts, mask = _mask_source(defaults)
    if not prompts and mask is None:
        mask = "auto"
    if mask is not None and mask != "auto":
        mask = files["mask"]
        if not _is_file(mask, "mask"):
            raise FileNotFoundError(f"mask: no mask file at {str(mask)!r}")
    method = given.get("method", defaults.get("method", "inpaint"))
    spec = {k: v for k, v in {**defaults, **given}.items() if k in SPEC}
    names = [GENERATE] if image is None else []
    names += [CLICK] if prompts else []
    names.append(METHODS[method])
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
    sam = spec.get("sam_model", AUTO_SAM)
    return Plan(str(item["id"]), notebooks, image, mask, auto, sam)


def input_files(item: dict, defaults: dict, base: Path) -> dict[str, Path]:
    """The files ``item`` reads, as absolute paths: ``"image"`` (its picture) and ``"mask"``
    (its mask file; the defaults' when the item gives neither a mask nor prompts of its own),
    each only when there is one. Nothing is checked or opened here."""
    files = {}
    image = item.get("image")
    if isinstance(image, (str, os.PathLike)) and str(image).strip():
        files["image"] = (base / os.path.expanduser(image)).resolve()
    mask = item.get("mask")
    if mask is None and not any(item.get(k) not in (None, [], "") for k in PROMPTS):
        mask = defaults.get("mask")  # absolute: run_batch makes it so
    if isinstance(mask, (str, os.PathLike)) and str(mask).strip() and mask != "auto":
        files["mask"] = (base / os.path.expanduser(mask)).resolve()
    return files


def _is_file(path: Path, name: str) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte
        raise ValueError(f"{name}: {str(path)[:200]!r} cannot be a file's path ({exc})") from None


def _check_picture(path: Path) -> None:
    """Raise ``FileNotFoundError`` (no file) or ``ValueError`` (not a picture PIL reads, from
    its header)."""
    if not _is_file(path, "image"):
        raise FileNotFoundError(f"image: no image file at {str(path)!r}")
    try:
        with Image.open(path):
            pass
    except (OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"image: {str(path)!r} is not an image PIL can read ({exc})") from None


def _mask_source(given: dict) -> tuple[dict, str | None]:
    prompts = {k: given[k] for k in PROMPTS if given.get(k) not in (None, [], "")}
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
