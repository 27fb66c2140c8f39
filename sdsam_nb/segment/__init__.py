"""Segmentation backends behind one interface (:class:`PromptSegmenter`), and their table."""

from . import sam  # noqa: F401  (registers the segment_anything backend)
from .base import BACKENDS, Prediction, PromptSegmenter, as_segmenter, register
from .sam import SamBackend, SamEmbedding

__all__ = [
    "BACKENDS",
    "Prediction",
    "PromptSegmenter",
    "SamBackend",
    "SamEmbedding",
    "as_segmenter",
    "register",
]
