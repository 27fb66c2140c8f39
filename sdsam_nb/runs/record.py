"""A run folder and its ``run.json``, shared safely by any number of writers (notebooks side
by side, processes, a batch).

* Every change is a read-merge-write of the file on disk under an inter-process lock
  (``.run.json.lock``): each writer keeps the keys it wrote; on the same key the later wins.
* ``run.json`` is replaced atomically (a unique temporary file + rename).
* A picture is written under a temporary name and claimed under the lock with a hard link
  that fails if the name exists: a name already taken gets a numbered sibling
  (``mask-1.png``) and ``files`` points at the newest.
* Each execution of a notebook is one entry of ``executions`` (parameters, device, status, the
  files, steps, models, values and calls it wrote); ``notebooks``, ``files``, ``steps`` and
  ``models`` at the top hold the newest of each, which is what a replay re-runs.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import secrets
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from filelock import FileLock
from PIL import Image

from ..caching.keys import version
from ..models import sha256_file
from ..models.identity import model_info
from ..recording import deactivate

RUN_JSON = "run.json"
LOCK = ".run.json.lock"
RECORD_VERSION = 2
# the packages that decide a run's pixels
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
T = TypeVar("T")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    """Installed versions of ``names`` (``None`` = missing) and of Python."""
    return {**{name: version(name) for name in names}, "python": platform.python_version()}


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, tuples and paths turned into JSON types."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def _unique_tmp(folder: Path, name: str) -> Path:
    """A hidden temporary name in ``folder`` that no other writer uses."""
    return folder / f".{name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"


def replace_atomically(target: Path, write_to: Callable[[Path], object]) -> None:
    """Write ``target`` atomically: ``write_to(tmp)`` writes a temporary file beside it, which
    then replaces ``target`` (it is removed if writing fails)."""
    tmp = _unique_tmp(target.parent, target.name)
    try:
        write_to(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_synced(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8 and flush it to the disk."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


class Run:
    """A run folder and its ``run.json``. Create with :func:`new_run` or :func:`open_run`.

    Several ``Run`` objects (in one process or many) may hold the same folder: none keeps a
    private copy of the record; each change is merged into the file on disk under a lock.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = FileLock(str(self.path / LOCK), timeout=120)
        self.notebook: str | None = None  # set by log_params; prefixes step names
        self.execution: int | None = None  # this handle's entry in ``executions``

    # ------------------------------------------------------------------ the record

    @property
    def record(self) -> dict:
        """The record as it is on disk now (every writer's changes included).

        Raises:
            ValueError: a damaged ``run.json`` (:func:`read_record`).
        """
        return read_record(self.path)

    @property
    def id(self) -> str:
        return self.record["run_id"]

    def _write(self, record: dict) -> None:
        text = json.dumps(jsonable(record), indent=2) + "\n"
        replace_atomically(self.path / RUN_JSON, lambda tmp: write_synced(tmp, text))

    def update(self, change: Callable[[dict], T]) -> T:
        """Apply ``change(record)`` (which edits the dict in place and may return a value,
        returned here) to the record on disk, under the run's lock, and save it."""
        with self._lock:
            record = self.record
            out = change(record)
            self._write(record)
        return out

    def _exec_entry(self, record: dict) -> dict | None:
        if self.execution is None:
            return None
        return record.setdefault("executions", [])[self.execution]

    def _log(self, section: str | None, key: str, value: Any, top: str | None = None) -> None:
        """Record ``value`` (JSON-safe) as ``key`` in ``section`` of the record (as ``top``
        there, when given; at the top for ``section=None``) and of this execution (its
        ``values`` for ``section=None``)."""
        value = jsonable(value)

        def change(record):
            (record.setdefault(section, {}) if section else record)[top or key] = value
            entry = self._exec_entry(record)
            if entry is not None:
                entry.setdefault(section or "values", {})[key] = value

        self.update(change)

    def set(self, key: str, value: Any) -> None:
        """Record ``value`` under ``key`` (JSON-safe), also in this execution's ``values``."""
        self._log(None, key, value)

    def log_params(self, notebook: str, params: dict) -> int:
        """Start an execution of ``notebook``: append an entry (its parameters, device, status
        ``"running"``) to ``executions`` and make it the newest under ``notebooks[notebook]``,
        which a replay re-runs. Returns the execution's number."""
        from ..models import device_report

        entry = {
            "notebook": notebook,
            "params": jsonable(params),
            "started": _now(),
            "device": device_report(),
            "status": "running",
        }

        def change(record):
            executions = record.setdefault("executions", [])
            entry["id"] = len(executions)
            executions.append(entry)
            record.setdefault("notebooks", {})[notebook] = {
                "params": entry["params"],
                "started": entry["started"],
                "device": entry["device"],
                "execution": entry["id"],
            }
            return entry["id"]

        self.notebook = notebook
        self.execution = self.update(change)
        return self.execution

    def _set_status(self, status: str, error: str | None = None) -> None:
        if self.execution is None:
            return

        def change(record):
            entry = self._exec_entry(record)
            entry["status"] = status
            entry["finished"] = _now()
            if error is not None:
                entry.setdefault("errors", []).append(error)

        self.update(change)

    def add_call(self, entry: dict) -> None:
        """Append a recorded call (:mod:`sdsam_nb.recording`) to this execution's ``calls``
        (to the run's own ``calls`` before any execution)."""
        entry = jsonable(entry)

        def change(record):
            where = self._exec_entry(record)
            (record if where is None else where).setdefault("calls", []).append(entry)

        self.update(change)

    def finish(self) -> None:
        """Mark this execution ``"done"``; if this run is the active run
        (:func:`sdsam_nb.start`), it no longer is."""
        self._set_status("done")
        deactivate(self)

    def fail(self, error: str) -> None:
        """Mark this execution ``"failed"`` with a one-line ``error``."""
        self._set_status("failed", error)

    @property
    def status(self) -> str:
        """``"failed"`` if the newest execution of any notebook failed, ``"running"`` if one
        has not finished, ``"empty"`` before any execution, else ``"done"`` (also a version 1
        record, which has no executions)."""
        executions = self.record.get("executions")
        if executions is None:
            return "done"
        if not executions:
            return "empty"
        newest = {entry["notebook"]: entry.get("status", "done") for entry in executions}
        if "failed" in newest.values():
            return "failed"
        return "running" if "running" in newest.values() else "done"

    def log_loaded(self, role: str, model, requested: str) -> None:
        """Record the loaded ``model`` under ``models[role]``: what was ``requested`` and
        what was loaded (:func:`sdsam_nb.runs.model_info`: commit or checksum)."""
        self._log("models", role, model_info(model, requested))

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
            top = f"{self.notebook}/{name}" if self.notebook else name
            self._log("steps", name, entry, top=top)

    # ------------------------------------------------------------------ files

    def _claim(self, tmp: Path, filename: str) -> Path:
        """Give the finished file ``tmp`` the first free name of ``filename``'s family, under
        the lock. ``os.link`` fails if the name exists, so even a writer that does not take
        the lock cannot be overwritten (without hard links, the lock alone does it)."""
        stem, suffix = Path(filename).stem, Path(filename).suffix
        i = 0
        while True:
            target = self.path / (filename if i == 0 else f"{stem}-{i}{suffix}")
            i += 1
            if target.exists():
                continue
            try:
                os.link(tmp, target)
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                os.replace(tmp, target)
            tmp.unlink(missing_ok=True)
            return target

    def _add_file(self, key: str, filename: str, write: Callable[[Path], None]) -> Path:
        if Path(filename).name != filename or filename.startswith("."):
            raise ValueError(f"filename must be a plain file name, got {filename!r}")
        tmp = _unique_tmp(self.path, filename)
        try:
            write(tmp)
            digest = sha256_file(tmp)

            def change(record):
                target = self._claim(tmp, filename)
                record.setdefault("files", {})[key] = target.name
                record.setdefault("sha256", {})[target.name] = digest  # replay checks it
                entry = self._exec_entry(record)
                if entry is not None:
                    entry.setdefault("files", {})[key] = target.name
                return target

            return self.update(change)
        finally:
            tmp.unlink(missing_ok=True)

    def reserve(self, filename: str) -> Path:
        """Claim a free name for a file written later by someone else (an executed notebook
        papermill writes): an empty file is created under the first free name."""
        tmp = _unique_tmp(self.path, filename)
        tmp.touch()
        try:
            with self._lock:
                return self._claim(tmp, filename)
        finally:
            tmp.unlink(missing_ok=True)

    def save_image(self, key: str, image: Image.Image, filename: str | None = None) -> Path:
        """Save ``image`` as PNG under ``key`` (``filename`` defaults to ``<key>.png``)."""
        return self._add_file(key, filename or f"{key}.png", lambda p: image.save(p, format="PNG"))

    def save_mask(self, key: str, mask: np.ndarray, filename: str | None = None) -> Path:
        """Save an ``HxW bool`` mask as a 0/255 ``L`` PNG (white = subject)."""
        img = Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255, mode="L")
        return self.save_image(key, img, filename)

    def save_json(self, key: str, data: Any, filename: str | None = None) -> Path:
        text = json.dumps(jsonable(data), indent=2) + "\n"
        return self._add_file(key, filename or f"{key}.json", lambda p: write_synced(p, text))

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


