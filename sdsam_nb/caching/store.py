"""A size-capped folder of cached values, shared safely by any number of processes
(docs/caches.md).

``entries/<key>.<kind>`` holds the magic bytes, the payload's sha256 and the payload, written
in ``tmp/`` and moved into place (``os.replace``), so a reader sees a whole entry or none; a
read checks the sha256 (a damaged entry is deleted: a miss). A read or a write sets the entry's
modification time; after each write, under the file lock ``.lock``, the least recently used
entries are deleted until the cap holds.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading
import time
from pathlib import Path

from filelock import FileLock

from ..models.cache import cache_dir
from ..validate import check_flag, is_finite, is_int

DEFAULT_GB = 5.0  # the disk caches' default cap, in GB
ENV_DIR = "SDSAM_RESULTS_CACHE"
ENV_GB = "SDSAM_CACHE_GB"
_MAX_GB = 1e9  # an exabyte: any larger cap is a typo (and 1e300 GB would overflow int)

_MAGIC = b"SDSAMC1\n"
_HEADER = len(_MAGIC) + 32  # magic + sha256 digest
_KEY = re.compile(r"^[0-9a-f]{16,128}$")
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_STALE_TMP_S = 3600  # a temporary file this old belongs to a writer that died
_FIX = f"point ${ENV_DIR} at a folder you can write, or set ${ENV_GB}=0 to turn the caches off"

_clock_lock = threading.Lock()
_last_ns = 0


def _now_ns() -> int:
    """Wall-clock nanoseconds, strictly increasing within this process (two accesses in a row
    are ordered even where the clock is coarse)."""
    global _last_ns
    with _clock_lock:
        _last_ns = max(time.time_ns(), _last_ns + 1)
        return _last_ns


class DiskCache:
    """A folder of ``key -> bytes`` entries with a size cap (least recently used out first).

    Args:
        root: the folder (created on the first write, never on a read).
        max_bytes: the cap on the entries' total size in bytes, an integer >= 0; 0 stores
            nothing.

    Keys are lowercase hex digests (16-128 characters); ``kind`` is a short lowercase word
    (``"embedding"``, ``"picture"``), the entry's file suffix: one folder holds every kind
    under one cap.

    Raises:
        ValueError: a bad argument, or (from any method) a folder that cannot be used.
    """

    def __init__(self, root: str | os.PathLike, max_bytes: int):
        if not isinstance(root, (str, os.PathLike)) or not str(root) or "\0" in str(root):
            raise ValueError(f"root must be a folder path, not {root!r}")
        if not is_int(max_bytes) or max_bytes < 0:
            raise ValueError(f"max_bytes must be an integer >= 0, got {max_bytes!r}")
        self.root = Path(root).expanduser()
        self.max_bytes = int(max_bytes)
        self.entries = self.root / "entries"
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"root {str(self.root)!r} is a file, not a folder: {_FIX}")

    def __repr__(self) -> str:
        return f"DiskCache({str(self.root)!r}, max_bytes={self.max_bytes})"

    def path(self, key: str, kind: str) -> Path:
        """Where the entry ``key`` of ``kind`` lives (whether or not it exists)."""
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ValueError(f"key must be a lowercase hex digest, got {key!r}")
        if not isinstance(kind, str) or not _KIND.fullmatch(kind):
            raise ValueError(f"kind must be a short lowercase word, got {kind!r}")
        return self.entries / f"{key}.{kind}"

    def get(self, key: str, kind: str) -> bytes | None:
        """The payload stored under ``key``, or ``None`` (absent, evicted or damaged); a hit
        marks the entry as just used."""
        path = self.path(key, kind)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None  # absent (or a folder in an entry's place, or root is not a folder)
        except OSError as exc:
            raise self._unusable(exc) from None
        payload = data[_HEADER:]
        if data[:_HEADER] != _MAGIC + hashlib.sha256(payload).digest():
            path.unlink(missing_ok=True)
            return None
        now = _now_ns()
        try:
            os.utime(path, ns=(now, now))
        except FileNotFoundError:  # evicted by another process meanwhile: the bytes are read
            pass
        return payload

    def put(self, key: str, kind: str, payload: bytes) -> bool:
        """Store ``payload`` under ``key`` (replacing what was there), then evict beyond the
        cap. Returns whether it was stored (an entry larger than the cap is not)."""
        path = self.path(key, kind)
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise ValueError(f"payload must be bytes, not {type(payload).__name__}")
        payload = bytes(payload)
        if _HEADER + len(payload) > self.max_bytes:
            return False
        tmp = self.root / "tmp" / f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}"
        try:
            tmp.parent.mkdir(parents=True, exist_ok=True)
            self.entries.mkdir(parents=True, exist_ok=True)
            try:
                with open(tmp, "wb") as f:
                    f.write(_MAGIC + hashlib.sha256(payload).digest() + payload)
                    f.flush()
                    os.fsync(f.fileno())
                now = _now_ns()
                os.utime(tmp, ns=(now, now))
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        except OSError as exc:
            raise self._unusable(exc) from None
        self.evict()
        return True

    def _unusable(self, exc: OSError) -> ValueError:
        reason = exc.strerror or type(exc).__name__
        return ValueError(f"the cache folder {str(self.root)!r} cannot be used ({reason}): {_FIX}")

    def evict(self) -> None:
        """Delete the least recently used entries until the total is at most the cap, and the
        temporary files of writers that died."""
        if not self.entries.is_dir():
            return
        try:
            with FileLock(str(self.root / ".lock"), timeout=120):
                listed = self._listing()
                total = sum(size for _, _, size in listed)
                for _, name, size in listed:
                    if total <= self.max_bytes:
                        break
                    (self.entries / name).unlink(missing_ok=True)
                    total -= size
                cutoff, tmp = time.time() - _STALE_TMP_S, self.root / "tmp"
                for entry in os.scandir(tmp) if tmp.is_dir() else ():
                    try:
                        if entry.stat().st_mtime < cutoff:
                            os.unlink(entry.path)
                    except FileNotFoundError:
                        pass
        except OSError as exc:
            raise self._unusable(exc) from None

    def _listing(self) -> list[tuple[int, str, int]]:
        """``(modified ns, file name, bytes)`` of each entry, least recently used first."""
        if not self.entries.is_dir():
            return []
        found = []
        for entry in os.scandir(self.entries):
            try:
                st = entry.stat()
            except FileNotFoundError:  # evicted by another process meanwhile
                continue
            found.append((st.st_mtime_ns, entry.name, st.st_size))
        return sorted(found)

    def size(self) -> int:
        """The entries' total size in bytes."""
        return sum(size for _, _, size in self._listing())

    def keys(self, kind: str | None = None) -> list[str]:
        """The keys stored (of ``kind``, or all), least recently used first."""
        names = [name.partition(".") for _, name, _ in self._listing()]
        return [key for key, _, suffix in names if kind is None or suffix == kind]


