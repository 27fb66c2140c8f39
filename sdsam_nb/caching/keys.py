"""What a cache key is made of: a digest of plain fields, the identity of a model's weights
and the versions of the libraries that compute with them."""

from __future__ import annotations

import functools
import hashlib
import json
import weakref
from importlib import metadata
from typing import Any

import numpy as np

from ..models.identity import model_info

# the fields of models.identity.model_info that say which weights a model holds; without one
# of them (a model built in memory, a hub id whose cached commit is unknown) nothing is cached
_FINGERPRINTS = ("checksum", "sha256", "commit")
_IDENTITY: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def digest(fields: dict) -> str:
    """sha256 hex of ``fields`` as canonical JSON (sorted keys).

    Raises:
        TypeError: a value JSON cannot hold as it is (a tensor, an image...): such a field
            must be reduced to a digest or to plain values first.
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
    (:func:`sdsam_nb.models.identity.model_info` without ``requested``): its id and hub commit,
    folder checksum or checkpoint sha256, family, type and revision; ``None`` when the kit
    cannot tell (such a model is never cached). Computed once per model object: weights
    changed in memory after loading keep the identity of what they were loaded from.
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
def _distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


@functools.cache
def version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (``None`` if it is not installed)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def library_versions(obj: Any, *always: str) -> dict[str, str | None]:
    """Versions of the distributions that provide ``obj``'s class (e.g. ``segment-anything``
    for a ``segment_anything`` model, ``transformers`` for a transformers one), of
    ``always``, of torch and of this kit."""
    top = type(obj).__module__.split(".")[0]
    names = set(_distributions().get(top, [])) | set(always) | {"torch", "sdsam-nb"}
    return {name: version(name) for name in sorted(names)}
