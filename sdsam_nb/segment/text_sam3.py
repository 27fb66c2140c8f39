"""The SAM 3 method of :func:`sdsam_nb.text_mask`: one model finds every instance of the
phrase and masks it; no box detector, no SAM predictor.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..models.sam3 import Sam3TextSegmenter, load_sam3
from .detect import check_request, kept


def sam3_instances(
    image: Image.Image,
    text: str,
    *,
    detector: Sam3TextSegmenter | None = None,
    predictor=None,
    box_threshold: float = 0.35,
    text_threshold: float = 0.25,
    max_boxes: int | None = 20,
):
    """SAM 3's instances of ``text`` on the RGB ``image``.

    ``detector`` is a :class:`~sdsam_nb.models.sam3.Sam3TextSegmenter`
    (:func:`sdsam_nb.load_sam3`); ``None`` loads ``load_sam3()``. ``box_threshold`` is SAM 3's
    score threshold; ``text_threshold`` is checked but not used.

    Returns:
        ``(boxes, labels, scores, source, masks_for)``: XYXY image-pixel boxes clipped to the
        image (empty ones dropped), best first, at most ``max_boxes``; ``masks_for(used)`` gives
        the ``NxHxW bool`` masks of the boxes at the indices ``used``.

    Raises:
        ValueError: the checks of :func:`sdsam_nb.segment.detect.check_request`, a
            ``predictor`` (SAM 3 makes its own masks) or a ``detector`` that is not SAM 3.
    """
    box_threshold, _ = check_request(text, box_threshold, text_threshold, max_boxes)
    if predictor is not None:
        raise ValueError(
            "predictor is not used with method='sam3' (SAM 3 makes the masks itself): "
            "leave it None, or use method='grounding_dino'"
        )
    if detector is None:
        detector = load_sam3()
    elif not isinstance(detector, Sam3TextSegmenter):
        raise ValueError(
            "detector must be a SAM 3 segmenter from sdsam_nb.load_sam3() with method='sam3', "
            f"not {type(detector).__name__}"
        )
    masks, boxes, scores, labels = detector.segment(image, text, threshold=box_threshold)
    keep = kept(boxes, scores, max_boxes)  # segment() sorted them: kept() keeps that order
    instance_masks = masks[keep]
    return (
        [tuple(float(v) for v in boxes[i]) for i in keep],
        [labels[i] for i in keep],
        [float(scores[i]) for i in keep],
        detector.source,
        lambda used: instance_masks[np.asarray(used, dtype=int)],
    )
