"""Disk caches: image embeddings and generated pictures, kept between runs and processes.

=================  ==========================================================================
module             holds
=================  ==========================================================================
``store``          :class:`DiskCache`: a size-capped folder of entries, least recently used
                   out first, safe with many processes; the settings (:func:`default_store`)
``keys``           key digests, the identity of a model's weights, library versions
``embeddings``     :func:`embed`: a segmenter's embedding of a picture, cached (every backend)
``generations``    :func:`picture`: one generated picture, cached by all that decides it
=================  ==========================================================================

Which lookups a call made, for ``run.json``: :mod:`sdsam_nb.usage` (:func:`recorded`).

Settings: ``$SDSAM_RESULTS_CACHE`` (the folder, default ``<sdsam_nb.cache_dir()>/results``),
``$SDSAM_CACHE_GB`` (the cap in GB, default 5; ``0`` turns both caches off); per call,
``cache=False`` (``generate``, ``generate_background``, ``ClickSegmenter``,
``score_results``, ``box_masks``) and the notebooks' ``cache`` parameter.
"""

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
