"""Masks from a text phrase ("red shoes"): boxes and a mask per box by the ``method`` of
:data:`TEXT_METHODS` (Grounding DINO's boxes with SAM's masks, or SAM 3's own instances), then
one ``HxW bool`` mask by the ``combine`` rule. Boxes are XYXY in image pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from PIL import Image

from .. import caching
from ..images import ImageLike, to_rgb
from ..models.detectors import (
    DEFAULT_GROUNDING_DINO,
    Detector,
    check_request,
    detect,
    kept,
    load_grounding_dino,
)
from ..models.sam import load_sam
from ..models.sam3 import DEFAULT_SAM3, Sam3TextSegmenter, load_sam3
from ..validate import check_flag
from .base import MaskResult, as_segmenter


@dataclass(eq=False)
class TextMaskResult(MaskResult):
    """What :func:`text_mask` found, and everything needed to replay it.

    Attributes:
        mask: ``HxW bool``, True = subject; all False when nothing was found.
        boxes, labels, scores: every box kept (XYXY floats in image pixels, best first), the
            phrase it matched and its score (0..1).
        found: whether any box was found.
        used: indices into ``boxes`` whose masks make ``mask`` (union: all, best: ``[0]``).
        box_masks: one ``HxW bool`` mask per entry of ``used``.
        message: a sentence for the notebook: what was found, or what to try.
        detector: the detector's source (model id, folder, ``"tiny"``) or its repr.

    The other fields are :func:`text_mask`'s arguments.
    """

    mask: np.ndarray = field(repr=False)
    boxes: list[tuple[float, float, float, float]]
    labels: list[str]
    scores: list[float]
    text: str
    found: bool
    combine: str
    box_threshold: float
    text_threshold: float
    max_boxes: int | None
    used: list[int]
    box_masks: list[np.ndarray] = field(repr=False)
    message: str
    detector: str

    @property
    def best_box(self) -> tuple[float, float, float, float] | None:
        """The highest-scoring box, or None: a click picker's start."""
        return self.boxes[0] if self.boxes else None


def box_masks(
    predictor, image: ImageLike, boxes, *, batch: int = 16, cache: bool = True
) -> np.ndarray:
    """One mask per XYXY box (image pixels): ``NxHxW bool``.

    ``predictor``: any model :func:`~sdsam_nb.segment.as_segmenter` accepts. The image encoder
    runs once (or not at all when the disk cache of embeddings has the picture; ``cache=False``
    neither reads nor writes it); the boxes are decoded ``batch`` at a time.
    """
    segmenter = as_segmenter(predictor)
    check_flag(cache, "cache")
    array = np.asarray(to_rgb(image))
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if len(boxes) == 0:
        return np.zeros((0, *array.shape[:2]), dtype=bool)
    embedding, _ = caching.embed(segmenter, array, cache=cache)
    return segmenter.predict_boxes(embedding, boxes, batch=batch)


def find_boxes(
    image: ImageLike,
    text: str,
    *,
    detector: Detector | None = None,
    box_threshold: float = 0.35,
    text_threshold: float = 0.25,
    max_boxes: int | None = 20,
) -> tuple[list[tuple[float, float, float, float]], list[str], list[float], str]:
    """Grounding DINO's ``(boxes, labels, scores, source)`` for ``text``, without SAM (as
    :func:`sdsam_nb.models.detectors.detect`); ``detector=None`` loads ``load_grounding_dino()``.
    Raises ``ValueError`` for the bad arguments :func:`text_mask` refuses."""
    rgb = to_rgb(image)
    if detector is None:
        check_request(text, box_threshold, text_threshold, max_boxes)  # before loading one
        detector = load_grounding_dino()
    settings = dict(box_threshold=box_threshold, text_threshold=text_threshold)
    return detect(detector, rgb, text, **settings, max_boxes=max_boxes)


def grounding_dino_boxes(image: Image.Image, text: str, *, detector, predictor, **settings):
    """:func:`find_boxes`, then SAM's masks of the boxes used (``predictor``, else
    ``load_sam()``, loaded only then)."""
    if predictor is not None:
        as_segmenter(predictor)
    boxes, labels, scores, source = find_boxes(image, text, detector=detector, **settings)

    def masks_for(used: list[int]) -> np.ndarray:
        sam = load_sam() if predictor is None else predictor
        return box_masks(sam, image, [boxes[i] for i in used])

    return boxes, labels, scores, source, masks_for


def sam3_instances(image: Image.Image, text: str, *, detector, predictor, **settings):
    """SAM 3 finds and masks every instance itself: ``detector`` is a SAM 3 segmenter (``None``
    loads ``load_sam3()``), ``box_threshold`` its score threshold; ``text_threshold`` is
    checked, not used."""
    max_boxes = settings["max_boxes"]
    box_threshold, _ = check_request(text, **settings)
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


class TextMethod(NamedTuple):
    """``find(image, text, *, detector, predictor, box_threshold, text_threshold, max_boxes)
    -> (boxes, labels, scores, source, masks_for)`` (``masks_for(used)``: the ``NxHxW bool``
    masks of those boxes), ``load(model, device=)`` of its detector, and its default model."""

    find: Callable
    load: Callable
    default_model: str


