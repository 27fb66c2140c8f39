"""Batch manifests (docs/batches.md): a batch's items, read from CSV (a cell is read as YAML
1.2 unless its parameter takes the text as it is; an empty cell is no value), YAML, JSON Lines
or a folder of pictures (one item per picture, the background prompt in its ``prompt.txt``).

Reading checks the whole manifest (its form, the ids, the limits); each item is checked when
the batch reaches it (:func:`check_item`), so one bad item fails alone.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runs import SPEC, check_params, check_plain, load_yaml
from ..runs.params import unknown_name
from ..validate import short_repr

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
MAX_BYTES = 64 << 20  # a manifest file's size at most (64 MiB)
MAX_ITEMS = 100_000  # items in one manifest at most


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


def read_manifest(
    source: str | os.PathLike | list, *, base: str | os.PathLike | None = None
) -> Manifest:
    """Read a batch's items; returns a :class:`Manifest`.

    Args:
        source: a ``.csv``, ``.yaml`` / ``.yml`` (a list of mappings), ``.jsonl`` /
            ``.ndjson`` file (UTF-8, at most :data:`MAX_BYTES`), a folder of pictures with a
            ``prompt.txt``, or a list of dicts; 1 to :data:`MAX_ITEMS` items.
        base: what relative paths are relative to; default: the manifest's folder (the
            current directory for a list).

    Raises:
        FileNotFoundError: no such file or folder, or a folder without ``prompt.txt``.
        ValueError: one line: an unreadable, too large or empty file, no items or too many,
            an item that is not a mapping, a bad or repeated id (the message says which row).
    """
    if isinstance(source, list):
        _count(len(source), "manifest")
        for n, item in enumerate(source, 1):
            check_plain(item, name=f"item {n}")
        items, folder, where = _numbered(source, "item"), Path.cwd(), None
    else:
        path = Path(os.path.expanduser(source))
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
            items = readers[suffix](path, _text(path))
    _count(len(items), f"manifest {Path(where).name}" if where else "manifest")
    _check_ids(items, where or "the items")
    base = Path(os.path.expanduser(base)).resolve() if base else folder
    return Manifest(items, base, where)


def _text(path: Path) -> str:
    """A manifest file's text: UTF-8 (a byte-order mark is dropped), at most :data:`MAX_BYTES`."""
    try:
        if not path.is_file():
            raise ValueError(f"manifest {path.name} is not a file: give a file or a folder")
        if path.stat().st_size > MAX_BYTES:
            raise ValueError(
                f"manifest {path.name} is larger than {MAX_BYTES >> 20} MiB: split it into "
                "several batches"
            )
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"manifest {path.name} is not UTF-8 text (at byte {exc.start}): save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ValueError(f"manifest {path.name}: cannot read it ({exc.strerror})") from None


def _count(n: int, what: str) -> None:
    """Refuse ``n`` items (of manifest ``what``): none, or more than :data:`MAX_ITEMS`."""
    if n == 0:
        raise ValueError(f"{what} has no items: give at least one")
    if n > MAX_ITEMS:
        raise ValueError(f"{what} has more than {MAX_ITEMS:,} items: split it into several batches")


def _numbered(items: list, what: str) -> list[dict]:
    out = []
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise ValueError(
                f"{what} {n} must be a mapping of keys to values, got {short_repr(item)}"
            )
        item = dict(item)
        if item.get("id") is None or item.get("id") == "":
            item["id"] = str(n)
        out.append(item)
    return out


def _yaml(path: Path, text: str) -> list[dict]:
    data = load_yaml(text, name=f"manifest {path.name}")
    if data is None or data == []:
        raise ValueError(
            f"manifest {path.name} has no items: write a list of items (- image: a.png)"
        )
    if not isinstance(data, list):
        raise ValueError(f"manifest {path.name} must hold a list of items (- id: ...)")
    return _numbered(data, "item")


def _jsonl(path: Path, text: str) -> list[dict]:
    items = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"manifest {path.name} line {n}"
        try:
            item = json.loads(line)
        except RecursionError:
            raise ValueError(f"{where} is nested too deeply: flatten it") from None
        except ValueError as exc:  # not JSON, or an integer of thousands of digits
            raise ValueError(f"{where}: not JSON ({_first_line(exc)})") from None
        check_plain(item, name=where)
        items.append(item)
        _count(len(items), f"manifest {path.name}")
    if not items:
        raise ValueError(f"manifest {path.name} has no items: write one JSON object per line")
    return _numbered(items, "item")


def _csv(path: Path, text: str) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    items = []
    try:
        for row in reader:
            if None in row:
                raise ValueError(
                    f"manifest {path.name} row {len(items) + 1}: more cells than column names"
                )
            items.append(
                {k.strip(): _cell(k.strip(), v) for k, v in row.items() if v and v.strip()}
            )
            _count(len(items), f"manifest {path.name}")
    except csv.Error as exc:
        where = f"manifest {path.name} line {reader.reader.line_num}"
        if "field larger than field limit" in str(exc):
            raise ValueError(
                f"{where}: a cell is longer than {csv.field_size_limit():,} characters: "
                'shorten it, or close the quote (") that runs on to the end'
            ) from None
        raise ValueError(f"{where}: not CSV ({_first_line(exc)})") from None
    if not items:
        raise ValueError(
            f"manifest {path.name} has no items: write a header row of keys (id,image,...) "
            "and one row per item"
        )
    return _numbered(items, "row")


