"""Segmentation: the segmenter interface and its backends (:mod:`.base`, :mod:`.sam`), clicks
(:class:`ClickSegmenter`; the widget, :mod:`.widget`, imports ipywidgets and is imported on its
own), text masks (:func:`text_mask`) and the automatic subject mask (:func:`auto_subject_mask`).
"""

from .auto import SubjectResult, auto_subject_mask, pick_subject, subject_scores
from .base import BACKENDS, Prediction, PromptSegmenter, as_segmenter, register
from .clicks import Candidate, ClickSegmenter
from .sam import SamBackend  # importing it registers the segment_anything backend
from .text import TextMaskResult, box_masks, find_boxes, load_text_detector, text_mask

__all__ = [
    "BACKENDS",
    "Candidate",
    "ClickSegmenter",
    "Prediction",
    "PromptSegmenter",
    "SamBackend",
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
