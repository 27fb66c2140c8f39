"""Run records: one folder per run under ``outputs/``, with a ``run.json`` enough to replay it.

A run folder holds the pictures, the mask, the clicks, the executed notebooks and
``run.json``::

    outputs/20261122-101500-3f9a/
        run.json            each notebook's parameters, models (id + revision or checksum), clicks,
                            package versions, device, the time of each step, the files
        subject.png  mask.png  background-0.png  inpaint-0.png  composite-0.png ...
        01_generate_subject.ipynb ...   (executed notebooks, when run by ``sdsam-nb run``)

Nothing is ever overwritten: a file name already taken gets a numbered sibling
(``mask-1.png``) and ``run.json`` points to the newest under the same key. ``run.json``
itself is rewritten atomically (temporary file + rename) after every change.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import secrets
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .loaders import SCHEDULERS, sha256_file

RUN_JSON = "run.json"
PACKAGES = (
    "sdsam-nb",
    "torch",
    "diffusers",
    "transformers",
    "segment-anything",
    "numpy",
    "pillow",
    "papermill",
    "ipycanvas",
)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    """Installed versions of the packages that decide a run's pixels (``None`` = missing)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


def _jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, tuples and paths turned into JSON types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def new_run_id() -> str:
    """``YYYYmmdd-HHMMSS-xxxx``: sortable by time, unique across parallel runs."""
    return datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


class Run:
    """A run folder and its ``run.json`` record. Create with :func:`new_run` or :func:`open_run`."""

    def __init__(self, path: Path, record: dict):
        self.path = Path(path)
        self.record = record
        self.notebook: str | None = None  # set by log_params; prefixes step names

    # ------------------------------------------------------------------ record

    @property
    def id(self) -> str:
        return self.record["run_id"]

    def save(self) -> Path:
        """Write ``run.json`` atomically (a reader never sees half a file)."""
        target = self.path / RUN_JSON
        tmp = target.with_name(f".{RUN_JSON}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(_jsonable(self.record), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, target)
        return target

    def set(self, key: str, value: Any) -> None:
        """Record ``value`` under ``key`` (JSON-safe) and save."""
        self.record[key] = _jsonable(value)
        self.save()

    def log_params(self, notebook: str, params: dict) -> None:
        """Record the parameters ``notebook`` ran with and the device it ran on, under
        ``notebooks[notebook]``.

        Kept per notebook: notebooks may give the same name different defaults (03 and 04
        have their own ``background_prompt``), and a replay passes each its own.
        """
        from .loaders import device_report

        self.notebook = notebook
        entry = {"params": _jsonable(params), "started": _now(), "device": device_report()}
        self.record.setdefault("notebooks", {})[notebook] = entry
        self.save()

    def log_model(self, role: str, info: dict) -> None:
        """Record a model (id, revision or checksum) under ``models[role]``."""
        self.record.setdefault("models", {})[role] = _jsonable(info)
        self.save()

    @contextmanager
    def step(self, name: str):
        """Time a step: ``with run.step("inpaint"): ...`` records its seconds in ``steps``,
        under ``<notebook>/<name>`` once :meth:`log_params` has named the notebook."""
        start = time.perf_counter()
        entry = {"started": _now()}
        try:
            yield entry
        except BaseException:
            entry["failed"] = True
            raise
        finally:
            entry["seconds"] = round(time.perf_counter() - start, 3)
            key = f"{self.notebook}/{name}" if self.notebook else name
            self.record.setdefault("steps", {})[key] = _jsonable(entry)
            self.save()

    # ------------------------------------------------------------------ files

    def _free_name(self, filename: str) -> Path:
        target = self.path / filename
        stem, suffix = target.stem, target.suffix
        i = 1
        while target.exists():
            target = self.path / f"{stem}-{i}{suffix}"
            i += 1
        return target

    def _add_file(self, key: str, filename: str, write) -> Path:
        target = self._free_name(filename)
        tmp = target.with_name(f".{target.name}.tmp")
        write(tmp)
        os.replace(tmp, target)
        self.record.setdefault("files", {})[key] = target.name
        self.save()
        return target

    def save_image(self, key: str, image: Image.Image, filename: str | None = None) -> Path:
        """Save ``image`` as PNG under ``key`` (``filename`` defaults to ``<key>.png``)."""
        return self._add_file(key, filename or f"{key}.png", lambda p: image.save(p, format="PNG"))

    def save_mask(self, key: str, mask: np.ndarray, filename: str | None = None) -> Path:
        """Save an ``HxW bool`` mask as a 0/255 ``L`` PNG (white = subject)."""
        img = Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255, mode="L")
        return self.save_image(key, img, filename)

    def save_json(self, key: str, data: Any, filename: str | None = None) -> Path:
        text = json.dumps(_jsonable(data), indent=2) + "\n"
        return self._add_file(
            key, filename or f"{key}.json", lambda p: p.write_text(text, encoding="utf-8")
        )

    def file(self, key: str) -> Path | None:
        """Path of the newest file saved under ``key``, or ``None``."""
        name = self.record.get("files", {}).get(key)
        return self.path / name if name else None

    def _existing(self, key: str, what_to_do: str) -> Path:
        path = self.file(key)
        if path is None or not path.is_file():
            raise FileNotFoundError(f"run {self.id} has no {key!r} yet ({self.path}): {what_to_do}")
        return path

    def load_image(self, key: str) -> Image.Image:
        path = self._existing(
            key, "run the notebook that makes it first, or give the file as a parameter"
        )
        with Image.open(path) as img:
            return img.convert("RGB")

    def load_mask(self, key: str = "mask") -> np.ndarray:
        path = self._existing(key, "run 02_click_to_mask first, or give points/box as parameters")
        with Image.open(path) as img:
            return np.asarray(img.convert("L")) > 127

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"


