"""Batches and sweeps: many runs headless, each into its own run folder, models loaded once,
resumable (docs/batches.md).

``manifest`` reads the items; ``item`` (:func:`run_batch`: each item's plan and its run) and
``sweep`` (:func:`~sdsam_nb.batch.sweep.run_sweep`) make them jobs for the one runner
(``runner``: the index and the result; on Ray: ``ray_pool``), which owns the run folders
(``folders``).
"""

from .item import Plan, plan_item, run_batch
from .manifest import Manifest, check_item, read_manifest
from .runner import Result

__all__ = [
    "Result",
    "Manifest",
    "Plan",
    "check_item",
    "plan_item",
    "read_manifest",
    "run_batch",
]