def _cell(name: str, text: str) -> Any:
    """A CSV cell's value: the text itself where the parameter takes it so, else its YAML
    (1.2: ``010`` is 10, ``1:00`` stays text)."""
    text = text.strip()
    if name in ("id", "image", "mask", "method"):
        return text
    if name in SPEC and SPEC[name].check(text):
        return text
    try:
        return load_yaml(text, name=name)
    except ValueError:
        return text  # the item's check says what is wrong with it


def _folder(path: Path) -> list[dict]:
    prompt = path / "prompt.txt"
    if not prompt.is_file():
        raise FileNotFoundError(
            f"manifest folder {str(path)!r} has no prompt.txt (the background prompt)"
        )
    text = _text(prompt).strip()
    if not text:
        raise ValueError(f"{prompt} is empty: write the background prompt in it")
    pictures = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in PICTURES)
    if not pictures:
        raise ValueError(f"manifest folder {str(path)!r} holds no pictures ({', '.join(PICTURES)})")
    return [{"id": p.stem, "image": p.name, "background_prompt": text} for p in pictures]


def _check_ids(items: list[dict], where: str) -> None:
    seen = {}
    for n, item in enumerate(items, 1):
        raw = item["id"]
        # text or a number (of at most 100 digits), written as the folder's name
        number = isinstance(raw, (int, float)) and not isinstance(raw, bool)
        if not (isinstance(raw, str) or number) or (isinstance(raw, int) and abs(raw) >= 10**100):
            raise ValueError(
                f"{where}: item {n} has id {short_repr(raw)}: an id is text or a number that names "
                "its folder"
            )
        rid = item["id"] = str(raw)
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
                f"{where}: item {n} has id {short_repr(rid)}, which cannot name a folder: use "
                "letters, digits, spaces, '_', '-' and '.' (not first), at most 100 characters"
            )
        if rid in seen:
            raise ValueError(f"{where}: items {seen[rid]} and {n} have the same id {rid!r}")
        seen[rid] = n


def check_item(item: dict, *, defaults: bool = False) -> dict:
    """``item``'s keys and values checked; returns them with list / dict text parsed.

    An item's keys: ``id``, ``image`` (a path) or ``subject_prompt``, notebook 02's prompts
    (:data:`PROMPTS`) or ``mask`` (a file, white = subject, or ``"auto"``), ``auto_mask``
    (:data:`AUTO_SETTINGS`), ``method`` (:data:`METHODS`) and any notebook parameter
    (:data:`sdsam_nb.runs.SPEC`, checked by :func:`sdsam_nb.runs.check_params`). With
    ``defaults=True`` the dict is a batch's defaults (``-p`` / ``-f``), without ``id`` and
    ``image``.

    Raises:
        ValueError: one line naming the key: an unknown name (with the close matches), a
            parameter the batch sets itself, or a value that is not what it must be.
    """
    out = {}
    for name, value in item.items():
        if not isinstance(name, str):
            raise ValueError(
                f"parameter names are text, got {short_repr(name)}: write it as a name"
            )
        if name in SET_BY_BATCH:
            raise ValueError(f"parameter {name} is not for a batch item: {SET_BY_BATCH[name]}")
        if name in ("id", "image") and defaults:
            raise ValueError(f"{name} belongs to each item, not to the batch's defaults")
        if name in ITEM_KEYS:
            out[name] = _check_own(name, value)
        elif name in SPEC:
            out.update(check_params(**{name: value}))
        else:
            raise unknown_name(name, [*SPEC, *ITEM_KEYS])
    return out


def _check_own(name: str, value: Any) -> Any:
    if name == "id":
        return value
    if name in ("image", "mask"):
        text = str(value) if isinstance(value, (str, os.PathLike)) else ""
        if not text.strip() or "\0" in text:
            what = "a picture's path" if name == "image" else "'auto' or a mask file's path"
            raise ValueError(f"{name} must be {what}, got {short_repr(value)}")
        return value
    if name == "method":
        if not isinstance(value, str) or value not in METHODS:
            raise ValueError(f"method must be 'inpaint' or 'composite', got {short_repr(value)}")
        return value
    # auto_mask
    if isinstance(value, str):
        value = load_yaml(value, name="auto_mask")
    if not isinstance(value, dict):
        raise ValueError(
            f"auto_mask must be a mapping of {', '.join(AUTO_SETTINGS)}, got {short_repr(value)}"
        )
    for key in value:
        if key not in AUTO_SETTINGS:
            raise unknown_name(key, AUTO_SETTINGS, "auto_mask: unknown setting")
    return dict(value)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]
