"""The disk cache of generated pictures (subjects and backgrounds from text; docs/caches.md).

One PNG entry per variation, keyed by all that decides its pixels, so that
``generate(..., seed=s + 2, n=1)`` finds what ``generate(..., seed=s, n=3)[2]`` stored. A
picture the safety checker blacked out is not stored.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import Any

from PIL import Image

from ..usage import use
from .keys import cache_key
from .store import DiskCache, open_store

KIND = "picture"


def picture_key(pipe, *, seed: int, call: Mapping[str, Any], device) -> tuple[str | None, str]:
    """``(key, "")`` of the picture ``pipe(**call)`` makes with generator seed ``seed`` on
    ``device``: the model's identity, the pipeline's class, the scheduler's class and config,
    the call, the seed, dtype, device type, whether a safety checker is present and the library
    versions; or ``(None, why)`` when it cannot be cached."""
    scheduler = pipe.scheduler
    # the settings themselves; diffusers' own bookkeeping ("_use_default_values" is a list
    # made from a set, in another order in each process) is left out
    config = {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")}
    fields = {
        "pipeline": f"{type(pipe).__module__}.{type(pipe).__qualname__}",
        "scheduler": {
            "class": f"{type(scheduler).__module__}.{type(scheduler).__qualname__}",
            "config": config,
        },
        "call": dict(call),
        "seed": int(seed),
        "dtype": str(pipe.dtype),
        "device": device.type,
        "safety_checker": getattr(pipe, "safety_checker", None) is not None,
    }
    unplain = "the call's arguments are not plain values"
    return cache_key(KIND, pipe, fields, "diffusers", "transformers", unplain=unplain)


def _decode(payload: bytes) -> Image.Image | None:
    try:
        with Image.open(io.BytesIO(payload)) as found:
            if found.mode != "RGB":
                return None
            image = found.copy()
    except Exception:  # not a PNG: a miss, made again
        return None
    image.info.clear()
    return image


def picture(
    pipe,
    *,
    seed: int,
    call: Mapping[str, Any],
    device,
    make: Callable[[], Image.Image],
    cache: bool = True,
    store: DiskCache | None = None,
) -> Image.Image:
    """The picture ``make()`` returns for ``pipe(**call)`` with seed ``seed``, taken from the
    disk cache when it holds it, else made and stored.

    ``make`` returns an ``RGB`` picture with ``info["nsfw"]`` set; a flagged one is not
    stored. The picture returned has ``info["cache"]``: ``"hit"``, ``"miss"`` or ``"off"``.
    ``cache=False`` neither reads nor writes the cache.
    """
    store, why = open_store(cache, store)
    key = None
    if store is not None:
        key, why = picture_key(pipe, seed=seed, call=call, device=device)
    if key is not None:
        payload = store.get(key, KIND)
        found = None if payload is None else _decode(payload)
        if found is not None:
            found.info.update(seed=int(seed), nsfw=False, cache="hit")
            use(KIND, key, True, seed=int(seed))
            return found
    image = make()
    if key is not None and image.info.get("nsfw"):
        key, why = None, "blacked out by the safety checker"
    if key is None:
        image.info["cache"] = "off"
        use(KIND, None, False, why, seed=int(seed))
        return image
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    store.put(key, KIND, buffer.getvalue())
    image.info["cache"] = "miss"
    use(KIND, key, False, seed=int(seed))
    return image
