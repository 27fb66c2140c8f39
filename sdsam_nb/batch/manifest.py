"""Batch manifests: the items of a batch, read from CSV, YAML, JSON Lines or a folder of pictures.

One item is one dict (a CSV row, a YAML list entry, a JSON line):

=================  ==========================================================================
key                what
=================  ==========================================================================
``id``             its run folder's name, ``<out>/<id>/`` (default: the item's 1-based row
                   number; in a folder of pictures, the picture's file stem)
``image``          a picture, relative to the manifest; or no ``image`` and a
``subject_prompt`` (with its ``seed``): the subject is generated (notebook 01)
``points``,        the mask from notebook 02's prompts (image pixels); or
``box``,
``text_prompt``,
``clicks``
``mask``           a mask file (white = subject, relative to the manifest), or ``auto``: SAM's
                   automatic masks and :func:`sdsam_nb.segment.pick_subject` (the default when
                   an item gives no mask at all)
``auto_mask``      settings of :func:`sdsam_nb.segment.auto_subject_mask` for ``mask: auto``
                   (``points_per_side``, ``pred_iou_thresh``, ``stability_score_thresh``...)
``method``         ``inpaint`` (notebook 03, the default) or ``composite`` (notebook 04)
any other          a notebook parameter of :data:`sdsam_nb.runs.SPEC` (``background_prompt``,
                   ``seed``, ``n_variations``, ``inpaint_model``, ``edge``...), checked as the
                   notebooks check it
=================  ==========================================================================

A folder of pictures is one item per picture (its file stem the id), with the background prompt
in the folder's ``prompt.txt``. In a CSV file an empty cell is no value, and a cell is read as YAML
(``[[120, 80, 1]]``, ``3``, ``true``) unless the parameter takes it as text as it is (prompts,
``"16:9"``). Reading checks only what concerns the whole manifest (its form, the ids); each
item's keys and values are checked when the batch reaches it (:func:`check_item`), so one bad
item fails alone.
"""

from __future__ import annotations

import csv
import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..runs import SPEC, check_params

# the keys an item has besides the notebook parameters
ITEM_KEYS = ("id", "image", "mask", "method", "auto_mask")
# notebook 03 or 04, by the item's method
METHODS = {"inpaint": "03_inpaint_background", "composite": "04_composite_background"}
# notebook 02's prompts: an item's mask comes from these, or from ``mask``
PROMPTS = ("points", "box", "text_prompt", "clicks")
# what auto_subject_mask takes
AUTO_SETTINGS = (
    "points_per_side",
    "points_per_batch",
    "pred_iou_thresh",
    "stability_score_thresh",
    "min_frac",
    "max_frac",
)
# notebook parameters a batch sets itself: an item gives them otherwise, or not at all
SET_BY_BATCH = {
    "image_path": "give the picture as image (relative to the manifest)",
    "mask_path": "give the mask file as mask (relative to the manifest)",
    "run_dir": "the batch makes <out>/<id>/",
    "output_root": "the batch's output folder is -o / out_dir",
    "use_drive": "give an -o folder on the drive instead",
    "progress": "the batch shows its own progress bar",
}
PICTURES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
RESERVED_IDS = ("index.csv", "index.parquet")
MOVED_ASIDE = (".incomplete-", ".previous-")  # what resume appends to a folder it moves aside


@dataclass
class Manifest:
    """A batch's items.

    Attributes:
        items: one dict per item, each with a unique ``id`` (a valid folder name).
        base: the folder that relative ``image`` / ``mask`` paths are relative to.
        source: where the items were read from (``None`` for a list given in Python).
    """

    items: list[dict]
    base: Path
    source: str | None = None


def read_manifest(source: str | os.PathLike | list, *, base: str | os.PathLike | None = None):
    """Read a batch's items; returns a :class:`Manifest`.

    Args:
        source: a ``.csv``, ``.yaml`` / ``.yml`` (a list of mappings), ``.jsonl`` /
            ``.ndjson`` file, a folder of pictures with a ``prompt.txt``, or a list of dicts.
        base: what relative paths are relative to; default: the manifest's folder (the
            current directory for a list).

    Raises:
        FileNotFoundError: no such file or folder, or a folder without ``prompt.txt``.
        ValueError: an unreadable file, an item that is not a mapping, a bad or repeated id
            (the message says which row).
    """
    if isinstance(source, list):
        items, folder, where = _numbered(source, "item"), Path.cwd(), None
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"manifest: no file or folder {str(path)!r}")
        folder, where = (path if path.is_dir() else path.parent).resolve(), str(path)
        if path.is_dir():
            items = _folder(path)
        else:
            suffix = path.suffix.lower()
            readers = {".csv": _csv, ".yaml": _yaml, ".yml": _yaml, ".jsonl": _jsonl}
            readers[".ndjson"] = _jsonl
            if suffix not in readers:
                raise ValueError(
                    f"manifest {path.name}: not .csv, .yaml, .yml, .jsonl or a folder of pictures"
                )
            items = readers[suffix](path)
    _check_ids(items, where or "the items")
    return Manifest(items, Path(base).expanduser().resolve() if base else folder, where)


