"""Cache keys: a digest of plain fields, among them the identity of a model's weights and the
versions of the libraries that compute with them."""

from __future__ import annotations

import functools
import hashlib
import json
import weakref
from importlib import metadata
from typing import Any

import numpy as np

from ..models.identity import model_info

FORMAT = 1  # of every key and payload; a change here makes every old entry a miss
# the fields of model_info that say which weights a model holds; without one of them (a model
# built in memory, a hub id whose cached commit is unknown) nothing is cached
_FINGERPRINTS = ("checksum", "sha256", "commit")
_IDENTITY: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cache_key(
    kind: str, model: Any, fields: dict, *libraries: str, unplain: str
) -> tuple[str | None, str]:
    """``(key, "")`` of an entry of ``kind`` that ``model`` computes from ``fields``, with the
    model's identity (:func:`model_identity`) and the versions of ``libraries`` and of
    ``model``'s own (:func:`library_versions`); ``(None, why)`` when it cannot be cached: the
    identity is unknown, or ``fields`` are not plain values (why: ``unplain``)."""
    identity = model_identity(model)
    if identity is None:
        return None, "model identity unknown"
    fields = {"what": kind, "format": FORMAT, "model": identity, **fields}
    fields["libraries"] = library_versions(model, *libraries)
    try:
        return digest(fields), ""
    except TypeError:
        return None, unplain


def digest(fields: dict) -> str:
    """sha256 hex of ``fields`` as canonical JSON (sorted keys).

    Raises:
        TypeError: a value JSON cannot hold as it is (a tensor, an image...).
    """
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def array_digest(array: np.ndarray) -> dict:
    """``{"shape", "dtype", "sha256"}`` of an array's bytes (C order)."""
    array = np.ascontiguousarray(array)
    return {
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "sha256": hashlib.sha256(array.tobytes()).hexdigest(),
    }


def model_identity(model: Any) -> dict | None:
    """What identifies ``model``'s weights, as ``run.json`` records it
    (:func:`sdsam_nb.models.identity.model_info` without ``requested``); ``None`` when the kit
    cannot tell. Computed once per model object: weights changed in memory after loading keep
    the identity of what they were loaded from.
    """
    try:
        known = _IDENTITY.get(model)
    except TypeError:  # not weak-referenceable: computed each time
        known = None
    if known is None:
        info = model_info(model, "")
        info.pop("requested", None)
        known = info if any(info.get(k) for k in _FINGERPRINTS) else {}
        try:
            _IDENTITY[model] = known
        except TypeError:
            pass
    return dict(known) or None


@functools.cache
def _providers(top: str) -> tuple[str, ...]:
    """The distributions that provide top-level package ``top``: the one of that name when it
    is installed (torch, diffusers, segment_anything...: its metadata only), else those that
    ``importlib.metadata.packages_distributions()`` names (it reads every installed
    distribution's file list: 0.3-0.4 s, on a run's first cached step)."""
    try:
        return (metadata.distribution(top).metadata["Name"],)
    except metadata.PackageNotFoundError:
        return tuple(metadata.packages_distributions().get(top, []))


@functools.cache
def version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (``None`` if it is not installed)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def library_versions(obj: Any, *always: str) -> dict[str, str | None]:
    """Versions of the distributions that provide ``obj``'s class (e.g. ``segment-anything``
    for a ``segment_anything`` model), of ``always``, of torch and of this kit."""
    top = type(obj).__module__.split(".")[0]
    names = set(_providers(top)) | set(always) | {"torch", "sdsam-nb"}
    return {name: version(name) for name in sorted(names)}