def cache_gb() -> float:
    """The cap in GB: ``$SDSAM_CACHE_GB`` if set, else :data:`DEFAULT_GB`.

    Raises:
        ValueError: ``$SDSAM_CACHE_GB`` is not a number from 0 to 1e9 (the message names it).
    """
    text = os.environ.get(ENV_GB, "").strip()
    if not text:
        return DEFAULT_GB
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not is_finite(value) or not 0 <= value <= _MAX_GB:
        raise ValueError(
            f"{ENV_GB}={text!r} must be a number of GB from 0 to {_MAX_GB:g} (0 turns the disk "
            "caches off)"
        )
    return value


def results_dir() -> Path:
    """The disk caches' folder: ``$SDSAM_RESULTS_CACHE`` if set, else
    ``<sdsam_nb.cache_dir()>/results``."""
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR]).expanduser()
    return cache_dir() / "results"


def default_store() -> DiskCache | None:
    """The store of the embedding and picture caches, from the settings; ``None`` when
    ``$SDSAM_CACHE_GB`` is 0 (off)."""
    gb = cache_gb()
    return DiskCache(results_dir(), int(gb * 1e9)) if gb else None


def open_store(cache: bool, store: DiskCache | None = None) -> tuple[DiskCache | None, str]:
    """``(store, "")``: the store a cached call uses (``store``, else :func:`default_store`);
    or ``(None, why not)``: ``cache=False``, or ``$SDSAM_CACHE_GB`` is 0.

    Raises:
        ValueError: ``cache`` is not True or False, or a bad setting (:func:`cache_gb`).
    """
    if not check_flag(cache, "cache"):
        return None, "cache=False"
    store = store if store is not None else default_store()
    return store, "" if store is not None else f"{ENV_GB}=0"