TEXT_METHODS: dict[str, TextMethod] = {
    "grounding_dino": TextMethod(grounding_dino_boxes, load_grounding_dino, DEFAULT_GROUNDING_DINO),
    "sam3": TextMethod(sam3_instances, load_sam3, DEFAULT_SAM3),
}


def _method(method: str) -> TextMethod:
    if not isinstance(method, str) or method not in TEXT_METHODS:
        raise ValueError(f"method must be one of {list(TEXT_METHODS)}, not {method!r}")
    return TEXT_METHODS[method]


def load_text_detector(
    method: str = "grounding_dino", model: str | None = None, *, device=None
) -> Detector:
    """Load ``method``'s detector (once per process), e.g. for
    :meth:`ClickSegmenter.set_text <sdsam_nb.ClickSegmenter.set_text>`.

    ``model``: a hub id, a folder or ``"tiny"``; ``None`` or Grounding DINO's default id (the
    notebooks' ``detector_model`` default) mean the method's default. A SAM 3 segmenter is
    callable as a detector: its boxes, best first.
    """
    spec = _method(method)
    if model is None or model == DEFAULT_GROUNDING_DINO:
        model = spec.default_model
    return spec.load(model, device=device)


def text_mask(
    image: ImageLike,
    text: str,
    *,
    method: str = "grounding_dino",
    detector: Detector | None = None,
    predictor=None,
    box_threshold: float = 0.35,
    text_threshold: float = 0.25,
    combine: str = "union",
    max_boxes: int | None = 20,
) -> TextMaskResult:
    """Mask what ``text`` names: boxes and a mask per box, then one combined mask.

    Args:
        image: ``PIL.Image`` / ``HxWx3 uint8`` RGB / path (see :func:`sdsam_nb.to_rgb`).
        text: the phrase, e.g. ``"red shoes"``; several phrases separated by dots.
        method: ``"grounding_dino"`` (default): Grounding DINO's boxes, SAM's mask of each.
            ``"sam3"``: SAM 3 finds and masks every instance itself (no ``predictor``).
        detector: for ``"grounding_dino"`` any callable ``(image, text, box_threshold,
            text_threshold) -> (boxes Nx4, labels, scores)``, ``None`` loads
            ``load_grounding_dino()``; for ``"sam3"`` a :func:`sdsam_nb.load_sam3` segmenter,
            ``None`` loads ``load_sam3()``.
        predictor: a ``SamPredictor`` from :func:`sdsam_nb.load_sam`; ``None`` loads
            ``load_sam()`` (vit_b).
        box_threshold: keep boxes scoring above this (0..1; SAM 3's instance score with
            ``"sam3"``); 0 keeps every query, 1 none.
        text_threshold: a prompt token joins a box's label above this probability (0..1; not
            used by ``"sam3"``).
        combine: ``"union"`` ORs every box's mask (both shoes of a pair); ``"best"`` keeps the
            highest-scoring box's mask only.
        max_boxes: segment at most this many boxes, best first (``None``: all).

    Boxes are clipped to the image; empty ones are dropped; ties keep the detector's order.

    Returns:
        A :class:`TextMaskResult`; when nothing is found, ``found=False``, an all-False mask
        and a ``message`` saying what to try (SAM is not run).

    Raises:
        ValueError: an unknown ``method`` or ``combine``, empty ``text``, a threshold outside
            0..1, a bad ``max_boxes``, a bad ``detector`` or detector output, a
            ``predictor`` with ``"sam3"``.
        ModelUnavailableError: a default model that cannot be had.
    """
    spec = _method(method)
    if combine not in ("union", "best"):
        raise ValueError(f"combine must be one of ['union', 'best'], not {combine!r}")
    rgb = to_rgb(image)
    boxes, labels, scores, source, masks_for = spec.find(
        rgb,
        text,
        detector=detector,
        predictor=predictor,
        box_threshold=box_threshold,
        text_threshold=text_threshold,
        max_boxes=max_boxes,
    )
    box_threshold, text_threshold = float(box_threshold), float(text_threshold)
    if boxes:
        used = list(range(len(boxes))) if combine == "union" else [0]
        masks = list(masks_for(used))
        mask = np.logical_or.reduce(masks, axis=0)
        what = f"{len(boxes)} box{'es' if len(boxes) > 1 else ''} for {text!r}"
        rule = (
            f"union of {len(used)} masks"
            if combine == "union"
            else f"best box only (score {scores[0]:.2f}, {labels[0]!r})"
        )
        message = f"{what}; {rule}: {mask.mean():.1%} of the picture."
        if not mask.any():
            message += " SAM returned an empty mask: try another box or click the subject."
    else:
        used, masks, mask = [], [], np.zeros((rgb.height, rgb.width), dtype=bool)
        message = (
            f"Nothing found for {text!r} with box_threshold={box_threshold}: lower "
            "box_threshold (e.g. 0.25), name the subject with a short noun phrase "
            "('red shoes'), or click the subject instead."
        )
    return TextMaskResult(
        mask=mask,
        boxes=boxes,
        labels=labels,
        scores=scores,
        text=text,
        found=bool(boxes),
        combine=combine,
        box_threshold=box_threshold,
        text_threshold=text_threshold,
        max_boxes=max_boxes,
        used=used,
        box_masks=masks,
        message=message,
        detector=source,
    )