def _numbered(items, what: str) -> list[dict]:
    out = []
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise ValueError(f"{what} {n} must be a mapping of keys to values, got {item!r}")
        item = dict(item)
        if item.get("id") is None or item.get("id") == "":
            item["id"] = str(n)
        out.append(item)
    return out


def _yaml(path: Path) -> list[dict]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"manifest {path.name}: {_first_line(exc)}") from None
    if not isinstance(data, list):
        raise ValueError(f"manifest {path.name} must hold a list of items (- id: ...)")
    return _numbered(data, "item")


def _jsonl(path: Path) -> list[dict]:
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"manifest {path.name} line {n}: not JSON ({exc})") from None
    return _numbered(items, "item")


def _csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    items = []
    for n, row in enumerate(rows, 1):
        if None in row:
            raise ValueError(f"manifest {path.name} row {n}: more cells than column names")
        items.append({k.strip(): _cell(k.strip(), v) for k, v in row.items() if v and v.strip()})
    return _numbered(items, "row")


def _cell(name: str, text: str) -> Any:
    """A CSV cell's value: the text itself where the parameter takes it so, else its YAML."""
    text = text.strip()
    if name in ("id", "image", "mask", "method"):
        return text
    if name in SPEC and SPEC[name].check(text):
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text  # the item's check says what is wrong with it


def _folder(path: Path) -> list[dict]:
    prompt = path / "prompt.txt"
    if not prompt.is_file():
        raise FileNotFoundError(
            f"manifest folder {str(path)!r} has no prompt.txt (the background prompt)"
        )
    text = prompt.read_text(encoding="utf-8").strip()
    if not text:
        raise ValueError(f"{prompt} is empty: write the background prompt in it")
    pictures = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in PICTURES)
    if not pictures:
        raise ValueError(f"manifest folder {str(path)!r} holds no pictures ({', '.join(PICTURES)})")
    return [{"id": p.stem, "image": p.name, "background_prompt": text} for p in pictures]


def _check_ids(items: list[dict], where: str) -> None:
    seen = {}
    for n, item in enumerate(items, 1):
        rid = item["id"] = str(item["id"])
        bad = (
            not rid
            or rid != rid.strip()
            or rid[0] in ".-"
            or any(c in rid for c in '/\\:*?"<>|')
            or any(ord(c) < 32 for c in rid)
            or len(rid) > 100
            or rid in RESERVED_IDS
            or any(m in rid for m in MOVED_ASIDE)
        )
        if bad:
            raise ValueError(
                f"{where}: item {n} has id {rid!r}, which cannot name a folder: use letters, "
                "digits, spaces, '_', '-' and '.' (not first), at most 100 characters"
            )
        if rid in seen:
            raise ValueError(f"{where}: items {seen[rid]} and {n} have the same id {rid!r}")
        seen[rid] = n


def _unknown(name: str) -> ValueError:
    close = difflib.get_close_matches(name, [*SPEC, *ITEM_KEYS], n=3)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return ValueError(f"unknown parameter {name!r}{hint}")


def check_item(item: dict, *, defaults: bool = False) -> dict:
    """``item``'s keys and values checked; returns them with list / dict text parsed.

    The notebook parameters go through :func:`sdsam_nb.runs.check_params`. With
    ``defaults=True`` the dict is a batch's defaults (``-p`` / ``-f``), where ``id`` and
    ``image`` have no place.

    Raises:
        ValueError: one line naming the key: an unknown name (with the close matches), a
            parameter the batch sets itself, or a value that is not what it must be.
    """
    out = {}
    for name, value in item.items():
        if name in SET_BY_BATCH:
            raise ValueError(f"parameter {name} is not for a batch item: {SET_BY_BATCH[name]}")
        if name in ("id", "image") and defaults:
            raise ValueError(f"{name} belongs to each item, not to the batch's defaults")
        if name in ITEM_KEYS:
            out[name] = _check_own(name, value)
        elif name in SPEC:
            out.update(check_params(**{name: value}))
        else:
            raise _unknown(name)
    return out


def _check_own(name: str, value: Any) -> Any:
    if name == "id":
        return value
    if name == "image":
        if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
            raise ValueError(f"image must be a picture's path, got {value!r}")
        return value
    if name == "mask":
        if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
            raise ValueError(f"mask must be 'auto' or a mask file's path, got {value!r}")
        return value
    if name == "method":
        if value not in METHODS:
            raise ValueError(f"method must be 'inpaint' or 'composite', got {value!r}")
        return value
    # auto_mask
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            pass
    if not isinstance(value, dict):
        raise ValueError(
            f"auto_mask must be a mapping of {', '.join(AUTO_SETTINGS)}, got {value!r}"
        )
    for key in value:
        if key not in AUTO_SETTINGS:
            close = difflib.get_close_matches(str(key), AUTO_SETTINGS, n=2)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise ValueError(f"auto_mask: unknown setting {key!r}{hint}")
    return dict(value)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]