def read_record(folder: str | os.PathLike) -> dict:
    """``folder``'s ``run.json``, checked to be the shape the kit writes.

    Raises:
        FileNotFoundError: no ``run.json`` in ``folder``.
        ValueError: one line: not JSON (truncated, empty), not a mapping, or a key of the
            wrong type (``notebooks``, ``executions``, ``files``, a notebook's ``params``).
    """
    path = Path(folder) / RUN_JSON
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        text = None
    record = None
    if text is not None:
        try:
            record = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            pass
    problem = _record_problem(record) if text is not None else "it is not UTF-8 text"
    if problem:
        raise ValueError(
            f"{path} is damaged ({problem}): restore it from a copy; the pictures in the "
            "folder are untouched, but this run cannot be continued or replayed as it is"
        )
    if record.get("version", RECORD_VERSION) > RECORD_VERSION:
        raise ValueError(
            f"{path} was written by a newer sdsam-nb (record version {record['version']}; "
            f"this one reads up to {RECORD_VERSION}): upgrade sdsam-nb to continue or replay it"
        )
    return record


def _record_problem(record: Any) -> str | None:
    """What is wrong with a loaded ``run.json`` (``None``: nothing)."""
    if record is None:
        return "not JSON: empty or cut short"
    if not isinstance(record, dict):
        return f"a {type(record).__name__}, not a mapping"
    version = record.get("version", RECORD_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return f"version is {version!r}, not a record version"
    if not isinstance(record.get("run_id", ""), str):
        return "run_id is not text"
    for key in ("notebooks", "files", "steps", "models", "sha256"):
        if not isinstance(record.get(key, {}), dict):
            return f"{key} is not a mapping"
    for name, entry in record.get("notebooks", {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("params"), dict):
            return f"notebooks.{name} has no params mapping"
    for name in record.get("files", {}).values():
        if not isinstance(name, str):
            return "files holds a name that is not text"
        if Path(name).name != name or name in ("", ".", "..") or "\0" in name:
            return f"files holds {name!r}, not a file name in the run folder"
    if not all(isinstance(v, str) for v in record.get("sha256", {}).values()):
        return "sha256 holds a value that is not text"
    executions = record.get("executions", [])
    if not isinstance(executions, list) or not all(
        isinstance(e, dict) and isinstance(e.get("notebook"), str) for e in executions
    ):
        return "executions is not a list of entries with a notebook name"
    if record.get("clicks") is not None and not isinstance(record["clicks"], dict):
        return "clicks is not a mapping"
    return None


def ensure_folder(folder: str | os.PathLike, *, name: str = "output folder") -> Path:
    """``folder`` (absolute; relative to the current directory), created if needed, and
    writable.

    Raises:
        ValueError: one line naming ``name``: ``folder`` is a file, lies under a file, or
            cannot be created or written (read-only, no permission).
    """
    path = Path(folder).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name} {path} is a file, not a folder: give a folder")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"{name} {path} lies under {parent}, which is a file: give a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(
            f"{name} {path} cannot be created ({exc.strerror}): give another folder"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {path} is not writable: give a folder you can write to")
    return path


def new_run(
    root: str | os.PathLike = "outputs", run_id: str | None = None, *, made: bool = False
) -> Run:
    """Create a new, empty run folder under ``root``, named ``run_id`` or
    ``YYYYmmdd-HHMMSS-xxxx`` (sortable by time, unique across parallel runs). Never reuses a
    run folder.

    ``made``: the folder ``root/run_id`` exists already, made by the caller (a batch makes it
    with its marker in it, atomically), without a ``run.json``: the run starts in it.

    Raises:
        ValueError: ``root`` is not a folder that can be written (see :func:`ensure_folder`),
            or ``run_id`` exists there already (with ``made``: holds a ``run.json``).
    """
    if not isinstance(root, (str, os.PathLike)) or not str(root):
        raise ValueError(f"output_root must be a folder path, not {root!r}")
    root = ensure_folder(root, name="output_root")  # relative: to the current directory
    rid = run_id or f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    path = root / rid
    try:
        path.mkdir(exist_ok=made)
        if made and (path / RUN_JSON).exists():
            raise FileExistsError(path)
    except FileExistsError:
        raise ValueError(f"run_id={rid!r} exists already in {root}: pick another name") from None
    except OSError as exc:
        raise ValueError(f"output_root {root}: cannot create {rid} ({exc.strerror})") from None
    run = Run(path)
    with run._lock:
        run._write(
            {
                "version": RECORD_VERSION,
                "run_id": rid,
                "created": _now(),
                "packages": package_versions(),
                "notebooks": {},
                "executions": [],
                "files": {},
                "steps": {},
            }
        )
    return run


def open_run(path: str | os.PathLike) -> Run:
    """Open an existing run folder.

    Raises:
        FileNotFoundError: no ``run.json`` in ``path``.
        ValueError: a damaged ``run.json`` (:func:`read_record`).
    """
    path = Path(path).expanduser()
    if not (path / RUN_JSON).is_file():
        raise FileNotFoundError(f"{str(path)!r} is not a run folder (no {RUN_JSON})")
    read_record(path)
    return Run(path)
