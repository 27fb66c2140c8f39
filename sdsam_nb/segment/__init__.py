"""Segmentation: one interface for every model (:class:`PromptSegmenter`, :mod:`.base`), its
backends, and what is built on it: clicks (:class:`ClickSegmenter`), the click widget
(:mod:`.widget`, imported on its own: it needs ipywidgets), text masks (:func:`text_mask`) and
the automatic subject mask (:func:`auto_subject_mask`).
"""

from . import sam  # noqa: F401  (registers the segment_anything backend)
from .auto import SubjectResult, auto_subject_mask, pick_subject, subject_scores
from .base import BACKENDS, Prediction, PromptSegmenter, as_segmenter, register
from .clicks import Candidate, ClickSegmenter
from .sam import SamBackend, SamEmbedding
from .text import TextMaskResult, box_masks, find_boxes, load_text_detector, text_mask

__all__ = [
    "BACKENDS",
    "Candidate",
    "ClickSegmenter",
    "Prediction",
    "PromptSegmenter",
    "SamBackend",
    "SamEmbedding",
    "SubjectResult",
    "TextMaskResult",
    "as_segmenter",
    "auto_subject_mask",
    "box_masks",
    "find_boxes",
    "load_text_detector",
    "pick_subject",
    "register",
    "subject_scores",
    "text_mask",
]
