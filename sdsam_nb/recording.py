"""The active run (docs/runs.md): what the kit's public functions record by themselves.

:func:`sdsam_nb.start` makes its run the process's active run until ``run.finish()`` (or
another ``start``). While one is active, each outermost call of a function marked
:func:`recorded` appends ``{"call", "args", "returned", "seconds", "cache"}`` to the run's
current execution, under ``calls`` (:func:`describe` says how values are written). Outside a
run nothing is recorded and the functions behave the same.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from . import usage
from .validate import one_line

_lock = threading.Lock()
_active = None  # the Run that sdsam_nb.start() activated, until it finishes
_inside = threading.local()  # depth of recorded calls on this thread: only the outermost records

MAX_ITEMS = 64  # a list longer than this is recorded by its length and first items
_PLAIN = (str, bool, int, float, dict, list, tuple, type(None))  # picture notes worth keeping


def active_run():
    """The active :class:`~sdsam_nb.runs.Run`, or ``None``."""
    return _active


def activate(run) -> None:
    """Make ``run`` the active run (:func:`sdsam_nb.start` does)."""
    global _active
    with _lock:
        _active = run


def deactivate(run=None) -> None:
    """End the active run: any (``run=None``), or only if it is ``run`` (its folder)."""
    global _active
    with _lock:
        if run is None or (_active is not None and _active.path == run.path):
            _active = None


def describe(value: Any) -> Any:
    """``value`` as ``run.json`` records it: JSON types as they are; pictures and arrays of
    more than 64 values by size and the sha256 of their pixels; lists item by item (at most
    :data:`MAX_ITEMS`); other objects (pipelines, predictors) by their class."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Image.Image):
        out = {"image": list(value.size), "mode": value.mode, "sha256": _digest(np.asarray(value))}
        info = {
            k: describe(v)
            for k, v in value.info.items()
            if isinstance(v, _PLAIN) and k != "cache"  # where it came from: in the call's cache
        }
        if info:  # what the kit noted on it: seed, nsfw, the background method, a reframe
            out["info"] = info
        return out
    if isinstance(value, np.ndarray):
        if value.size <= 64 and value.dtype.kind in "biuf":
            return value.tolist()
        return {"array": list(value.shape), "dtype": str(value.dtype), "sha256": _digest(value)}
    if isinstance(value, dict):
        return {str(k): describe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [describe(v) for v in list(value)[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            items.append(f"... {len(value) - MAX_ITEMS} more")
        return items
    return {"object": type(value).__name__}


def _digest(array: np.ndarray) -> str:
    data = np.ascontiguousarray(array)
    header = f"{data.dtype.str}{data.shape}".encode()
    return hashlib.sha256(header + data.tobytes()).hexdigest()


def recorded(name: str, *, model: tuple[str, str] | None = None) -> Callable:
    """Mark a public function: while a run is active, its outermost calls are recorded as
    ``name`` (see the module's text). ``self`` / ``cls`` are left out of the arguments.

    ``model=(role, argument)`` marks a model loader: the model it returns is also recorded
    under ``models[role]`` (``run.log_loaded``: its id, commit or checksum), as the model the
    argument named."""

    def wrap(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def call(*args, **kwargs):
            run = _active
            if run is None or getattr(_inside, "depth", 0):
                return fn(*args, **kwargs)
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError:  # the function's own error, unrecorded
                return fn(*args, **kwargs)
            bound.apply_defaults()
            given = {k: v for k, v in bound.arguments.items() if k not in ("self", "cls")}
            entry = {"call": name, "args": describe(_flatten(given, signature))}
            _inside.depth = 1
            start = time.perf_counter()
            try:
                with usage.recorded() as uses:
                    result = fn(*args, **kwargs)
            except Exception as exc:
                entry["error"] = one_line(exc)
                raise
            else:
                entry["returned"] = describe(result)
                if uses:
                    entry["cache"] = usage.summary(uses)
            finally:
                _inside.depth = 0
                entry["seconds"] = round(time.perf_counter() - start, 3)
                run.add_call(entry)
            if model is not None:
                role, argument = model
                run.log_loaded(role, result, given[argument])
            return result

        return call

    return wrap


def _flatten(arguments: dict, signature: inspect.Signature) -> dict:
    """``**kwargs`` merged into the arguments (a function's extra keywords are its own)."""
    out = {}
    for key, value in arguments.items():
        kind = signature.parameters[key].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        else:
            out[key] = value
    return out
