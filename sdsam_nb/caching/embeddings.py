"""The disk cache of image embeddings, for every segmenter backend (docs/caches.md).

An embedding is a dataclass of tensors and plain values (the segmenter interface,
:class:`sdsam_nb.segment.PromptSegmenter`), saved with ``torch.save`` and read back with
``torch.load(weights_only=True)`` onto the model's device, bit for bit.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
from typing import Any

import numpy as np
import torch

from ..usage import use
from .keys import array_digest, cache_key
from .store import DiskCache, open_store

KIND = "embedding"


def _module(segmenter) -> torch.nn.Module | None:
    model = getattr(segmenter, "model", None)
    return model if isinstance(model, torch.nn.Module) else None


def embedding_key(segmenter, image: np.ndarray) -> tuple[str | None, str]:
    """``(key, "")`` of ``segmenter``'s embedding of ``image`` (``HxWx3 uint8``): the pixels,
    the model's identity, the backend, its class and ``info()``, the library versions, the
    device type and the dtype; or ``(None, why)`` when it cannot be cached."""
    model = _module(segmenter)
    if model is None:
        return None, "the segmenter has no torch model"
    param = next(model.parameters(), None)
    fields = {
        "backend": getattr(segmenter, "backend", None),
        "segmenter": f"{type(segmenter).__module__}.{type(segmenter).__qualname__}",
        "info": segmenter.info() if callable(getattr(segmenter, "info", None)) else {},
        "device": None if param is None else param.device.type,
        "dtype": None if param is None else str(param.dtype),
        "image": array_digest(image),
    }
    return cache_key(KIND, model, fields, unplain="the segmenter's info() is not plain values")


def _plain(value) -> bool:
    """Whether ``value`` is tensors and plain values only (what ``weights_only`` loads)."""
    if value is None or isinstance(value, (torch.Tensor, bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(map(_plain, value))
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def encode(embedding) -> bytes | None:
    """``embedding`` as bytes, or ``None`` when it is not a dataclass of tensors and plain
    values."""
    if not dataclasses.is_dataclass(embedding) or isinstance(embedding, type):
        return None
    fields = {f.name: getattr(embedding, f.name) for f in dataclasses.fields(embedding)}
    if not _plain(fields):
        return None
    cls = type(embedding)
    buffer = io.BytesIO()
    torch.save({"class": [cls.__module__, cls.__qualname__], "fields": fields}, buffer)
    return buffer.getvalue()


def decode(payload: bytes, device: torch.device | str | None = None, *, package: str = "sdsam_nb"):
    """The embedding :func:`encode` wrote, its tensors on ``device`` (as saved when ``None``);
    ``None`` when ``payload`` is not one, or names a class outside ``package`` (only the
    backends' own dataclasses are ever imported)."""
    try:
        data = torch.load(io.BytesIO(payload), map_location=device, weights_only=True)
        module, qualname = data["class"]
        if module.split(".")[0] != package:
            return None
        cls = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            return None
        return cls(**data["fields"])
    except Exception:  # an entry of another format or version: a miss, computed again
        return None


def embed(
    segmenter, image: np.ndarray, *, cache: bool = True, store: DiskCache | None = None
) -> tuple[Any, dict]:
    """``segmenter.embed(image)``, read from the disk cache when it holds it.

    Args:
        segmenter: a :class:`~sdsam_nb.segment.PromptSegmenter`.
        image: ``HxWx3 uint8 RGB``.
        cache: ``False`` neither reads nor writes the cache (nor creates its folder).
        store: the cache; default :func:`~sdsam_nb.caching.store.default_store`.

    Returns:
        ``(embedding, use)``: the embedding on the model's device, bit-identical to computing
        it; ``use`` says whether it came from the cache (:mod:`sdsam_nb.usage`).
    """
    store, why = open_store(cache, store)
    key, why = embedding_key(segmenter, image) if store is not None else (None, why)
    if key is None:
        return segmenter.embed(image), use(KIND, None, False, why)
    payload = store.get(key, KIND)
    if payload is not None:
        param = next(_module(segmenter).parameters(), None)
        package = type(segmenter).__module__.split(".")[0]
        found = decode(payload, None if param is None else param.device, package=package)
        if found is not None:
            return found, use(KIND, key, True)
    embedding = segmenter.embed(image)
    payload = encode(embedding)
    if payload is None:
        return embedding, use(KIND, None, False, "the embedding is not a dataclass of tensors")
    store.put(key, KIND, payload)
    return embedding, use(KIND, key, False)
