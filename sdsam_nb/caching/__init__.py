"""Disk caches: image embeddings and generated pictures, kept between runs and processes
(docs/caches.md). Which lookups a call made: :mod:`sdsam_nb.usage`."""

from ..usage import recorded, summary
from .embeddings import embed
from .generations import picture
from .store import DEFAULT_GB, DiskCache, cache_gb, default_store, results_dir

__all__ = [
    "DEFAULT_GB",
    "DiskCache",
    "cache_gb",
    "default_store",
    "embed",
    "picture",
    "recorded",
    "results_dir",
    "summary",
]
