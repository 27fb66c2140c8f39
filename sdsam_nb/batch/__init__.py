"""Batches and sweeps: many runs headless, each into its own run folder, models loaded once,
resumable (docs/batches.md).

``manifest`` reads the items; ``plan`` says which notebooks an item runs with which parameters;
``item`` (:func:`run_batch`) and ``sweep`` (:func:`~sdsam_nb.batch.sweep.run_sweep`) make them
jobs for the one runner (``runner``, on Ray: ``ray_pool``), which owns the run folders
(``folders``) and writes ``index.csv`` (``index``).
"""

from .index import Result
from .item import run_batch
from .manifest import Manifest, check_item, read_manifest
from .plan import Plan, plan_item

__all__ = [
    "Result",
    "Manifest",
    "Plan",
    "check_item",
    "plan_item",
    "read_manifest",
    "run_batch",
]
