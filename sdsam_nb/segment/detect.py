"""Text detectors: the contract a detector meets, and the one place its output is checked.

A detector is any callable ``(image RGB PIL, text, box_threshold, text_threshold) ->
(boxes Nx4 XYXY image pixels, labels N str, scores N float)``.
:class:`sdsam_nb.models.GroundingDinoDetector` is one (``sdsam_nb.load_grounding_dino()``);
tests plug in others. The click segmenter is given a detector; it never loads one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..validate import check_fraction

Detector = Callable[[Image.Image, str, float, float], tuple[Any, Sequence[str], Sequence[float]]]


def kept(boxes: np.ndarray, scores: Sequence[float], max_boxes: int | None) -> list[int]:
    """Indices of the detections to keep, best score first (ties in the given order): boxes
    (``Nx4`` XYXY) with a positive width and height and a finite score, at most ``max_boxes``
    (``None``: all)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return [
        int(i)
        for i in order
        if boxes[i, 2] > boxes[i, 0] and boxes[i, 3] > boxes[i, 1] and math.isfinite(scores[i])
    ][:max_boxes]


def detections(raw, size: tuple[int, int], max_boxes: int | None):
    """Validate a detector's output; clip boxes to the image, drop empty ones, sort by score."""
    try:
        boxes_raw, labels, scores = raw
    except (TypeError, ValueError):
        raise ValueError(
            f"detector must return (boxes Nx4, labels, scores), got {type(raw).__name__}"
        ) from None
    if isinstance(boxes_raw, torch.Tensor):
        boxes_raw = boxes_raw.detach().float().cpu().numpy()
    boxes = np.asarray(boxes_raw, dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    labels = [str(label) for label in labels]
    scores = [float(s) for s in (scores.tolist() if hasattr(scores, "tolist") else scores)]
    if boxes.ndim != 2 or boxes.shape[1] != 4 or not (len(boxes) == len(labels) == len(scores)):
        raise ValueError(
            f"detector returned boxes of shape {boxes.shape}, {len(labels)} labels and "
            f"{len(scores)} scores: expected Nx4 XYXY boxes with one label and score each"
        )
    w, h = size
    boxes = np.clip(boxes, 0.0, [w, h, w, h])
    keep = kept(boxes, scores, max_boxes)
    return (
        [tuple(float(v) for v in boxes[i]) for i in keep],
        [labels[i] for i in keep],
        [scores[i] for i in keep],
    )


def check_request(
    text: str, box_threshold: float, text_threshold: float, max_boxes: int | None
) -> tuple[float, float]:
    """Check a detection request before any model runs; return the two thresholds."""
    if not isinstance(text, str) or not text.strip(" .\t\n"):
        raise ValueError(f"text must name what to mask, e.g. 'red shoes', not {text!r}")
    box_threshold = check_fraction(box_threshold, "box_threshold")
    text_threshold = check_fraction(text_threshold, "text_threshold")
    if max_boxes is not None and (
        isinstance(max_boxes, bool) or not isinstance(max_boxes, int) or max_boxes < 1
    ):
        raise ValueError(f"max_boxes must be a positive int or None, not {max_boxes!r}")
    return box_threshold, text_threshold


def detect(
    detector: Detector,
    image: Image.Image,
    text: str,
    *,
    box_threshold: float = 0.35,
    text_threshold: float = 0.25,
    max_boxes: int | None = 20,
) -> tuple[list[tuple[float, float, float, float]], list[str], list[float], str]:
    """``detector``'s boxes for ``text`` on the RGB ``image``, checked.

    Returns ``(boxes, labels, scores, source)``: XYXY image-pixel boxes clipped to the image,
    sorted by score (best first), at most ``max_boxes``; ``source`` names the detector.

    Raises:
        ValueError: an empty ``text``, a threshold outside 0..1, a bad ``max_boxes``, a
            ``detector`` that is not callable or returns something malformed.
    """
    box_threshold, text_threshold = check_request(text, box_threshold, text_threshold, max_boxes)
    if not callable(detector):
        raise ValueError(
            "detector must be callable (image, text, box_threshold, text_threshold) -> "
            f"(boxes, labels, scores), e.g. sdsam_nb.load_grounding_dino(), not "
            f"{type(detector).__name__}"
        )
    source = getattr(detector, "source", None) or getattr(detector, "__name__", None)
    source = str(source or repr(detector))
    boxes, labels, scores = detections(
        detector(image, text, box_threshold, text_threshold), image.size, max_boxes
    )
    return boxes, labels, scores, source
