"""Disk caches: image embeddings and generated pictures, kept between runs and processes
(docs/caches.md). Which lookups a call made: :mod:`sdsam_nb.usage`.

The names below load on first use (PEP 562): importing :mod:`.keys` or :mod:`.store` alone,
as the run records do, does not import torch (:mod:`.embeddings` does).
"""

from ..lazy import lazy_names

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


__getattr__, __dir__ = lazy_names(__name__, _DEFINED_IN, __all__)
