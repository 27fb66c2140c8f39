"""Disk caches: image embeddings and generated pictures, kept between runs and processes
(docs/caches.md). Which lookups a call made: :mod:`sdsam_nb.usage`.

The names below load on first use (PEP 562): importing :mod:`.keys` or :mod:`.store` alone,
as the run records do, does not import torch (:mod:`.embeddings` does).
"""

from importlib import import_module as _import_module
from importlib.util import find_spec as _find_spec

# where each public name is defined (".." : the kit's own sdsam_nb.usage)
_DEFINED_IN = {
    "DEFAULT_GB": ".store",
    "DiskCache": ".store",
    "cache_gb": ".store",
    "default_store": ".store",
    "results_dir": ".store",
    "embed": ".embeddings",
    "picture": ".generations",
    "recorded": "..usage",
    "summary": "..usage",
}

__all__ = list(_DEFINED_IN)


def __getattr__(name: str):
    if name not in _DEFINED_IN:  # a submodule (caching.store...)
        if name.startswith("_") or _find_spec(f"{__name__}.{name}") is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return _import_module(f"{__name__}.{name}")
    value = getattr(_import_module(_DEFINED_IN[name], __name__), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