def new_run(root: str | os.PathLike = "outputs", run_id: str | None = None) -> Run:
    """Create a new, empty run folder under ``root``. Never reuses an existing folder."""
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    rid = run_id or new_run_id()
    path = root / rid
    try:
        path.mkdir()
    except FileExistsError:
        raise ValueError(f"run_id={rid!r} exists already in {root}: pick another name") from None
    run = Run(
        path,
        {
            "version": 1,
            "run_id": rid,
            "created": _now(),
            "packages": package_versions(),
            "notebooks": {},
            "files": {},
            "steps": {},
        },
    )
    run.save()
    return run


def open_run(path: str | os.PathLike) -> Run:
    """Open an existing run folder (its ``run.json`` must exist)."""
    path = Path(path).expanduser()
    record_file = path / RUN_JSON
    if not record_file.is_file():
        raise FileNotFoundError(f"{str(path)!r} is not a run folder (no {RUN_JSON})")
    return Run(path, json.loads(record_file.read_text(encoding="utf-8")))


def open_or_new_run(run_dir: str | os.PathLike | None, root: str | os.PathLike = "outputs") -> Run:
    """The notebooks' entry: continue ``run_dir`` if given (chained), else start a new run."""
    if run_dir:
        return open_run(run_dir)
    return new_run(root)


# ---------------------------------------------------------------------- model fingerprints


def model_info(obj, requested: str) -> dict:
    """What ``run.json`` records about a loaded model so that a replay can check it.

    * a hub id: the id and the commit of the cached snapshot that was loaded;
    * a local folder or ``"tiny"``: a sha256 over its file names and sizes plus the contents
      of its small files (configs, tokenizer, the tiny weights);
    * a SAM checkpoint: its file name and sha256 (official names carry the sha256 prefix).
    """
    info: dict[str, Any] = {"requested": requested}
    source = getattr(obj, "sdsam_source", None) or getattr(
        getattr(obj, "model", None), "sdsam_source", {}
    )
    info.update(source)
    folder = getattr(getattr(obj, "config", None), "_name_or_path", None)
    if folder and Path(folder).is_dir():
        info["checksum"] = folder_checksum(Path(folder))
        commit = _snapshot_commit(Path(folder))
        if commit:
            info["commit"] = commit
    elif folder:
        info["commit"] = _hub_commit(folder, source.get("revision"))
    if "checkpoint_path" in source:
        path = Path(info.pop("checkpoint_path"))
        prefix = re.search(r"_([0-9a-f]{6,64})\.pth$", path.name)
        # official names carry their sha256 prefix, checked at load: no need to hash 2.5 GB again
        info["sha256"] = prefix.group(1) if prefix else sha256_file(path)
    return info


