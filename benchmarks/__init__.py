"""sdsam-nb benchmarks: ``python -m benchmarks [--only NAME] [--device cpu|cuda] [--quick]``.

One module per benchmark (see README.md); :mod:`benchmarks.harness` holds what they share.
"""

from .harness import BENCHMARKS, Context, Row, Section, run_all

__all__ = ["BENCHMARKS", "Context", "Row", "Section", "run_all"]
