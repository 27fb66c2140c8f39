"""Segmentation: one interface for every model (:class:`PromptSegmenter`) and what is built on it.

=============  ==============================================================================
module         holds
=============  ==============================================================================
``base``       the :class:`PromptSegmenter` protocol, :class:`Prediction`, the backend table
``sam``        the segment_anything backend (``SamPredictor``)
``clicks``     :class:`ClickSegmenter`: points, box, undo/redo, candidates, replay
``widget``     :class:`MaskPicker`: the ipycanvas click widget (imported on its own: it
               needs ipywidgets)
``detect``     the text-detector contract and its checks
``text``       :func:`text_mask`, :func:`find_boxes`: phrase -> boxes -> one mask
``auto``       :func:`auto_subject_mask`, :func:`pick_subject`: the subject with no prompt
=============  ==============================================================================
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