def folder_checksum(folder: Path, small: int = 16 << 20) -> str:
    """sha256 over (relative path, size) of every file, and the bytes of files < ``small``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        size = path.stat().st_size
        digest.update(f"{rel}\0{size}\0".encode())
        if size < small:
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _snapshot_commit(folder: Path) -> str | None:
    parts = folder.resolve().parts
    if "snapshots" in parts[:-1]:
        return parts[parts.index("snapshots") + 1]
    return None


def _hub_commit(repo_id: str, revision: str | None) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo_id, "model_index.json", revision=revision)
    except Exception:  # an unusual cache layout only costs us the commit field
        return None
    return _snapshot_commit(Path(hit).parent) if isinstance(hit, str) else None


# ---------------------------------------------------------------------- notebook parameters

# name -> (check, what it must be). Notebooks pass their parameters through check_params so
# that a wrong value fails at the top of the executed notebook with a message naming it.
_SPEC: dict[str, tuple[Any, str]] = {
    "seed": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "steps": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "n_variations": (lambda v: _is_int(v) and 1 <= v <= 16, "an integer from 1 to 16"),
    "pick": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "width": (lambda v: _is_int(v) and v >= 64 and v % 8 == 0, "a multiple of 8, >= 64"),
    "height": (lambda v: _is_int(v) and v >= 64 and v % 8 == 0, "a multiple of 8, >= 64"),
    "size": (lambda v: _is_int(v) and v >= 64 and v % 8 == 0, "a multiple of 8, >= 64"),
    "grow": (lambda v: _is_int(v) and v >= 0, "an integer >= 0 (pixels)"),
    "feather": (lambda v: _is_int(v) and v >= 0, "an integer >= 0 (pixels)"),
    "min_island": (lambda v: _is_int(v) and v >= 0, "an integer >= 0 (pixels)"),
    "guidance": (lambda v: _is_num(v) and v >= 0, "a number >= 0"),
    "strength": (lambda v: _is_num(v) and 0 < v <= 1, "a number in (0, 1]"),
    "scale": (lambda v: _is_num(v) and v > 0, "a number > 0"),
    "candidate": (lambda v: v is None or (_is_int(v) and v >= 0), "None or an integer >= 0"),
    "points": (lambda v: _is_points(v), "a list of [x, y] or [x, y, label] (label 1 or 0)"),
    "box": (
        lambda v: (
            v is None or (isinstance(v, (list, tuple)) and len(v) == 4 and all(map(_is_num, v)))
        ),
        "None or [x0, y0, x1, y1]",
    ),
    "clicks": (lambda v: v is None or isinstance(v, dict), "None or a dict from to_dict()"),
    "position": (
        lambda v: (
            v in ("center", "bottom")
            or (isinstance(v, (list, tuple)) and len(v) == 2 and all(map(_is_num, v)))
        ),
        "'center', 'bottom' or [x, y]",
    ),
    "keep_subject": (lambda v: isinstance(v, bool), "True or False"),
    "harmonize": (lambda v: isinstance(v, bool), "True or False"),
    "use_drive": (lambda v: isinstance(v, bool), "True or False"),
    "progress": (lambda v: isinstance(v, bool), "True or False"),
}
for _name in ("sd_model", "sam_model", "subject_prompt", "background_prompt", "output_root"):
    _SPEC[_name] = (lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string")
for _name in (
    "subject_negative",
    "background_negative",
    "image_path",
    "mask_path",
    "run_dir",
    "inpaint_model",
    "text_prompt",
):
    _SPEC[_name] = (lambda v: v is None or isinstance(v, str), "a string or None")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and np.isfinite(v)


def _is_points(v) -> bool:
    if not isinstance(v, (list, tuple)):
        return False
    for p in v:
        if not isinstance(p, (list, tuple)) or len(p) not in (2, 3):
            return False
        if not all(map(_is_num, p[:2])) or (len(p) == 3 and p[2] not in (0, 1)):
            return False
    return True


def check_params(**params) -> dict:
    """Check notebook parameters by name; return them unchanged.

    Raises:
        ValueError: the first parameter that is not what it must be, e.g.
            ``parameter steps must be an integer >= 1, got 'ten' (str)``.
    """
    for name, value in params.items():
        if name in _SPEC:
            ok, what = _SPEC[name]
            if not ok(value):
                raise ValueError(
                    f"parameter {name} must be {what}, got {value!r} ({type(value).__name__})"
                )
    return params


_SPEC["fill_holes"] = (lambda v: isinstance(v, bool), "True or False")
_SPEC["scheduler"] = (
    lambda v: v is None or v in SCHEDULERS,
    "None (the model's own) or one of " + ", ".join(repr(n) for n in SCHEDULERS),
)
_SPEC["detector_model"] = _SPEC["sd_model"]
for _name in ("box_threshold", "text_threshold"):
    _SPEC[_name] = (lambda v: _is_num(v) and 0 <= v <= 1, "a number from 0 to 1")


# ---------------------------------------------------------------------- notebook inputs

DATA = Path(__file__).resolve().parent.parent / "data"
SAMPLE_SUBJECT = DATA / "sample_subject.png"
SAMPLE_MASK = DATA / "sample_mask.png"


def load_subject(run: Run, image_path: str | None = None) -> Image.Image:
    """The subject picture for a notebook step, as ``RGB``; the rule, in order:

    1. ``image_path`` if given (your own photo; converted by :func:`sdsam_nb.to_rgb`), copied
       into the run as ``input`` so that a replay does not depend on the original file;
    2. the run's ``subject`` (made by ``01_generate_subject``);
    3. the sample picture ``data/sample_subject.png`` (so each notebook also runs alone).
    """
    from .images import to_rgb

    if image_path:
        image = to_rgb(image_path, name="image_path")
        run.save_image("input", image)
        run.set("input", {"path": str(image_path), "sha256": sha256_file(image_path)})
        return image
    if run.file("subject") is not None:
        return run.load_image("subject")
    return to_rgb(SAMPLE_SUBJECT, name="sample subject")


def load_subject_mask(run: Run, image: Image.Image, mask_path: str | None = None) -> np.ndarray:
    """The subject mask (``HxW bool``) for ``image``: ``mask_path``, else the run's ``mask``
    (made by ``02_click_to_mask``), else the sample mask when ``image`` is the sample picture.
    """
    from .images import to_mask

    if mask_path:
        with Image.open(mask_path) as m:
            return to_mask(m, image.size, name="mask_path")
    if run.file("mask") is not None:
        return to_mask(run.load_mask("mask"), image.size, name="run mask")
    with Image.open(SAMPLE_MASK) as m:
        sample = to_mask(m, name="sample mask")
    if sample.shape == (image.size[1], image.size[0]):
        return sample
    raise FileNotFoundError(
        f"run {run.id} has no mask: run 02_click_to_mask first, or set mask_path"
    )


def drive_root(output_root: str = "sdsam-nb/outputs") -> str:
    """On Colab, mount Google Drive and return a run root on it (``MyDrive/<output_root>``)."""
    from .loaders import in_colab

    if not in_colab():
        raise ValueError("use_drive=True needs Google Colab; elsewhere set output_root instead")
    from google.colab import drive  # type: ignore[import-not-found]

    drive.mount("/content/drive")
    return str(Path("/content/drive/MyDrive") / output_root.lstrip("./"))
