"""Batches and sweeps: many runs headless, each into its own run folder, models loaded once,
resumable (docs/batches.md).

``manifest`` reads a batch's items, ``item`` plans and runs each (:func:`run_batch`), ``sweep``
runs a notebook over a grid; both go through ``runner`` (resume, the index; on Ray:
``ray_pool``).
"""

from .item import Plan, plan_item, run_batch
from .manifest import Manifest, check_item, read_manifest
from .runner import Result

__all__ = ["Manifest", "Plan", "Result", "check_item", "plan_item", "read_manifest", "run_batch"]
