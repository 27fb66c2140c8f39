"""Batches: many subjects headless, each into its own run folder, models loaded once, resumable.

``sdsam-nb batch MANIFEST -o OUT`` (or :func:`run_batch`) runs each item of a manifest
(:mod:`.manifest`: CSV, YAML, JSON Lines, or a folder of pictures with a ``prompt.txt``)
through the notebooks' steps into ``OUT/<id>/``, a run folder ``sdsam-nb replay`` replays,
and lists them in ``OUT/index.csv``.

=============  ==============================================================================
module         holds
=============  ==============================================================================
``manifest``   :func:`read_manifest`, the item keys and their checks (:func:`check_item`)
``plan``       an item -> the notebooks it runs and their parameters (:class:`Plan`)
``execute``    one item: its notebooks run in this process, into its run folder
``index``      ``index.csv`` / ``index.parquet``: one row per item (point), :class:`Result`
``folders``    the run folders a batch or sweep owns: their state, moving aside, refusals
``jobs``       :class:`Jobs`: one item or point into its run folder, its index row
``runner``     :func:`run_jobs`: the loop, resume, the progress bar, here or on Ray
``ray_pool``   the jobs on a Ray actor pool
``item``       :func:`run_batch`: a manifest's items as jobs
``sweep``      :func:`run_sweep`: one notebook over a grid of parameters, its points as jobs
=============  ==============================================================================
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
